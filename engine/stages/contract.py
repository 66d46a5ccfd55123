"""The stage contract: what a stage is, what it returns, and the states it can be in.

Every per-idea stage is ``async def <verb>(ctx: StageContext, idea_id: int) -> <Outcome>``
where the outcome type derives from :class:`StageOutcome`. The pipeline reads only the
common fields (``ok``, ``summary``, ``reason``); the stage-specific fields are for the
stage's own callers (the CLI, tests). The list of stages and their order live in
:mod:`aisci.engine.stages.registry`, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StageState(StrEnum):
    """A stage's persisted state (the store keeps the string value)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    """Waiting for a human decision (approval, literature unavailable)."""
    PAUSED = "paused"
    """Stopped and resumable: budget reached, engine stopped, paused by a human."""
    FAILED = "failed"
    DONE = "done"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED: frozenset[StageState] = frozenset({StageState.DONE, StageState.SKIPPED})


class StageKind(StrEnum):
    """How the pipeline schedules a stage."""

    RECORD = "record"
    """Nothing to run for the idea (ideate: the idea exists; the lab-level ideation job
    made it)."""
    DECISION = "decision"
    """Decided by a human or the auto-approve policy (approval); no stage function."""
    LLM = "llm"
    """Mostly waits on the model: shares the ``scheduler.max_llm_tasks`` semaphore."""
    SLOT = "slot"
    """Runs processes under Scheduler slots (experiment, plot)."""


@dataclass
class StageOutcome:
    """What every stage returns. ``ok=False`` marks the stage failed with ``reason``;
    ``summary`` is the one line shown when it finished; ``notice`` (optional) is a line the
    user must read although the stage is done (e.g. "no PDF: TeX is not installed")."""

    ok: bool = True
    summary: str = ""
    reason: str = ""
    notice: str = ""
