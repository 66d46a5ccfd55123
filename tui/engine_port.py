"""What the TUI needs from the engine, and how it calls it.

The app is given an engine object (``aisci.engine.engine.Engine``); this module names
the surface the TUI uses so panes never reach further into the engine. Commands may be
plain or ``async`` methods; :func:`invoke` handles both.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore


class EnginePort(Protocol):
    bus: EventBus
    store: LabStore
    settings: Settings

    def approve(self, idea_id: int) -> Any: ...
    def veto(self, idea_id: int, reason: str) -> Any: ...
    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> Any: ...
    def generate_ideas(self, n: int) -> Any: ...
    def kill_run(self, idea_id: int, run: str) -> Any: ...
    def extend_run(self, idea_id: int, run: str, seconds: float) -> Any: ...
    def pause_run(self, idea_id: int, run: str) -> Any: ...
    def resume_run(self, idea_id: int, run: str) -> Any: ...
    def raise_budget(self, scope: str, usd: float) -> Any: ...


class CommandUnavailable(RuntimeError):
    pass


def lab_of(engine: Any) -> Path:
    """The lab directory of ``engine``."""
    lab = getattr(engine, "lab", None)
    return Path(lab) if lab is not None else Path(engine.store.lab_dir)


async def invoke(engine: Any, command: str, *args: Any) -> Any:
    """Call ``engine.<command>(*args)``, awaiting it when it is a coroutine."""
    fn = getattr(engine, command, None)
    if fn is None:
        raise CommandUnavailable(f"this engine has no command {command!r}")
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
