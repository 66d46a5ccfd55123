"""The one rule for files inside an idea folder: after a run, nothing in it is trusted.

Every file or directory of ``<lab>/ideas/<id>-<name>/`` may have been replaced by the
experiment with a symlink (to ``~/.ssh/id_rsa``, a shell rc file, ``/etc/...``), a hard
link to a host file, a FIFO, a device node or a 10 GB file, and may be swapped between a
check and a use. So every engine access to such a file goes through this module:

- paths are relative to a *root* (the idea folder, which the engine created and the
  child cannot replace); ``..``, absolute paths and empty components are refused;
- each directory on the way is opened with ``O_DIRECTORY|O_NOFOLLOW`` relative to the
  previous directory's descriptor, so a symlinked component is refused, not followed,
  and nothing can be swapped between a check and the use;
- a file is read only when ``fstat`` of the opened descriptor says: a regular file, one
  link (a hard link to a host file is refused) and not larger than the caller's bound
  (reads open with ``O_NONBLOCK``, so a FIFO cannot hang the engine);
- a file is written to a fresh temporary file in the same directory, then renamed over
  the target: the rename replaces a planted symlink or hard link itself, never its
  target;
- a log is appended to only when it is a regular single-link file; anything else at
  its place is removed and a fresh file created (:func:`open_log`).

A refusal raises :class:`UnsafeFile` (an ``OSError`` and a ``ValueError``, so the
stages' existing handling of unreadable or invalid files applies) with a one-line
message naming the relative path and the reason, e.g.
``run_2/final_info.json is a symlink: refused``.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path, PurePath
from typing import Any, BinaryIO, TextIO

from aisci.engine.errors import AisciError

MB = 1024 * 1024
#: Bounds of what the engine reads from an idea folder.
MAX_JSON_BYTES = 16 * MB
"""final_info.json, run_env.json, review.json, integrity.json, causality.json."""
MAX_TEXT_BYTES = 4 * MB
"""Text that may go into a prompt: notes.txt, .tex, .bib, code, TeX logs."""
MAX_PDF_BYTES = 64 * MB
MAX_FIGURE_BYTES = 32 * MB
MAX_COPY_BYTES = 1024 * MB
"""One file copied into or between folders (baseline results, prepared data)."""
MAX_LOG_TAIL_BYTES = 256 * 1024
MAX_DIR_ENTRIES = 10_000
"""Entries listed of one directory."""
MAX_WALK_ENTRIES = 50_000
"""Entries visited by one recursive walk."""
MAX_WALK_DEPTH = 32
MAX_JSON_DEPTH = 100
"""Nesting of arrays and objects accepted in a JSON file: a deeper one is refused (it
would exhaust the recursion of the parser, or of any code walking or re-encoding it)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY \
    | os.O_CLOEXEC
_CHUNK = MB
_RETRIES = 4
"""Bound on re-tries when an entry is swapped while the engine replaces it."""


class UnsafeFile(AisciError, OSError, ValueError):
    """A path inside an idea folder the engine refuses to use; the message is one line:
    ``<relative path> <reason>: refused``."""

    def __init__(self, rel: str, reason: str) -> None:
        super().__init__(f"{rel} {reason}: refused")
        self.rel = rel
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One directory entry, seen without following symlinks."""

    path: str
    """Relative to the root the listing or walk started from (posix)."""
    name: str
    kind: str
    """file | dir | symlink | fifo | socket | device | other"""
    size: int
    mtime_ns: int


# -- paths -------------------------------------------------------------------------------

def split_rel(rel: str | PurePath) -> list[str]:
    """The components of a relative path; '.' components are dropped. Refuses absolute
    paths, '..' and empty components (``a//b``, a trailing ``/``)."""
    text = rel.as_posix() if isinstance(rel, PurePath) else str(rel)
    if text == ".":
        return []
    if not text:
        raise UnsafeFile("''", "is an empty path")
    if text.startswith("/"):
        raise UnsafeFile(text, "is an absolute path")
    out = []
    for part in text.split("/"):
        if part == "..":
            raise UnsafeFile(text, "leaves the folder ('..')")
        if part == "":
            raise UnsafeFile(text, "has an empty path component")
        if "\x00" in part:
            raise UnsafeFile(text.replace("\x00", "\\0"), "contains a NUL byte")
        if part != ".":
            out.append(part)
    return out


def normalize_rel(rel: str) -> str | None:
    """``rel`` with ``.`` and ``x/..`` folded lexically, or None when it is absolute or
    leaves the folder (used for paths written by the model, e.g. ``../fig.png`` from
    ``latex/``)."""
    if not rel or rel.startswith("/") or "\x00" in rel:
        return None
    out: list[str] = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(part)
    return "/".join(out) or "."


def split_under(path: Path, roots: list[Path]) -> tuple[Path, str]:
    """(root, relative path) of ``path`` under the outermost of ``roots`` that contains
    it lexically (no symlink is resolved); (its parent, its name) when none does."""
    full = Path(os.path.abspath(path))
    best: Path | None = None
    for r in roots:
        r = Path(os.path.abspath(r))
        if full != r and full.is_relative_to(r) and (best is None or best.is_relative_to(r)):
            best = r
    if best is None:
        return full.parent, full.name
    return best, full.relative_to(best).as_posix()


def fmt_size(n: int) -> str:
    for unit, size in (("GB", 1024 * MB), ("MB", MB), ("KB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"


_WHAT = {"dir": "is a directory", "symlink": "is a symlink", "fifo": "is a FIFO",
         "socket": "is a socket", "device": "is a device node", "other": "is not a regular file",
         "file": "is not a directory"}


def describe_kind(kind: str) -> str:
    """'a symlink', 'a FIFO', ... for an Entry.kind."""
    return _WHAT.get(kind, "is not a regular file").removeprefix("is ")


def _describe(dir_fd: int, name: str) -> str:
    """Why an entry cannot be used (for the message only; no decision depends on it)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "changed while being opened"
    return _WHAT[_kind(st.st_mode)]


# -- directories -------------------------------------------------------------------------

def _open_root(root: Path | str) -> int:
    """The root itself is engine-owned (the idea folder's parent is not writable by the
    child), so it is opened normally."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _remove_entry(dir_fd: int, name: str) -> None:
    """Remove one entry at ``dir_fd`` (a directory with everything in it), no follow."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


def _open_subdir(dir_fd: int, name: str, shown: str, *, create: bool, replace: bool) -> int:
    for _ in range(_RETRIES):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shown) from None
            with suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            if not replace:
                raise UnsafeFile(shown, _describe(dir_fd, name)) from None
            _remove_entry(dir_fd, name)
    raise UnsafeFile(shown, "keeps changing")


@contextmanager
def _dir_fd(root: Path | str, parts: list[str], *, create: bool = False,
            replace: bool = False) -> Iterator[int]:
    """A descriptor of ``root/parts[0]/.../parts[-1]`` reached without following any
    symlink; missing directories are made when ``create``; with ``replace`` an entry
    that is not a directory (a planted symlink or file) is removed and made a directory."""
    fd = _open_root(root)
    try:
        for i, name in enumerate(parts):
            nxt = _open_subdir(fd, name, "/".join(parts[: i + 1]), create=create,
                               replace=replace)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def make_dirs(root: Path | str, rel: str | PurePath, *, replace: bool = False) -> None:
    """``mkdir -p root/rel`` refusing symlinked components (``replace``: a planted
    non-directory entry on the way is removed and replaced by a directory)."""
    with _dir_fd(root, split_rel(rel), create=True, replace=replace):
        pass


# -- inspecting --------------------------------------------------------------------------

def lstat(root: Path | str, rel: str | PurePath) -> os.stat_result:
    """The entry's own status (a symlink is not followed). FileNotFoundError when absent;
    UnsafeFile when a directory on the way is a symlink or not a directory."""
    parts = split_rel(rel)
    if not parts:
        return os.stat(root)
    with _dir_fd(root, parts[:-1]) as dfd:
        try:
            return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                    "/".join(parts)) from None


def kind(root: Path | str, rel: str | PurePath) -> str | None:
    """file | dir | symlink | fifo | socket | device | other, or None when absent.
    Raises UnsafeFile when a directory on the way is a symlink."""
    try:
        return _kind(lstat(root, rel).st_mode)
    except FileNotFoundError:
        return None


def _kind_or_none(root: Path | str, rel: str | PurePath) -> str | None:
    try:
        return kind(root, rel)
    except (UnsafeFile, NotADirectoryError):
        return None


def is_file(root: Path | str, rel: str | PurePath) -> bool:
    """A regular file reached without following symlinks."""
    return _kind_or_none(root, rel) == "file"


def is_dir(root: Path | str, rel: str | PurePath) -> bool:
    return _kind_or_none(root, rel) == "dir"


def lexists(root: Path | str, rel: str | PurePath) -> bool:
    """Something (a dangling symlink included) is at ``rel``."""
    return _kind_or_none(root, rel) is not None


def _entries(dfd: int, prefix: str, limit: int) -> list[Entry]:
    out: list[Entry] = []
    with os.scandir(dfd) as it:
        for de in it:
            if len(out) >= limit:
                break
            try:
                st = de.stat(follow_symlinks=False)
            except OSError:
                continue
            path = f"{prefix}/{de.name}" if prefix else de.name
            out.append(Entry(path, de.name, _kind(st.st_mode), st.st_size, st.st_mtime_ns))
    return sorted(out, key=lambda e: e.name)


def list_dir(root: Path | str, rel: str | PurePath = ".", *,
             limit: int = MAX_DIR_ENTRIES) -> list[Entry]:
    """The entries of a directory (at most ``limit``, sorted by name), kinds seen without
    following symlinks. Entry.path is relative to ``root``."""
    parts = split_rel(rel)
    with _dir_fd(root, parts) as dfd:
        return _entries(dfd, "/".join(parts), limit)


def walk(root: Path | str, rel: str | PurePath = ".", *, limit: int = MAX_WALK_ENTRIES,
         max_depth: int = MAX_WALK_DEPTH,
         prune: Callable[[Entry], bool] | None = None) -> list[Entry]:
    """Every entry under ``root/rel``, never following a symlink: breadth first (so a
    bound cuts the deepest entries, never the top level), sorted by name within each
    folder, a folder always before its content. Folders for which ``prune`` is true
    are listed but not entered. Bounded: at most ``limit`` entries, ``max_depth``
    levels. Each folder is re-opened from ``root`` without following symlinks; one
    swapped for a symlink meanwhile is not entered."""
    base = split_rel(rel)
    out: list[Entry] = []
    queue: deque[tuple[list[str], int]] = deque([(base, 1)])
    while queue and len(out) < limit:
        parts, depth = queue.popleft()
        try:
            with _dir_fd(root, parts) as dfd:
                entries = _entries(dfd, "/".join(parts), limit - len(out))
        except OSError:
            if parts == base:
                raise
            continue
        for e in entries:
            out.append(e)
            if e.kind == "dir" and depth < max_depth and not (prune is not None and prune(e)):
                queue.append(([*parts, e.name], depth + 1))
    return out


# -- reading -----------------------------------------------------------------------------

def _check_regular(st: os.stat_result, shown: str, links_ok: bool = False) -> None:
    k = _kind(st.st_mode)
    if k != "file":
        raise UnsafeFile(shown, _WHAT[k])
    if st.st_nlink != 1 and not links_ok:
        raise UnsafeFile(shown, "is a hard link")


def _too_big(shown: str, size: int, limit: int) -> UnsafeFile:
    return UnsafeFile(shown, f"is {fmt_size(size)}, more than the {fmt_size(limit)} allowed")


def _open_regular(dfd: int, name: str, shown: str,
                  links_ok: bool = False) -> tuple[int, os.stat_result]:
    """A read descriptor of a regular, single-link file at ``dfd`` (no follow)."""
    try:
        pre = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shown) from None
    _check_regular(pre, shown, links_ok)  # never even open a FIFO or a device node
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shown) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise UnsafeFile(shown, _describe(dfd, name)) from None
        raise
    try:
        st = os.fstat(fd)
        _check_regular(st, shown, links_ok)  # what was opened, whatever happened since
    except BaseException:
        os.close(fd)
        raise
    return fd, st


@contextmanager
def _reading(root: Path | str, rel: str | PurePath,
             links_ok: bool = False) -> Iterator[tuple[int, os.stat_result, str]]:
    parts = split_rel(rel)
    shown = "/".join(parts) or "."
    if not parts:
        raise UnsafeFile(shown, "is a directory")
    with _dir_fd(root, parts[:-1]) as dfd:
        fd, st = _open_regular(dfd, parts[-1], shown, links_ok)
    try:
        yield fd, st, shown
    finally:
        os.close(fd)


def open_read(root: Path | str, rel: str | PurePath) -> BinaryIO:
    """A binary file object reading ``root/rel`` (a regular single-link file reached
    without symlinks); for a file of any size (a growing log): the caller bounds what it
    reads."""
    parts = split_rel(rel)
    if not parts:
        raise UnsafeFile(".", "is a directory")
    with _dir_fd(root, parts[:-1]) as dfd:
        fd, _ = _open_regular(dfd, parts[-1], "/".join(parts))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _read_upto(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        piece = os.read(fd, min(_CHUNK, n - got))
        if not piece:
            break
        chunks.append(piece)
        got += len(piece)
    return b"".join(chunks)


def read_bytes(root: Path | str, rel: str | PurePath, limit: int, *,
               truncate: bool = False, links_ok: bool = False) -> bytes:
    """The bytes of ``root/rel``: a regular single-link file reached without symlinks, at
    most ``limit`` bytes (a larger file is refused, or cut when ``truncate``).
    ``links_ok``: the file may have other hard links (one the engine itself linked)."""
    return _read(root, rel, limit, truncate, links_ok)[0]


def _read(root: Path | str, rel: str | PurePath, limit: int,
          truncate: bool, links_ok: bool = False) -> tuple[bytes, bool]:
    """(bytes, whether they were cut at ``limit``)."""
    with _reading(root, rel, links_ok) as (fd, st, shown):
        if st.st_size > limit and not truncate:
            raise _too_big(shown, st.st_size, limit)
        data = _read_upto(fd, limit + 1)
    if len(data) > limit:
        if not truncate:  # it grew after the fstat
            raise _too_big(shown, max(len(data), st.st_size), limit)
        return data[:limit], True
    return data, False


def read_text(root: Path | str, rel: str | PurePath, limit: int = MAX_TEXT_BYTES, *,
              truncate: bool = False, errors: str = "strict") -> str:
    """UTF-8 text of ``root/rel`` (see :func:`read_bytes`); a cut never splits a
    character."""
    data, cut = _read(root, rel, limit, truncate)
    return codecs.getincrementaldecoder("utf-8")(errors).decode(data, final=not cut)


def read_json(root: Path | str, rel: str | PurePath, limit: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON of ``root/rel``; json.JSONDecodeError / UnicodeDecodeError as usual;
    UnsafeFile when arrays and objects nest more than :data:`MAX_JSON_DEPTH` levels."""
    text = read_text(root, rel, limit)
    shown = "/".join(split_rel(rel)) or "."
    try:
        data = json.loads(text)
    except RecursionError:  # deeper than the parser's own recursion reaches
        raise _too_deep(shown) from None
    # Fewer brackets than the bound cannot nest deeper (the common, small files). The
    # depth is measured on the text once it parsed (so every string in it is closed).
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and \
            _json_depth(text) > MAX_JSON_DEPTH:
        raise _too_deep(shown)
    return data


def _too_deep(shown: str) -> UnsafeFile:
    return UnsafeFile(shown, f"is JSON nested more than {MAX_JSON_DEPTH} levels deep")


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in valid JSON ``text`` (brackets inside
    strings do not count), without recursion: strings and everything but brackets are cut
    out by regular expressions (linear: in valid JSON each string match ends at its own
    closing quote), then the running depth is summed."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def read_tail(root: Path | str, rel: str | PurePath,
              max_bytes: int = MAX_LOG_TAIL_BYTES) -> bytes:
    """The last ``max_bytes`` of ``root/rel`` (a log of any size)."""
    with _reading(root, rel) as (fd, st, _):
        start = max(0, st.st_size - max_bytes)
        return os.pread(fd, max_bytes, start)


# -- writing -----------------------------------------------------------------------------

def _tmp_name(name: str) -> str:
    return f".{name[:80]}.{secrets.token_hex(6)}.aisci-tmp"


def _replace_with(dfd: int, name: str, shown: str,
                  fill: Callable[[int], None], mode: int | None = None) -> None:
    """Write a temporary file in ``dfd`` with ``fill`` and rename it over ``name`` (the
    rename replaces whatever entry is there, never the target of a symlink)."""
    try:
        old = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise UnsafeFile(shown, "is a directory")
    if mode is None and old is not None and stat.S_ISREG(old.st_mode) and old.st_nlink == 1:
        mode = stat.S_IMODE(old.st_mode) & 0o777  # keep e.g. an executable bit
    tmp = _tmp_name(name)
    fd = os.open(tmp, _NEW_FLAGS, 0o666, dir_fd=dfd)
    try:
        try:
            fill(fd)
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except IsADirectoryError:
            raise UnsafeFile(shown, "is a directory") from None
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_bytes(root: Path | str, rel: str | PurePath, data: bytes, *,
                make_dirs: bool = False, fsync: bool = False) -> None:
    """Replace ``root/rel`` with ``data`` (temporary file + rename in the same directory,
    never writing through a symlink or hard link). ``make_dirs`` creates missing
    directories on the way (a symlinked one is still refused)."""
    parts = split_rel(rel)
    if not parts:
        raise UnsafeFile(".", "is a directory")
    shown = "/".join(parts)

    def fill(fd: int) -> None:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)

    with _dir_fd(root, parts[:-1], create=make_dirs) as dfd:
        _replace_with(dfd, parts[-1], shown, fill)


def write_text(root: Path | str, rel: str | PurePath, text: str, **kwargs: Any) -> None:
    """:func:`write_bytes` of ``text`` as UTF-8."""
    write_bytes(root, rel, text.encode("utf-8"), **kwargs)


def open_log(root: Path | str, rel: str | PurePath) -> TextIO:
    """A text file appending to the log ``root/rel``. An existing regular single-link file
    is appended to; anything else at that place (a symlink, a hard link, a FIFO, a
    directory) is removed first and a fresh file created. Directories on the way are
    created, a planted non-directory among them replaced."""
    parts = split_rel(rel)
    if not parts:
        raise UnsafeFile(".", "is a directory")
    shown, name = "/".join(parts), parts[-1]
    with _dir_fd(root, parts[:-1], create=True, replace=True) as dfd:
        for _ in range(_RETRIES):
            try:
                st: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
                _remove_entry(dfd, name)
                st = None
            flags = _APPEND_FLAGS | (os.O_CREAT | os.O_EXCL if st is None else 0)
            try:
                fd = os.open(name, flags, 0o666, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOENT, errno.ELOOP, errno.ENXIO,
                                 errno.EISDIR):
                    continue  # swapped since the stat: look again
                raise
            fst = os.fstat(fd)
            if stat.S_ISREG(fst.st_mode) and fst.st_nlink == 1:
                os.set_blocking(fd, True)
                return os.fdopen(fd, "a", encoding="utf-8", errors="replace")
            os.close(fd)
    raise UnsafeFile(shown, "keeps being replaced")


def remove(root: Path | str, rel: str | PurePath, *, missing_ok: bool = True) -> bool:
    """Unlink the entry ``root/rel`` itself (a symlink is removed, not its target).
    Returns whether something was removed; a directory raises IsADirectoryError."""
    parts = split_rel(rel)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), ".")
    shown = "/".join(parts)
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            try:
                st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
            if st is not None:
                os.unlink(parts[-1], dir_fd=dfd)
                return True
    except FileNotFoundError:
        pass
    if not missing_ok:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shown)
    return False


def remove_tree(root: Path | str, rel: str | PurePath) -> bool:
    """Remove ``root/rel`` whatever it is (a directory with its content, a file, a
    symlink itself), never following a symlink. Returns whether something was removed."""
    parts = split_rel(rel)
    if not parts:
        raise UnsafeFile(".", "is the folder itself")
    try:
        with _dir_fd(root, parts[:-1]) as dfd:
            if _stat_or_none(dfd, parts[-1]) is None:
                return False
            _remove_entry(dfd, parts[-1])
            return True
    except FileNotFoundError:
        return False


def _stat_or_none(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


# -- copying -----------------------------------------------------------------------------

def link(src_root: Path | str, src_rel: str | PurePath, dst_root: Path | str,
         dst_rel: str | PurePath) -> None:
    """Hard-link the entry ``src_root/src_rel`` as ``dst_root/dst_rel`` (which must not
    exist); no symlink is followed on either side, the entry itself is linked."""
    sparts, dparts = split_rel(src_rel), split_rel(dst_rel)
    if not sparts or not dparts:
        raise UnsafeFile(".", "is a directory")
    with _dir_fd(src_root, sparts[:-1]) as sfd, _dir_fd(dst_root, dparts[:-1]) as dfd:
        os.link(sparts[-1], dparts[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)


def copy_file(src_root: Path | str, src_rel: str | PurePath, dst_root: Path | str,
              dst_rel: str | PurePath, *, limit: int = MAX_COPY_BYTES,
              make_dirs: bool = True, links_ok: bool = False) -> int:
    """Copy a regular single-link file between folders (each side under the rules above;
    the copy keeps the permission bits). ``links_ok``: the source may have other hard
    links (a folder the engine itself hard-linked from). Returns the bytes copied."""
    dparts = split_rel(dst_rel)
    if not dparts:
        raise UnsafeFile(".", "is a directory")
    copied = 0
    with _reading(src_root, src_rel, links_ok) as (sfd, st, shown):
        if st.st_size > limit:
            raise _too_big(shown, st.st_size, limit)

        def fill(fd: int) -> None:
            nonlocal copied
            while True:
                piece = os.read(sfd, _CHUNK)
                if not piece:
                    return
                copied += len(piece)
                if copied > limit:
                    raise _too_big(shown, copied, limit)
                _write_all(fd, piece)

        with _dir_fd(dst_root, dparts[:-1], create=make_dirs) as dfd:
            _replace_with(dfd, dparts[-1], "/".join(dparts), fill,
                          mode=stat.S_IMODE(st.st_mode) & 0o777)
    return copied


def copy_tree(src_root: Path | str, src_rel: str | PurePath, dst_root: Path | str,
              dst_rel: str | PurePath, *, skip: Callable[[Entry], bool] | None = None,
              limit: int = MAX_COPY_BYTES) -> int:
    """Copy the regular files and directories under ``src_root/src_rel`` to
    ``dst_root/dst_rel`` (existing files are replaced). Symlinks and special files are
    not copied; entries for which ``skip`` is true are left out (a skipped directory
    with its content). Returns the number of files copied."""
    base = "/".join(split_rel(src_rel))
    dst_base = "/".join(split_rel(dst_rel))
    make_dirs(dst_root, dst_base or ".")
    n = 0
    for e in walk(src_root, base or ".", prune=skip):
        if skip is not None and skip(e):
            continue  # a skipped directory is not entered either (prune)
        sub = e.path[len(base) + 1:] if base else e.path
        target = f"{dst_base}/{sub}" if dst_base else sub
        if e.kind == "dir":
            make_dirs(dst_root, target)
        elif e.kind == "file":
            copy_file(src_root, e.path, dst_root, target, limit=limit)
            n += 1
    return n
