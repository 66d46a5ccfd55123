"""Output of a contained run: raw pipe bytes become timestamped, stream-tagged log lines
(every byte goes to the run's log file, up to a size cap) and bounded batches of
RunOutput events (what the TUI shows live). Runs on its own thread per child so a
flooding experiment never blocks the engine's event loop.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
import time
from pathlib import Path
from typing import IO, TextIO

from aisci.engine.events import EventBus, RunOutput
from aisci.engine.lab import safe_files

_READ_CHUNK = 64 * 1024
_LINE_CAP = 64 * 1024
"""Bytes kept of one log line; the rest is counted and replaced by a marker."""
_EVENT_LINE_CAP = 4096
_FLUSH_S = 0.05
_BATCH_LINES = 2000
_BATCH_CHARS = 512 * 1024
"""Per flush: at most this much reaches the event stream; the log file gets everything."""


def _collapse_cr(raw: bytes) -> bytes:
    """A carriage-return progress bar keeps only its last state."""
    raw = raw.rstrip(b"\r")
    return raw[raw.rfind(b"\r") + 1:]


class _LineSplitter:
    """Turns one stream's raw bytes into text lines, with bounded memory: a partial line
    is capped at _LINE_CAP bytes, the excess only counted."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.buf = bytearray()
        self.dropped = 0

    def _append(self, piece: bytes) -> None:
        if b"\r" in piece and b"\r" in self.buf + piece:
            self.buf[:] = _collapse_cr(bytes(self.buf) + piece) + (b"\r" if piece.endswith(
                b"\r") else b"")
            piece = b""
        room = max(0, _LINE_CAP - len(self.buf))
        if len(piece) > room:
            self.buf += piece[:room]
            self.dropped += len(piece) - room
        else:
            self.buf += piece

    @staticmethod
    def _text(raw: bytes, dropped: int) -> str:
        if len(raw) > _LINE_CAP:
            dropped += len(raw) - _LINE_CAP
            raw = raw[:_LINE_CAP]
        if b"\r" in raw:
            raw = _collapse_cr(raw)
        text = raw.decode("utf-8", "replace")
        if "\x00" in text:
            text = text.replace("\x00", "")
        if dropped:
            text += f" ... [aisci: line truncated, {dropped} more bytes]"
        return text

    def feed(self, data: bytes) -> list[str]:
        nl = data.rfind(b"\n")
        if nl < 0:
            self._append(data)
            return []
        head, tail = data[:nl], data[nl + 1:]
        out: list[str] = []
        if self.buf or self.dropped:
            cut = head.find(b"\n")
            self._append(head if cut < 0 else head[:cut])
            out.append(self._text(bytes(self.buf), self.dropped))
            self.buf.clear()
            self.dropped = 0
            if cut < 0:
                self._append(tail)
                return out
            head = head[cut + 1:]
        if b"\r" in head or len(head) > _LINE_CAP:
            out.extend(self._text(piece, 0) for piece in head.split(b"\n"))
        else:
            # Fast path: one decode per chunk; no line in it can exceed the cap.
            text = head.decode("utf-8", "replace")
            if "\x00" in text:
                text = text.replace("\x00", "")
            out.extend(text.split("\n"))
        self._append(tail)
        return out

    def rest(self) -> list[str]:
        if not self.buf and not self.dropped:
            return []
        line = self._text(bytes(self.buf), self.dropped)
        self.buf.clear()
        self.dropped = 0
        return [line]


def open_log_file(log_path: Path, roots: list[Path]) -> TextIO:
    """The log ``log_path`` opened for appending relative to the outermost of ``roots``
    (the folders a child can write) that holds it, by safe_files.open_log: a symlink,
    hard link or FIFO planted at the log's place or on the way (``logs/``) is replaced,
    never written through. A log in none of them is opened in its own folder."""
    root, rel = safe_files.split_under(log_path, roots)
    root.mkdir(parents=True, exist_ok=True)  # the engine's own folder above the child's
    return safe_files.open_log(root, rel)


class OutputPump:
    """Reads a child's stdout and stderr on its own thread (never blocking the event
    loop), writes ``HH:MM:SS.mmm out|err text`` lines to the log file (up to a cap, then a
    note), keeps the stderr tail and publishes RunOutput batches every _FLUSH_S at most,
    coalescing what does not fit into one "N lines omitted" marker."""

    def __init__(self, log_path: Path, idea_id: int | None, run: str, bus: EventBus | None,
                 *, tail_chars: int, max_log_bytes: int, log_file: TextIO | None = None) -> None:
        """``log_file``: the log already opened by :func:`open_log_file` (the executor
        opens it relative to the folder the child can write); by default it is opened
        here relative to its own folder."""
        self.log_path = log_path
        self._log = log_file if log_file is not None else open_log_file(log_path, [])
        self._idea_id, self._run, self._bus = idea_id, run, bus
        self._tail_chars = tail_chars
        self._tail = ""
        self._max_log = max_log_bytes
        self.log_bytes = 0
        self.log_truncated = False
        self.lines = 0
        self.bytes_in = 0
        self.omitted = 0
        self.last_output = 0.0
        self._pending: list[str] = []
        self._pending_chars = 0
        self._omitted_now = 0
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _stamp() -> str:
        now = time.time()
        return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"

    def header(self, text: str) -> None:
        self._emit([text], "---", self._stamp(), always_log=True)

    def start(self, stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> None:
        self._thread = threading.Thread(target=self._loop, args=(stdout, stderr),
                                        name=f"aisci-output-{self._run}", daemon=True)
        self._thread.start()

    def _loop(self, stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> None:
        sel = selectors.DefaultSelector()
        for stream, tag in ((stdout, "out"), (stderr, "err")):
            if stream is not None:
                os.set_blocking(stream.fileno(), False)
                sel.register(stream.fileno(), selectors.EVENT_READ, _LineSplitter(tag))
        try:
            while sel.get_map() and not self._stop.is_set():
                for key, _ in sel.select(timeout=_FLUSH_S):
                    try:
                        data = os.read(key.fd, _READ_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fd)
                        self._emit(key.data.rest(), key.data.tag, self._stamp())
                        continue
                    self.bytes_in += len(data)
                    self.last_output = time.monotonic()
                    lines = key.data.feed(data)
                    if lines:
                        self._emit(lines, key.data.tag, self._stamp())
                if time.monotonic() - self._last_flush >= _FLUSH_S:
                    self.flush()
            for key in list(sel.get_map().values()):
                self._emit(key.data.rest(), key.data.tag, self._stamp())
        finally:
            sel.close()
            for stream in (stdout, stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self.flush()

    def _emit(self, lines: list[str], tag: str, stamp: str, always_log: bool = False) -> None:
        if not lines:
            return
        prefix = f"{stamp} {tag} "
        block = prefix + ("\n" + prefix).join(lines) + "\n"
        with self._lock:
            self.lines += len(lines)
            if always_log:
                self._log.write(block)
            elif not self.log_truncated:
                if self.log_bytes + len(block) > self._max_log:
                    self.log_truncated = True
                    note = (f"{prefix}[aisci: log reached {self._max_log // 2**20} MB; further "
                            "output is not written]\n")
                    self._log.write(note)
                    self.log_bytes += len(note)
                else:
                    self._log.write(block)
                    self.log_bytes += len(block)
            if tag == "err":
                self._tail = (self._tail + "\n".join(lines) + "\n")[-self._tail_chars - 1:]
            room = _BATCH_LINES - len(self._pending)
            if room <= 0 or self._pending_chars >= _BATCH_CHARS:
                self._omitted_now += len(lines)
                return
            self._omitted_now += max(0, len(lines) - room)
            if room >= len(lines) and len(block) <= _BATCH_CHARS:
                live = block[:-1].split("\n")  # the prefixed lines, built once above
            else:
                live = [prefix + t for t in lines[:room]]
            if max(map(len, live)) > _EVENT_LINE_CAP:
                live = [t if len(t) <= _EVENT_LINE_CAP else t[:_EVENT_LINE_CAP] + " ..."
                        for t in live]
            self._pending.extend(live)
            self._pending_chars += sum(map(len, live))

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            # the log file is the TUI's source for the visible run: keep it current
            with contextlib.suppress(OSError, ValueError):
                self._log.flush()
            if not self._pending and not self._omitted_now:
                return
            batch = self._pending
            if self._omitted_now:
                where = (f"the log {self.log_path.name} stopped at its "
                         f"{self._max_log / 2**20:.3g} MB cap" if self.log_truncated
                         else f"all are in {self.log_path.name}")
                batch.append(f"[aisci: {self._omitted_now} lines not shown live at this rate; "
                             f"{where}]")
                self.omitted += self._omitted_now
            self._pending, self._pending_chars, self._omitted_now = [], 0, 0
        if self._bus is not None:
            self._bus.publish(RunOutput(idea_id=self._idea_id, run=self._run, lines=tuple(batch)))

    def stderr_tail(self) -> str:
        with self._lock:
            return self._tail.rstrip("\n")[-self._tail_chars:]

    def join(self, timeout: float) -> None:
        """Wait for the pipes to close; stop reading after ``timeout`` if something escaped
        the tree and still holds them."""
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(1.0)

    def close(self, footer: str) -> None:
        self.header(footer)
        self.flush()
        with self._lock:
            self._log.close()


