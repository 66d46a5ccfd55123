"""The one error root. Every error the engine raises on purpose derives from
:class:`AisciError`: it carries a one-line message for the user (what went wrong and what
was expected), an exit code for the ``aisci`` command, and an optional hint. The CLI and
the TUI report errors through :func:`user_message` and :func:`exit_code`, never by
printing a traceback: the traceback of an unexpected error goes to a file
(:func:`save_traceback`).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import platformdirs

# Exit codes of the ``aisci`` command (README: "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran and something it did failed (a stage, a check)."""
EXIT_USAGE = 2
"""Bad input: arguments, configuration, template, file."""
EXIT_BUDGET = 3
"""Stopped cleanly because a budget was reached."""
EXIT_LAB_IN_USE = 4
EXIT_INTERRUPTED = 130


class AisciError(Exception):
    """An error with a message meant for the user. Subclasses set ``exit_code``."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", *, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return one_line(str(self)) or type(self).__name__


class UsageError(AisciError):
    """Bad input from the user: an argument, a setting, a file, a name."""

    exit_code = EXIT_USAGE


class StageError(AisciError):
    """A stage could not finish its work (the pipeline records it as a failed stage)."""


class ExternalServiceError(AisciError):
    """An external service (LLM provider, literature API) failed or refused."""


class DiskFull(UsageError):
    """The disk (or the user's quota) holding the lab is full: nothing is lost, and the
    command works again once there is space."""

    def __init__(self, where: Path | str, *, quota: bool = False,
                 then: str | None = None) -> None:
        then = then or "run the command again; `aisci resume` continues a batch"
        what = "disk quota exceeded" if quota else "no space left on device"
        super().__init__(f"{where}: {what} (the lab's disk is full; free space, then {then})")


class DiskError(UsageError):
    """The disk holding the lab failed a read or a write (an I/O error)."""


class DamagedDatabase(UsageError):
    """A lab database SQLite cannot use (garbage, truncated, a directory, another app's)."""

    def __init__(self, database: Path | str, reason: str) -> None:
        self.database = str(database)
        super().__init__(unusable_database_message(database, reason))


def unusable_database_message(database: Path | str, reason: str) -> str:
    return (f"{database} is not a usable lab database ({one_line(reason)}); restore it "
            "from a backup, or move it aside to start the lab's database afresh")


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DATABASE_ATTR = "aisci_database"
"""The attribute the lab store sets on a SQLite error: the database file it concerns."""
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 13, 26
_NO_SPACE_TEXTS = ("no space left on device", "disk quota exceeded")
MIN_FREE_BYTES = 256 * 1024
"""Below this much free space a disk I/O error is taken for a full disk."""
_MAX_CHAIN = 32


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups (bounded)."""
    todo, seen = [exc], 0
    while todo and seen < _MAX_CHAIN:
        e = todo.pop(0)
        seen += 1
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)


def disk_nearly_full(path: Path | str) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has no
    room left for a write: free blocks (as this user may use them) or inodes run out."""
    p = Path(path)
    for _ in range(64):
        if p.exists() or p == p.parent:
            break
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize < MIN_FREE_BYTES or (st.f_files > 0 and st.f_favail == 0)


def _sqlite_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def environment_error(exc: BaseException, *, lab: Path | None = None,
                      then: str | None = None) -> AisciError | None:
    """The one-line error for an unexpected exception that the machine caused rather than
    a bug in aisci: a full disk or quota (OSError ENOSPC/EDQUOT, SQLite "database or
    disk is full", a disk I/O error on a full disk), a failing disk, a lab database SQLite
    finds damaged. None for anything else. ``lab``: the lab the command works on (names
    the file when the error does not); ``then``: what to do once there is space.
    The ``aisci`` command and ``aisci-tui`` both report through this."""
    for e in _causes(exc):
        if isinstance(e, AisciError):
            return None
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
            where = e.filename if e.filename else (lab or "the lab")
            return DiskFull(where, quota=e.errno == errno.EDQUOT, then=then)
        if isinstance(e, sqlite3.Error):
            db = getattr(e, DATABASE_ATTR, None) or (
                f"the lab database in {lab}" if lab is not None else "the lab database")
            code, text = _sqlite_code(e), str(e).lower()
            if code == _SQLITE_FULL or "database or disk is full" in text:
                return DiskFull(db, then=then)
            if code == _SQLITE_IOERR or "disk i/o error" in text:
                if disk_nearly_full(getattr(e, DATABASE_ATTR, None) or lab or "."):
                    return DiskFull(db, then=then)
                return DiskError(f"{db}: disk I/O error ({one_line(str(e))}); the disk may "
                                 "be failing or full: check it, then run the command again")
            if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text \
                    or "not a database" in text:
                return DamagedDatabase(db, str(e))
        text = str(e).lower()
        if any(t in text for t in _NO_SPACE_TEXTS):  # e.g. git's "No space left on device"
            return DiskFull(lab or "the lab", quota="quota" in text, then=then)
    return None


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def bounded_line(text: object, limit: int = 200) -> str:
    """A peer's words (a server's reason, an error body) as one printable line of at most
    ``limit`` characters: control characters (terminal escapes) become spaces, whitespace
    runs collapse, a longer text is cut with an ellipsis."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text)[: limit * 50])
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "\u2026"


def user_message(exc: BaseException) -> str:
    """One line for the user: the message of an AisciError; the type and first line of
    anything else (an unexpected error; the caller logs its traceback)."""
    if isinstance(exc, AisciError):
        return exc.message
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def exit_code(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, AisciError) else EXIT_FAILED


def save_traceback(exc: BaseException, context: str = "") -> str:
    """Write the traceback of an unexpected error to a new file in the user log directory
    (``context`` first, e.g. the command line); say where it went, or why it did not."""
    log_dir = Path(platformdirs.user_log_dir("aisci", appauthor=False))
    path = log_dir / f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            if context:
                fh.write(context + "\n")
            traceback.print_exception(exc, file=fh)
    except OSError as err:
        return f"traceback not saved: {err.strerror or err}"
    return f"traceback in {path}"


def internal_error_line(exc: BaseException, context: str) -> str:
    """A bug, as the user reads it: one line, naming the file that keeps its traceback
    (``context`` heads the file, e.g. the command line)."""
    return f"internal error: {user_message(exc)} ({save_traceback(exc, context)})"
