"""The control channel's wire format: one JSON object per line over the lab's Unix socket.

Requests (client -> engine) carry ``v`` (the protocol version), ``id`` (an integer the
reply repeats) and ``op``: ``hello`` first (with ``events: true`` to receive the engine's
events, and ``output_tail: N`` to get at most N lines of each output batch), then ``call`` (``method`` and ``args``: one of :data:`METHODS`), ``processes``,
``stop`` or ``ping``. Replies are ``{"v", "id", "ok": true, "result"}`` or ``{"v", "id",
"ok": false, "error": {"type", "message", "hint", "exit_code"}}``; events arrive as
``{"v", "event": {"type": ..., "fields": {...}}}``, serialised from the typed events of
``aisci.engine.events``. A message longer than :data:`MAX_MESSAGE` bytes is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.errors import EXIT_FAILED, EXIT_USAGE, AisciError
from aisci.engine.lab import layout

VERSION = 1
MAX_MESSAGE = 1 << 20
"""Bytes per line, either way; a longer request gets an error reply and the connection
is closed (what follows it cannot be framed)."""

METHODS = ("generate_ideas", "approve", "veto", "edit_idea", "pause_idea", "resume_idea",
           "retry_stage", "skip_stage", "literature_decision", "kill_run", "extend_run",
           "pause_run", "resume_run", "raise_budget")
"""The engine commands a client may call: the command half of the TUI's engine port."""

_SUN_PATH_MAX = 107


class ControlError(AisciError):
    """The control channel failed: no engine answers, or it answered nonsense."""


class EngineNotRunning(ControlError):
    """No engine serves this lab (no socket, or a stale one from a dead engine)."""


class RemoteError(AisciError):
    """A command the running engine refused: its message and exit code, as if local."""


class ProtocolError(ControlError):
    """A message that is not valid on the channel (framing, JSON, version, fields)."""

    exit_code = EXIT_USAGE


def socket_path(lab: Path) -> Path:
    return Path(lab) / layout.CONTROL_SOCKET


@contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for ``path``. A Unix socket path is limited
    to 107 bytes; a longer one (a deep lab folder) is reached through this process's open
    descriptor of its folder (``/proc/self/fd/N/aisci.sock``)."""
    text = str(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


# -- messages ------------------------------------------------------------------------------

def encode(message: dict[str, Any]) -> bytes:
    """One line of JSON (``v`` added). Non-finite floats are sent as null."""
    body = {"v": VERSION, **message}
    try:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError:
        data = json.dumps(_finite(body), separators=(",", ":"), default=_plain)
    return data.encode("utf-8", "replace") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A received line as a message; ProtocolError says what is wrong with it."""
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(line)} bytes: at most {MAX_MESSAGE} allowed")
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise ProtocolError("message is JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"message is a JSON {type(message).__name__}; expected an object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"protocol version {message.get('v')!r}; this engine speaks "
                            f"version {VERSION}")
    return message


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AisciError):
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                "exit_code": exc.exit_code}
    return {"type": type(exc).__name__, "message": f"internal error in the engine: {exc}",
            "hint": "", "exit_code": EXIT_FAILED}


def raise_error(body: Any) -> None:
    """Raise the error a reply carries, as the engine raised it (message, exit code)."""
    if not isinstance(body, dict):
        raise ControlError(f"the engine sent an error without a body: {body!r}")
    code = body.get("exit_code")
    raise RemoteError(str(body.get("message") or "the engine refused the command"),
                      hint=str(body.get("hint") or ""),
                      exit_code=code if isinstance(code, int) else EXIT_FAILED)


# -- events --------------------------------------------------------------------------------

def _event_types() -> dict[str, type[ev.Event]]:
    out: dict[str, type[ev.Event]] = {}
    todo: list[type[ev.Event]] = [ev.Event]
    while todo:
        cls = todo.pop()
        out[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return out


_EVENT_TYPES = _event_types()


def event_to_wire(event: ev.Event) -> dict[str, Any]:
    """``{"type": class name, "fields": {...}}`` (a field may itself be called kind)."""
    return {"type": type(event).__name__, "fields": event.to_dict()}


def event_from_wire(data: Any) -> ev.Event:
    """The typed event a wire dict describes; ProtocolError for an unknown type or
    fields that do not fit it."""
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise ProtocolError("an event must be a JSON object with 'type' and 'fields'")
    cls = _EVENT_TYPES.get(str(data.get("type")))
    if cls is None or cls is ev.Event:
        raise ProtocolError(f"unknown event type {data.get('type')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in data["fields"].items() if k in names}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ProtocolError(f"event {cls.__name__} does not fit: {exc}") from None


def _plain(obj: object) -> object:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return repr(obj)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
