"""Everything the TUI uses of the engine: the one interface between the two.

The App, its screens, widgets and the command palette call the engine only through
:class:`EnginePort`. ``aisci.engine.engine.Engine`` (in this process) satisfies it, so does
``aisci.engine.control.attached.AttachedEngine`` (an engine in another process, driven
through the lab's control socket) and the tests' ``StoreEngine``
(tests/support/tui_lab.py); tests/tui/test_port.py checks all three. A new
command is declared here first, then implemented by both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from aisci.engine.config import Settings
from aisci.engine.events import EventBus, ProcessStats
from aisci.engine.lab.store import LabStore


class EnginePort(Protocol):
    lab: Path
    bus: EventBus
    """Everything the engine does is published here (the bridge subscribes)."""
    store: LabStore
    """Read only through :class:`aisci.tui.lab_data.LabReader`."""
    settings: Settings

    blocking_commands: bool
    """True when a command waits for another process (the attached engine): the App
    then calls commands off its event loop."""

    @property
    def read_only(self) -> str | None:
        """Why the lab is only viewed (every command is refused), or None."""
        ...

    @property
    def attached_to(self) -> int | None:
        """The pid of the engine process this viewer drives, or None (in-process)."""
        ...

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def processes(self) -> list[ProcessStats]:
        """The running experiment / plot / compile processes."""
        ...

    def request_stop(self, source: str) -> None:
        """Ask the engine to stop cleanly (an attached engine too: ``aisci stop``)."""
        ...

    # -- ideas --------------------------------------------------------------------------
    def generate_ideas(self, n: int) -> None: ...
    def approve(self, idea_id: int) -> None: ...
    def veto(self, idea_id: int, reason: str) -> None: ...
    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> None: ...
    def pause_idea(self, idea_id: int) -> None: ...
    def resume_idea(self, idea_id: int) -> None: ...
    def retry_stage(self, idea_id: int, stage: str) -> None: ...
    def skip_stage(self, idea_id: int, stage: str) -> None: ...
    def literature_decision(self, idea_id: int, decision: str) -> None: ...

    # -- runs (idea_id None: a lab-level run, e.g. the template baseline) and budget ----
    def kill_run(self, idea_id: int | None, run: str) -> bool:
        """False when the run is not running."""
        ...

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> float:
        """The run's new time limit in seconds."""
        ...

    def pause_run(self, idea_id: int | None, run: str) -> bool: ...
    def resume_run(self, idea_id: int | None, run: str) -> bool: ...
    def raise_budget(self, scope: str, usd: float) -> None: ...
