"""Run a program in a pseudo-terminal and record everything it writes (for the TUI
benchmarks): timestamps of output chunks, total bytes, and waiting for text."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import threading
import time


class PtyProgram:
    def __init__(self, argv: list[str], cols: int = 120, rows: int = 40,
                 env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        full_env.update({"TERM": "xterm-256color", **(env or {})})
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     env=full_env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.chunks: list[tuple[float, bytes]] = []
        self._buf = bytearray()
        self._dropped = 0  # bytes cut from the front of _buf (marks stay absolute offsets)
        self._lock = threading.Lock()
        self._stop = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            with self._lock:
                self.chunks.append((now, data))
                self._buf += data
                if len(self._buf) > 1 << 22:  # keep the searchable tail bounded
                    cut = len(self._buf) - (1 << 21)
                    del self._buf[:cut]
                    self._dropped += cut

    def mark(self) -> int:
        """The output's length so far (an absolute offset: survives the tail's trimming)."""
        with self._lock:
            return self._dropped + len(self._buf)

    def wait_for(self, needle: bytes, timeout: float, since: int = 0) -> float | None:
        """Monotonic time when ``needle`` appeared after buffer offset ``since``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                pos = self._buf.find(needle, max(0, since - self._dropped - len(needle)))
                if pos >= 0:
                    return time.monotonic()
            time.sleep(0.002)
        return None

    def send(self, data: bytes) -> float:
        os.write(self.master, data)
        return time.monotonic()

    def press(self, key: bytes, needle: bytes, timeout: float = 5.0) -> float | None:
        """Seconds from sending ``key`` until ``needle`` appears in the output written
        after it; None when it does not within ``timeout``."""
        mark = self.mark()
        sent = self.send(key)
        seen = self.wait_for(needle, timeout, since=mark)
        return None if seen is None else seen - sent

    def bytes_between(self, t_start: float, t_end: float) -> int:
        with self._lock:
            return sum(len(d) for t, d in self.chunks if t_start <= t < t_end)

    def count_between(self, needle: bytes, t_start: float, t_end: float) -> int:
        with self._lock:
            return sum(d.count(needle) for t, d in self.chunks if t_start <= t < t_end)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._stop = True
        self._reader.join(2)
        os.close(self.master)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]
