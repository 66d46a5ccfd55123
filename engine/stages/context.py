"""What every stage function receives: the lab's services, bundled in one object.

Stage functions are ``async def stage(ctx: StageContext, idea_id: int, ...)``; they read
and write the lab only through these services, persist their own progress in the store
or the idea's git repository, and are safe to call again after a crash (they skip what
is already finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisci.engine.config import Settings
from aisci.engine.events import Event, EventBus
from aisci.engine.lab.store import IdeaRow, LabStore
from aisci.engine.llm.client import LLMClient, StageLLM
from aisci.engine.llm.prompts import PromptLibrary

if TYPE_CHECKING:  # the services below import heavier modules; keep the context light
    pass


@dataclass
class StageContext:
    lab: Path
    settings: Settings
    store: LabStore
    bus: EventBus
    llm: LLMClient
    prompts: PromptLibrary
    executor: Any = None
    """aisci.engine.run.executor.Executor: runs experiments, plots and LaTeX, contained."""
    scheduler: Any = None
    """aisci.engine.run.scheduler.Scheduler: hands out GPU / CPU slots."""
    literature: Any = None
    """aisci.engine.literature.Literature: searches with cache, limits and failover."""
    extras: dict[str, Any] = field(default_factory=dict)

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
        return self.lab / "ideas" / f"{row.id}-{row.name}"
