"""An engine that runs in another process, driven through its control socket: what
``aisci-tui`` uses when it attaches to a lab whose engine is already running.

:class:`AttachedEngine` offers the same interface as the in-process
:class:`aisci.engine.engine.Engine` (the TUI's engine port): events arrive on a local
:class:`EventBus` from the socket, commands are sent over it (they block until the engine
answers, so the TUI calls them off its event loop), and the store is read directly,
read-only. Leaving (``stop``) closes this viewer's connections; the engine carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.config import Settings, load_config
from aisci.engine.control import protocol as wire
from aisci.engine.control.client import ControlClient, engine_serving
from aisci.engine.lab.store import LabStore
from pydantic import ValidationError

log = logging.getLogger(__name__)

OUTPUT_TAIL = 20
"""Lines of each output batch the engine sends: the log pane reads the run logs from
the files (the engine writes them); the events only say that output arrived."""
PROCESS_STALE_S = 3.0
"""A process whose stats have not come for this long is taken as gone."""


class AttachedEngine:
    """A viewer's handle on the engine running ``lab`` in another process."""

    blocking_commands = True
    """Commands wait for the engine's reply: callers run them off their event loop."""

    def __init__(self, lab: Path, *, client: str = "aisci-tui") -> None:
        self.lab = Path(lab).resolve()
        self._client_name = client
        self._commands = ControlClient(self.lab, client=client)
        info = self._commands.info if isinstance(self._commands.info, dict) else {}
        self.engine_pid: int | None = info.get("engine_pid")
        self.settings = _settings(self.lab, info.get("settings"))
        self.store = LabStore.open_read_only(self.lab)
        self.bus = ev.EventBus()
        self._procs: dict[tuple[int | None, str], ev.ProcessStats] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._leaving = False

    @property
    def read_only(self) -> str | None:
        return None

    @property
    def attached_to(self) -> int | None:
        """The pid of the engine this viewer drives."""
        return self.engine_pid

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe to the engine's events (they are published on :attr:`bus`)."""
        self.bus.bind_loop()
        path = wire.socket_path(self.lab)
        try:
            with wire.socket_address(path) as address:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(address, limit=wire.MAX_MESSAGE + 1), 5.0)
            self._reader, self._writer = reader, writer
            writer.write(wire.encode({"id": 1, "op": "hello", "events": True,
                                      "output_tail": OUTPUT_TAIL,
                                      "client": self._client_name}))
            await writer.drain()
        except (TimeoutError, OSError) as exc:
            raise wire.EngineNotRunning(f"cannot attach to the engine running {self.lab} "
                                        f"({exc})") from None
        self._task = asyncio.get_running_loop().create_task(self._read_events(),
                                                            name="attached-events")

    async def stop(self) -> None:
        """Leave: this viewer's connections close; the engine and its runs carry on."""
        self._leaving = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._commands.close()
        self.store.close()

    async def _read_events(self) -> None:
        assert self._reader is not None
        reason = "the engine closed the connection"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    msg = wire.decode(line)
                except wire.ProtocolError as exc:
                    log.warning("engine message skipped: %s", exc)
                    continue
                if "event" in msg:
                    self._receive(msg["event"])
                elif not msg.get("ok", True):
                    body = msg.get("error") or {}
                    reason = str(body.get("message") if isinstance(body, dict) else body)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            reason = f"the connection to the engine broke ({exc})"
        if self._leaving:
            return
        alive = await asyncio.to_thread(engine_serving, self.lab)
        if alive:
            reason = f"this viewer was dropped by the engine ({reason}); it still runs"
        else:
            reason = f"the engine (pid {self.engine_pid}) is gone: {reason}"
        self.bus.publish(ev.EngineGone(reason=reason, alive=alive))

    def _receive(self, data: Any) -> None:
        try:
            event = wire.event_from_wire(data)
        except wire.ProtocolError as exc:
            log.debug("event skipped: %s", exc)
            return
        if isinstance(event, ev.ProcessStats):
            self._procs[(event.idea_id, event.run)] = event
            if len(self._procs) > 1000:  # bounded: forget the oldest
                oldest = min(self._procs, key=lambda k: self._procs[k].ts)
                del self._procs[oldest]
        elif isinstance(event, ev.RunFinished):
            self._procs.pop((event.idea_id, event.run), None)
        self.bus.publish(event)

    def processes(self) -> list[ev.ProcessStats]:
        now = time.time()
        return [p for p in self._procs.values() if now - p.ts < PROCESS_STALE_S]

    def request_stop(self, source: str) -> None:
        """Ask the engine to stop cleanly (its runs are stopped and resumable)."""
        self._commands.call_op("stop")

    # -- commands (each waits for the engine's answer) -------------------------------------
    def generate_ideas(self, n: int) -> None:
        self._commands.call("generate_ideas", n)

    def approve(self, idea_id: int) -> None:
        self._commands.call("approve", idea_id)

    def veto(self, idea_id: int, reason: str) -> None:
        self._commands.call("veto", idea_id, reason)

    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> None:
        self._commands.call("edit_idea", idea_id, fields)

    def pause_idea(self, idea_id: int) -> None:
        self._commands.call("pause_idea", idea_id)

    def resume_idea(self, idea_id: int) -> None:
        self._commands.call("resume_idea", idea_id)

    def retry_stage(self, idea_id: int, stage: str) -> None:
        self._commands.call("retry_stage", idea_id, stage)

    def skip_stage(self, idea_id: int, stage: str) -> None:
        self._commands.call("skip_stage", idea_id, stage)

    def literature_decision(self, idea_id: int, decision: str) -> None:
        self._commands.call("literature_decision", idea_id, decision)

    def kill_run(self, idea_id: int | None, run: str) -> bool:
        return bool(self._commands.call("kill_run", idea_id, run))

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> float:
        return float(self._commands.call("extend_run", idea_id, run, seconds))

    def pause_run(self, idea_id: int | None, run: str) -> bool:
        return bool(self._commands.call("pause_run", idea_id, run))

    def resume_run(self, idea_id: int | None, run: str) -> bool:
        return bool(self._commands.call("resume_run", idea_id, run))

    def raise_budget(self, scope: str, usd: float) -> None:
        self._commands.call("raise_budget", scope, usd)
        setattr(self.settings.budget, f"{scope}_usd", float(usd))


def _settings(lab: Path, data: Any) -> Settings:
    """The running engine's settings (as it sent them), or the lab's configuration."""
    if isinstance(data, dict):
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            log.warning("engine settings not readable (%s); using the lab's configuration", exc)
    return load_config(lab, {}).settings
