"""``engine.log`` in the lab: what the engine says (stages, runs, notices, errors), one
line each, while it runs, so a detached engine is never mute. Bounded: past
:data:`MAX_BYTES` the file moves to ``engine.log.1`` (one generation kept)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TextIO

from aisci.engine import events as ev
from aisci.engine.lab import layout

MAX_BYTES = 10 << 20
_QUIET = (ev.RunOutput, ev.LLMStreamed, ev.ProcessStats, ev.StageProgress, ev.CostUpdated,
          ev.LLMCallStarted)


def describe(event: ev.Event) -> str:
    """One line for a person reading the log."""
    fields = event.to_dict()
    fields.pop("ts", None)
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", ()))
    return f"{event.kind} {text}"


class EngineLog:
    """A bus sink (and a logging handler) appending to ``<lab>/engine.log``."""

    def __init__(self, lab: Path) -> None:
        self.path = Path(lab) / layout.ENGINE_LOG
        self._lock = threading.Lock()
        self._fh: TextIO | None = None
        self._size = 0
        self.handler = _Handler(self)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, _QUIET):
            return
        self.write(describe(event))

    def write(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {' '.join(text.split())[:4000]}\n"
        with self._lock:
            try:
                fh = self._open()
                fh.write(line)
                fh.flush()
                self._size += len(line)
                if self._size > MAX_BYTES:
                    fh.close()
                    self._fh = None
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            except OSError:
                pass  # a full disk must not stop the engine; the store keeps the events

    def _open(self) -> TextIO:
        if self._fh is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                         0o600)
            self._fh = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
            self._size = os.fstat(fd).st_size
        return self._fh

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class _Handler(logging.Handler):
    def __init__(self, log: EngineLog) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.write(f"{record.levelname} {record.name}: {self.format(record)}")
        except Exception:
            pass
