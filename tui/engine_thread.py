"""The in-process engine on its own thread and event loop, and the App's handle on it.

``aisci-tui`` runs the engine here rather than on the UI's event loop, so nothing the
UI does can stall it: a slow frame, a flood of key presses, or a terminal that vanished
while Textual writes its last escape codes (a writer that blocks forever) leave the
engine, its control socket and its experiments running. :class:`EngineThread` is an
:class:`aisci.tui.engine_port.EnginePort`: its commands run on the engine's loop and
wait for the answer (the App calls them off its own loop), and the engine's events are
re-published on a bus of the UI's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aisci.engine import events as ev
from aisci.engine.engine import Engine
from aisci.engine.errors import AisciError

T = TypeVar("T")

START_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 120.0


class EngineThreadError(AisciError):
    """The engine thread did not answer (start, a command, the stop)."""


class EngineThread:
    """Run ``engine`` on a thread of its own; the UI drives it through this object."""

    blocking_commands = True
    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lab = engine.lab
        self.settings = engine.settings
        self.store = engine.store
        self.bus = ev.EventBus()
        """The UI's copy of the engine's events (bound to the UI loop by the bridge)."""
        self.exit_when_stopped = False
        """Set when the UI is gone (detached, hung up): the engine's stop ends the
        process, whatever the UI's thread is doing."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="aisci-engine", daemon=True)
        self._ready = threading.Event()
        self.finished = threading.Event()
        self._start_error: BaseException | None = None
        engine.bus.add_sink(self.bus.publish)

    # -- the engine's thread ----------------------------------------------------------------
    def launch(self) -> None:
        """Start the thread and the engine on it; raise what the engine's start raised."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise EngineThreadError(f"the engine of {self.lab} did not start within "
                                    f"{START_TIMEOUT_S:.0f} s")
        if self._start_error is not None:
            raise self._start_error

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self.finished.set()
            if self.exit_when_stopped:
                os._exit(0)

    async def _serve(self) -> None:
        try:
            await self.engine.start()
        except BaseException as exc:  # handed to launch() in the UI thread
            self._start_error = exc
            self._ready.set()
            await self.engine.stop()
            return
        self._ready.set()
        await self.engine.stop_requested.wait()
        await self.engine.stop()

    def _call(self, fn: Callable[..., T], *args: Any, timeout: float = CALL_TIMEOUT_S) -> T:
        """``fn(*args)`` on the engine's loop; its result or its exception, here."""
        if self.finished.is_set():
            raise EngineThreadError("the engine has stopped")

        async def call() -> T:
            return fn(*args)

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise EngineThreadError(f"the engine did not answer within {timeout:.0f} s"
                                    ) from None

    # -- the port -----------------------------------------------------------------------------
    @property
    def read_only(self) -> str | None:
        return None

    @property
    def attached_to(self) -> int | None:
        return None

    async def start(self) -> None:
        """The engine is already running (see :meth:`launch`); bind the UI's bus."""
        self.bus.bind_loop()

    async def stop(self) -> None:
        """Stop the engine (its runs are stopped, resumable) and wait for it."""
        self.request_stop("the user")
        if not await asyncio.to_thread(self.finished.wait, STOP_TIMEOUT_S):
            raise EngineThreadError(f"the engine did not stop within {STOP_TIMEOUT_S:.0f} s")

    def request_stop(self, source: str) -> None:
        if not self.finished.is_set():
            self._loop.call_soon_threadsafe(self.engine.request_stop, source)

    def processes(self) -> list[ev.ProcessStats]:
        return self._call(self.engine.processes, timeout=5.0)

    def generate_ideas(self, n: int) -> None:
        self._call(self.engine.generate_ideas, n)

    def approve(self, idea_id: int) -> None:
        self._call(self.engine.approve, idea_id)

    def veto(self, idea_id: int, reason: str) -> None:
        self._call(self.engine.veto, idea_id, reason)

    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> None:
        self._call(self.engine.edit_idea, idea_id, fields)

    def pause_idea(self, idea_id: int) -> None:
        self._call(self.engine.pause_idea, idea_id)

    def resume_idea(self, idea_id: int) -> None:
        self._call(self.engine.resume_idea, idea_id)

    def retry_stage(self, idea_id: int, stage: str) -> None:
        self._call(self.engine.retry_stage, idea_id, stage)

    def skip_stage(self, idea_id: int, stage: str) -> None:
        self._call(self.engine.skip_stage, idea_id, stage)

    def literature_decision(self, idea_id: int, decision: str) -> None:
        self._call(self.engine.literature_decision, idea_id, decision)

    def kill_run(self, idea_id: int | None, run: str) -> bool:
        return self._call(self.engine.kill_run, idea_id, run)

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> float:
        return self._call(self.engine.extend_run, idea_id, run, seconds)

    def pause_run(self, idea_id: int | None, run: str) -> bool:
        return self._call(self.engine.pause_run, idea_id, run)

    def resume_run(self, idea_id: int | None, run: str) -> bool:
        return self._call(self.engine.resume_run, idea_id, run)

    def raise_budget(self, scope: str, usd: float) -> None:
        self._call(self.engine.raise_budget, scope, usd)
