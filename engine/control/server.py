"""The control socket a running engine serves in its lab (``aisci.sock``).

Viewers (``aisci-tui`` attached from another terminal) and the CLI of any shell connect
here; see :mod:`aisci.engine.control.protocol` for the messages. The socket is the
owner's alone: mode 0600, and every connection's peer credentials are checked (another
user is refused even if the mode is widened). Each client has a bounded outgoing buffer:
one that stops reading (a SIGSTOPped viewer, a dead SSH link) is dropped with a notice
once it falls :data:`MAX_BACKLOG_BYTES` behind or does not read for :data:`STALL_S`, and
never slows the engine or the experiments. Nothing a client sends can crash or block
the engine: malformed, oversized and out-of-order messages get an error reply.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import math
import os
import socket
import stat
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.control import protocol as wire
from aisci.engine.errors import EXIT_USAGE, AisciError, UsageError

log = logging.getLogger(__name__)

MAX_CLIENTS = 32
MAX_BACKLOG_BYTES = 8 << 20
"""Bytes queued for one client (replies and events) before it is dropped."""
EVENT_QUEUE = 20_000
"""Events queued for one client before it is dropped."""
STALL_S = 10.0
"""A client that takes no bytes for this long while some wait for it is dropped."""
HELLO_S = 5.0
"""A connection must say hello within this time: a silent or byte-dripping client
cannot hold one of the MAX_CLIENTS places. (After hello a connection may stay idle: an
attached viewer's command channel waits for the user.)"""
READ_PAUSE_BYTES = 1 << 20
"""Requests are not read from a client while this much of its replies waits: one that
sends and never reads holds this, not MAX_BACKLOG_BYTES."""
MAX_ARG_CHARS = 100_000


class ControlServer:
    """Serve ``calls`` (engine commands by name), the running processes and a stop
    request to the clients of ``lab``'s control socket."""

    def __init__(self, lab: Path, bus: ev.EventBus, *,
                 calls: Mapping[str, Callable[..., object]],
                 processes: Callable[[], list[ev.ProcessStats]],
                 request_stop: Callable[[str], None],
                 info: Callable[[], dict[str, Any]]) -> None:
        self.path = wire.socket_path(lab)
        self.bus = bus
        self._calls = calls
        self._processes = processes
        self._request_stop = request_stop
        self._info = info
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_Client] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._inode: int | None = None

    @property
    def viewers(self) -> int:
        return sum(1 for c in self._clients if c.sub is not None)

    async def start(self) -> None:
        """Bind the socket (a stale one from a dead engine is replaced) and serve."""
        await asyncio.to_thread(remove_stale_socket, self.path)
        with wire.socket_address(self.path) as address:
            self._server = await asyncio.start_unix_server(
                self._serve, path=address, limit=wire.MAX_MESSAGE + 1)
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.close()
        if self._handlers:  # they see the end of their connection and return
            _done, pending = await asyncio.wait(set(self._handlers), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:  # ours, not a successor's
                os.unlink(self.path)

    # -- one connection -------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        with contextlib.suppress(asyncio.CancelledError):  # the engine is closing
            await self._serve_client(reader, writer)

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        sock: socket.socket | None = writer.get_extra_info("socket")
        try:
            pid, uid = wire.peer_credentials(sock) if sock is not None else (0, -1)
        except OSError:
            pid, uid = 0, -1
        client = _Client(self, writer, pid)
        if uid != os.geteuid():
            client.reply(None, error=UsageError(
                f"refused: this engine belongs to uid {os.geteuid()}; the connection came "
                f"from uid {uid}", exit_code=EXIT_USAGE))
            await client.flush_and_close()
            return
        if len(self._clients) >= MAX_CLIENTS:
            client.reply(None, error=UsageError(
                f"refused: {MAX_CLIENTS} clients are connected already"))
            await client.flush_and_close()
            return
        self._clients.add(client)
        try:
            await self._read_loop(client, reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug here must never take the engine down
            log.exception("control client %s", pid)
        finally:
            self._clients.discard(client)
            was_viewer = client.sub is not None
            client.close()
            if was_viewer and not client.dropped:
                self.bus.publish(ev.ViewerChanged(action="left", pid=pid, viewers=self.viewers))

    async def _read_loop(self, client: _Client, reader: asyncio.StreamReader) -> None:
        while not client.closed:
            if not await client.wait_backlog():
                return
            try:
                line = await asyncio.wait_for(reader.readline(),
                                              None if client.greeted else HELLO_S)
            except TimeoutError:
                client.reply(None, error=wire.ProtocolError(
                    f"no 'hello' within {HELLO_S:.0f} s; closing the connection"))
                await client.flush_and_close()
                return
            except (ValueError, asyncio.LimitOverrunError):
                client.reply(None, error=wire.ProtocolError(
                    f"message longer than {wire.MAX_MESSAGE} bytes; closing the connection"))
                await client.flush_and_close()
                return
            if not line:
                return
            if not line.strip():
                continue
            self._handle(client, line)

    def _handle(self, client: _Client, line: bytes) -> None:
        try:
            msg = wire.decode(line)
        except wire.ProtocolError as exc:
            client.reply(None, error=exc)
            return
        rid = msg.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            client.reply(None, error=wire.ProtocolError(f"request id {rid!r}: expected an integer"))
            return
        if rid <= client.last_id:
            client.reply(rid, error=wire.ProtocolError(
                f"request id {rid} out of order (the last was {client.last_id})"))
            return
        client.last_id = rid
        op = msg.get("op")
        if op != "hello" and not client.greeted:
            client.reply(rid, error=wire.ProtocolError(f"{op!r} before 'hello': say hello first"))
            return
        try:
            result = self._dispatch(client, op, msg)
        except Exception as exc:  # every failure is a reply; the engine carries on
            if not isinstance(exc, AisciError):
                log.exception("control request %s from pid %s", op, client.pid)
            client.reply(rid, error=exc)
            return
        client.reply(rid, result=result)

    def _dispatch(self, client: _Client, op: object, msg: dict[str, Any]) -> object:
        if op == "hello":
            if client.greeted:
                raise wire.ProtocolError("'hello' sent twice on one connection")
            client.greeted = True
            tail = msg.get("output_tail")
            if tail is not None and (not isinstance(tail, int) or isinstance(tail, bool)
                                     or tail < 0):
                raise wire.ProtocolError(f"output_tail {tail!r}: expected an integer >= 0")
            client.output_tail = tail
            if msg.get("events"):
                client.subscribe(self.bus.subscribe(maxsize=EVENT_QUEUE))
                self.bus.publish(ev.ViewerChanged(action="attached", pid=client.pid,
                                                  viewers=self.viewers))
            return {**self._info(), "viewers": self.viewers}
        if op == "ping":
            return "pong"
        if op == "processes":
            return [p.to_dict() for p in self._processes()]
        if op == "stop":
            self._request_stop(f"a client (pid {client.pid})")
            return True
        if op == "call":
            method, args = msg.get("method"), msg.get("args", [])
            if method not in wire.METHODS or method not in self._calls:
                raise wire.ProtocolError(f"unknown method {method!r}; expected one of "
                                         f"{', '.join(wire.METHODS)}")
            if not isinstance(args, list):
                raise wire.ProtocolError(f"{method}: args must be a list, got {args!r:.80}")
            fn = self._calls[str(method)]
            check_args(str(method), fn, args)
            return fn(*args)
        raise wire.ProtocolError(f"unknown op {op!r}; expected hello, call, processes, stop "
                                 "or ping")


class _Client:
    """One connection: its outgoing buffer (bounded), its event feed, its writer task."""

    def __init__(self, server: ControlServer, writer: asyncio.StreamWriter, pid: int) -> None:
        self.server = server
        self.writer = writer
        self.pid = pid
        self.greeted = False
        self.last_id = 0
        self.sub: ev.Subscription | None = None
        self.output_tail: int | None = None
        """At most this many lines of each RunOutput event (None: all). A viewer that
        reads the run logs itself asks for few: the engine then sends little."""
        self.closed = False
        self.dropped = False
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self._ready = asyncio.Event()
        self._tasks = [asyncio.get_running_loop().create_task(self._write_loop(),
                                                              name=f"control-write-{pid}")]

    async def wait_backlog(self) -> bool:
        """Wait (at most STALL_S) until less than READ_PAUSE_BYTES of replies wait for
        this client; False when it was dropped for not reading."""
        deadline = asyncio.get_running_loop().time() + STALL_S
        while self._out_bytes > READ_PAUSE_BYTES and not self.closed:
            if asyncio.get_running_loop().time() > deadline:
                self.drop(f"it read nothing for {STALL_S:.0f} s")
                return False
            await asyncio.sleep(0.05)
        return not self.closed

    def subscribe(self, sub: ev.Subscription) -> None:
        self.sub = sub
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._event_loop(sub), name=f"control-events-{self.pid}"))

    def reply(self, rid: int | None, *, result: object = None,
              error: BaseException | None = None) -> None:
        if error is not None:
            self._queue(wire.encode({"id": rid, "ok": False, "error": wire.error_body(error)}))
        else:
            self._queue(wire.encode({"id": rid, "ok": True, "result": result}))

    def _queue(self, data: bytes) -> None:
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._ready.set()
        if self._out_bytes > MAX_BACKLOG_BYTES:
            self.drop(f"it fell {self._out_bytes >> 20} MB behind")

    async def _event_loop(self, sub: ev.Subscription) -> None:
        with contextlib.suppress(StopAsyncIteration):
            while not self.closed:
                first = await sub.get()
                if sub.dropped:
                    self.drop(f"it fell {EVENT_QUEUE} events behind")
                    return
                for event in (first, *sub.drain()):
                    if isinstance(event, ev.ViewerChanged) and event.pid == self.pid:
                        continue
                    if isinstance(event, ev.RunOutput) and self.output_tail is not None \
                            and len(event.lines) > self.output_tail:
                        event = dataclasses.replace(event, lines=event.lines[
                            len(event.lines) - self.output_tail:])
                    self._queue(wire.encode({"event": wire.event_to_wire(event)}))
                    if self.closed:
                        return

    async def _write_loop(self) -> None:
        try:
            while not self.closed:
                await self._ready.wait()
                self._ready.clear()
                while self._out and not self.closed:
                    data = self._out.popleft()
                    self._out_bytes -= len(data)
                    self.writer.write(data)
                    try:
                        await asyncio.wait_for(self.writer.drain(), STALL_S)
                    except TimeoutError:
                        self.drop(f"it read nothing for {STALL_S:.0f} s")
                        return
        except (ConnectionError, RuntimeError):
            self.close()

    async def flush_and_close(self) -> None:
        """Send what is queued (briefly) and close: for a refusal."""
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError, RuntimeError):
            while self._out:
                self.writer.write(self._out.popleft())
            await asyncio.wait_for(self.writer.drain(), 1.0)
        self.close()

    def drop(self, why: str) -> None:
        """Stop serving a client that does not keep up; the others carry on."""
        if self.closed:
            return
        self.dropped = True
        self.close(abort=True)
        self.server._clients.discard(self)
        self.server.bus.publish(ev.Notice(
            level="warning", message=f"viewer (pid {self.pid}) dropped: {why}; it can attach "
                                     "again"))
        self.server.bus.publish(ev.ViewerChanged(action="dropped", pid=self.pid,
                                                 viewers=self.server.viewers, reason=why))

    def close(self, *, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if not abort:  # replies already queued still go out (the transport sends them
            with contextlib.suppress(Exception):  # before it closes, without blocking)
                for data in self._out:
                    self.writer.write(data)
        self._out.clear()
        self._out_bytes = 0
        self._ready.set()
        if self.sub is not None:
            self.sub.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()


def check_args(method: str, fn: Callable[..., object], args: list[Any]) -> None:
    """The JSON arguments of a call against the engine command's signature: the count,
    and each value's type (a whole number that SQLite can hold, a finite number, a string
    of bounded length, an object with string keys). ProtocolError names the first one
    that does not fit."""
    params = list(inspect.signature(fn).parameters.values())
    hints = typing.get_type_hints(fn)
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    if not required <= len(args) <= len(params):
        names = ", ".join(p.name for p in params)
        raise wire.ProtocolError(f"{method}: expected {required}"
                                 + (f" to {len(params)}" if len(params) != required else "")
                                 + f" argument(s) ({names}), got {len(args)}")
    for param, value in zip(params, args, strict=False):
        expected = hints.get(param.name, Any)
        if not _fits(value, expected):
            raise wire.ProtocolError(f"{method}: {param.name} = {str(value)[:60]!r}: expected "
                                     f"{_type_name(expected)}")


def _options(expected: object) -> tuple[object, ...]:
    """The types an annotation allows (``int | None`` -> int, NoneType)."""
    return typing.get_args(expected) if typing.get_origin(expected) in (
        types.UnionType, typing.Union) else (expected,)


def _fits(value: object, expected: object) -> bool:
    if expected is Any:
        return True
    for option in _options(expected):
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if option is int and isinstance(value, int) and abs(value) < 2**63:
            return True
        if option is float and isinstance(value, int | float) and math.isfinite(value):
            return True
        if option is str and isinstance(value, str) and len(value) <= MAX_ARG_CHARS:
            return True
        if typing.get_origin(option) is dict and isinstance(value, dict) and all(
                isinstance(k, str) for k in value):
            return True
    return False


def _type_name(expected: object) -> str:
    names = {int: "a whole number", float: "a finite number", str: "a string",
             bool: "true or false", type(None): "null"}
    return " or ".join(names.get(o, "an object") if isinstance(o, type) else "an object"
                       for o in _options(expected))


def remove_stale_socket(path: Path) -> None:
    """Remove the socket a dead engine left at ``path``; refuse anything else there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise wire.ControlError(f"{path} is not a socket; move it away so the engine can "
                                "serve its control socket there")
    if engine_listening(path):
        raise wire.ControlError(f"another engine already serves {path}")
    os.unlink(path)


def engine_listening(path: Path, timeout: float = 1.0) -> bool:
    """Whether a process accepts connections on the socket at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        with wire.socket_address(path) as address:
            s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()
