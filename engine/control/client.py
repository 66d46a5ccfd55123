"""Reaching a running engine from another process: ``engine_serving`` (is one there?),
and :class:`ControlClient`, a blocking connection for the CLI and for the commands of an
attached viewer (each call waits at most ``timeout`` seconds for its reply)."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aisci.engine.control import protocol as wire
from aisci.engine.lab.store import LabStore

CONNECT_TIMEOUT_S = 3.0
CALL_TIMEOUT_S = 30.0


def engine_serving(lab: Path) -> bool:
    """Whether an engine holds ``lab`` and answers on its control socket."""
    path = wire.socket_path(lab)
    if not path.exists() or LabStore.lock_holder(lab) is None:
        return False
    try:
        with ControlClient(lab, timeout=CONNECT_TIMEOUT_S) as client:
            client.call_op("ping")
        return True
    except wire.ControlError:
        return False


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


class ControlClient:
    """One blocking connection to the engine serving ``lab`` (said hello, no events).
    Safe to share between threads: calls are serialised."""

    def __init__(self, lab: Path, *, timeout: float = CALL_TIMEOUT_S, client: str = "aisci",
                 ) -> None:
        self.lab = Path(lab)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._buf = b""
        path = wire.socket_path(self.lab)
        if path.is_symlink():  # a planted link could hand this lab's commands to another
            raise wire.ControlError(f"{path} is a symbolic link, not this lab's engine "
                                    "socket; remove it")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(min(timeout, CONNECT_TIMEOUT_S))
        try:
            with wire.socket_address(path) as address:
                self._sock.connect(address)
        except PermissionError:
            self._sock.close()
            raise wire.ControlError(
                f"the engine running {self.lab} belongs to another user (permission denied "
                f"on {path.name}); only its owner may drive it") from None
        except OSError as exc:
            self._sock.close()
            raise wire.EngineNotRunning(
                f"no engine is running lab {self.lab} ({exc.strerror or exc})",
                hint="start one with `aisci run` or `aisci-tui`") from None
        self._sock.settimeout(timeout)
        self.info: dict[str, Any] = self.call_op("hello", client=client)
        served = self.info.get("lab") if isinstance(self.info, dict) else None
        if not isinstance(served, str) or not _same_folder(Path(served), self.lab):
            self._sock.close()
            raise wire.ControlError(f"the engine answering on {path} serves {served!r}, "
                                    f"not {self.lab}; refusing to drive it")

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def call(self, method: str, *args: Any) -> Any:
        """Run an engine command (one of protocol.METHODS) and return its result; the
        engine's refusal is raised as RemoteError with its message and exit code."""
        return self.call_op("call", method=method, args=list(args))

    def call_op(self, op: str, **fields: Any) -> Any:
        with self._lock:
            rid = next(self._ids)
            # One deadline for the whole call: an engine trickling events a byte at a
            # time never trips the per-read timeout.
            deadline = time.monotonic() + self.timeout
            try:
                self._sock.sendall(wire.encode({"id": rid, "op": op, **fields}))
                while True:
                    reply = wire.decode(self._read_line(deadline))
                    if "event" in reply:
                        continue
                    if reply.get("id") in (rid, None):
                        break
            except TimeoutError:
                raise wire.ControlError(f"the engine running {self.lab} did not answer "
                                        f"{op!r} within {self.timeout:.0f} s") from None
            except OSError as exc:
                raise wire.EngineNotRunning(
                    f"lost the engine running {self.lab} ({exc.strerror or exc})") from None
        if not reply.get("ok"):
            wire.raise_error(reply.get("error"))
        return reply.get("result")

    def _read_line(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            if len(self._buf) > wire.MAX_MESSAGE:
                raise wire.ProtocolError("the engine sent an oversized message")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise wire.EngineNotRunning(f"the engine running {self.lab} closed the "
                                            "connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line
