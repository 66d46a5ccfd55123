"""A bounded index of line positions in a (growing) log file, toolong-style.

The log view never holds a log in memory: it keeps a *sparse* list of byte offsets
(one checkpoint every ``stride`` lines) and reads the few lines it shows straight from
the file. When the checkpoint list would exceed ``max_checkpoints`` the stride doubles
and every other checkpoint is dropped, so memory stays bounded whatever the file size.
Decoded lines live in a small LRU cache. ``scan()`` is meant for a background thread;
every method is safe to call from any thread.
"""

from __future__ import annotations

import stat
import threading
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from aisci.engine.lab import safe_files

#: Longest line shown; longer lines are cut (binary output can have megabyte "lines").
MAX_LINE_BYTES = 4096
_READ_BLOCK = 1 << 20
_SKIP_BLOCK = 1 << 16


def _decode(raw: bytes) -> str:
    text = raw.rstrip(b"\r\n")
    # A progress bar rewrites its line with \r: show what the terminal would show.
    if b"\r" in text:
        text = text.rsplit(b"\r", 1)[-1]
    out = text[:MAX_LINE_BYTES].decode("utf-8", errors="replace").expandtabs(4)
    # Control characters would corrupt the terminal; make them visible instead.
    return "".join(ch if ch >= " " or ch == "\t" else "\ufffd" for ch in out)


class LineIndex:
    """Line positions in ``path``; ``line_count`` grows as :meth:`scan` sees new data."""

    def __init__(self, path: Path, *, max_checkpoints: int = 1 << 16,
                 cache_lines: int = 2048) -> None:
        self.path = Path(path)
        self.max_checkpoints = max_checkpoints
        self.cache_lines = cache_lines
        self._lock = threading.Lock()
        self._checkpoints = array("q", [0])  # byte offset of line k*stride
        self._stride = 1
        self._lines = 0  # complete lines seen
        self._scanned = 0  # bytes scanned
        self._last_nl = 0  # offset just after the last newline
        self._partial = False  # bytes after the last newline (a line still being written)
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._identity: tuple[int, int] | None = None

    # -- scanning --------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        """Lines to show: complete lines plus a trailing partial one."""
        with self._lock:
            return self._lines + (1 if self._partial else 0)

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def checkpoints(self) -> int:
        return len(self._checkpoints)

    def scan(self) -> bool:
        """Index bytes appended since the last scan. True when the line count changed."""
        try:  # the log's own entry: a symlink or FIFO planted in its place is not read
            st = safe_files.lstat(self.path.parent, self.path.name)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        ident = (st.st_dev, st.st_ino)
        if (self._identity is not None and ident != self._identity) or st.st_size < self._scanned:
            self._reset()  # rotated or truncated: start over
        self._identity = ident
        if st.st_size == self._scanned:
            return False
        before = self.line_count
        try:
            fh = self._open()
        except OSError:
            return False
        with fh:
            fh.seek(self._scanned)
            pos = self._scanned
            while True:
                block = fh.read(_READ_BLOCK)
                if not block:
                    break
                self._index_block(block, pos)
                pos += len(block)
        with self._lock:
            self._scanned = pos
            self._partial = self._last_nl < pos
            # the trailing partial line may have grown: drop it from the cache
            self._cache.pop(self._lines, None)
        return self.line_count != before

    @staticmethod
    def warm_up() -> None:
        """Load numpy ahead of the first scan (call on a thread once the UI is up): its
        first import takes the interpreter for about 0.1 s, which the first scan of a
        flooding run would otherwise add to a key press."""
        import numpy  # noqa: F401  deferred: heavy, kept off the TUI's start-up

    def _index_block(self, block: bytes, base: int) -> None:
        """Count the block's lines and keep every ``stride``-th line's offset. The newlines
        are found in C (numpy), so a flooded log costs the UI thread little, and the lock
        the renderer needs is held only to record them."""
        import numpy as np  # deferred: heavy (about 80 ms), kept off the TUI's start-up

        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + (base + 1)
        n = len(ends)
        if not n:
            return
        with self._lock:
            i = 0  # the next of this block's lines to account for
            while i < n:
                first = i + self._stride - (self._lines % self._stride) - 1
                if first >= n:  # no checkpoint in the rest of the block
                    self._lines += n - i
                    break
                room = self.max_checkpoints + 1 - len(self._checkpoints)
                picks = ends[first::self._stride][:room]
                self._checkpoints.extend(picks.tolist())
                last = first + (len(picks) - 1) * self._stride
                self._lines += last + 1 - i
                i = last + 1
                if len(self._checkpoints) > self.max_checkpoints:
                    self._checkpoints = self._checkpoints[::2]
                    self._stride *= 2
            self._last_nl = int(ends[-1])

    def _reset(self) -> None:
        with self._lock:
            self._checkpoints = array("q", [0])
            self._stride = 1
            self._lines = 0
            self._scanned = 0
            self._last_nl = 0
            self._partial = False
            self._cache.clear()

    # -- reading ---------------------------------------------------------------------
    def _open(self) -> BinaryIO:
        """The log, opened without following a symlink in its place, and only when it is
        a regular single-link file (never a FIFO: no hang), as for the engine's reads."""
        return safe_files.open_read(self.path.parent, self.path.name)

    def _offset_of_line_start_locked(self, line: int) -> int:
        """Offset of the start of ``line`` (may read the file between checkpoints)."""
        k = min(line // self._stride, len(self._checkpoints) - 1)
        offset = self._checkpoints[k]
        skip = line - k * self._stride
        if skip == 0:
            return offset
        with self._open() as fh:
            fh.seek(offset)
            while skip > 0:
                block = fh.read(_SKIP_BLOCK)
                if not block:
                    break
                start = 0
                while skip > 0:
                    nl = block.find(b"\n", start)
                    if nl < 0:
                        break
                    start = nl + 1
                    skip -= 1
                if skip == 0:
                    return offset + start
                offset += len(block)
        return offset

    def get_lines(self, first: int, count: int) -> list[str]:
        """Lines ``first .. first+count-1`` (fewer at the end of the file)."""
        total = self.line_count
        first = max(0, first)
        last = min(total, first + count)
        if first >= last:
            return []
        with self._lock:
            if all(i in self._cache for i in range(first, last)):
                for i in range(first, last):
                    self._cache.move_to_end(i)
                return [self._cache[i] for i in range(first, last)]
            try:
                start = self._offset_of_line_start_locked(first)
            except OSError:
                return []
            limit = self._scanned
            complete = self._lines
        out: list[str] = []
        try:
            fh = self._open()
        except OSError:  # replaced meanwhile (safe_files refuses what is not a plain log)
            return []
        with fh:
            fh.seek(start)
            for i in range(first, last):
                raw = fh.readline(MAX_LINE_BYTES + 2)
                if raw and not raw.endswith(b"\n") and fh.tell() < limit and i < complete:
                    # cut an over-long line: skip to its end
                    while True:
                        more = fh.readline(_READ_BLOCK)
                        if not more or more.endswith(b"\n"):
                            break
                out.append(_decode(raw))
        with self._lock:
            for i, text in zip(range(first, last), out, strict=False):
                if i < complete:  # never cache the partial last line
                    self._cache[i] = text
            while len(self._cache) > self.cache_lines:
                self._cache.popitem(last=False)
        return out

    def find(self, needle: str, start_line: int, *, backwards: bool = False) -> int | None:
        """The first line at/after (or before) ``start_line`` containing ``needle``
        (case-insensitive), scanning the file in blocks; None when absent."""
        if not needle:
            return None
        target = needle.lower().encode("utf-8")
        total = self.line_count
        found: int | None = None
        line = 0
        try:
            fh = self._open()
        except OSError:
            return None
        with fh:
            for raw in fh:
                if line >= total:
                    break
                if target in raw.lower():
                    if backwards:
                        if line <= start_line:
                            found = line
                        else:
                            break
                    elif line >= start_line:
                        return line
                line += 1
        return found
