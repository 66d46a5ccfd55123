"""What every stage function receives: the lab's services, bundled in one object.

Stage functions are ``async def stage(ctx: StageContext, idea_id: int, ...)``; they read
and write the lab only through these services, persist their own progress in the store
or the idea's git repository, and are safe to call again after a crash (they skip what
is already finished).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aisci.engine.config import Settings
from aisci.engine.events import Event, EventBus
from aisci.engine.lab import layout
from aisci.engine.lab.store import IdeaRow, LabStore
from aisci.engine.literature import Paper
from aisci.engine.llm.client import LLMClient, StageLLM
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.run.executor import RunResult, RunSpec


class ProcessRunner(Protocol):
    """Runs one contained process (:class:`aisci.engine.run.executor.Executor`)."""

    async def run(self, spec: RunSpec) -> RunResult: ...


class SlotInfo(Protocol):
    """A GPU or CPU slot held while a process runs (:class:`aisci.engine.run.scheduler.Slot`)."""

    @property
    def name(self) -> str: ...

    @property
    def cuda_visible_devices(self) -> str: ...


class SlotScheduler(Protocol):
    """Hands out GPU / CPU slots (:class:`aisci.engine.run.scheduler.Scheduler`)."""

    def slot(self, *, idea_id: int | None = None,
             priority: int = 0) -> AbstractAsyncContextManager[SlotInfo]: ...


class LiteratureSearch(Protocol):
    """Searches papers with cache, limits and failover
    (:class:`aisci.engine.literature.Literature`)."""

    async def search(self, query: str, limit: int = 10, *,
                     deadline: float | None = None) -> list[Paper]: ...


@dataclass
class StageContext:
    lab: Path
    settings: Settings
    store: LabStore
    bus: EventBus
    llm: LLMClient
    prompts: PromptLibrary
    executor: ProcessRunner | None = None
    """Runs experiments, plots and LaTeX, contained; None: no process can run."""
    scheduler: SlotScheduler | None = None
    """None: one process at a time on the CPU (:func:`runtime.stage_slot`)."""
    literature: LiteratureSearch | None = None
    """None: the novelty stage makes one; the write stage skips citations."""

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def stage_llm(self, stage: str, idea_id: int | None) -> StageLLM:
        return self.llm.for_stage(stage, idea_id)

    def idea(self, idea_id: int) -> IdeaRow:
        row = self.store.get_idea(idea_id)
        if row is None:
            raise KeyError(f"no idea with id {idea_id} in {self.lab}")
        return row

    def idea_dir(self, idea: IdeaRow | int) -> Path:
        row = self.idea(idea) if isinstance(idea, int) else idea
        return layout.idea_dir(self.lab, row.id, row.name)
