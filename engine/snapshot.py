"""A read-only picture of a lab: ideas with their stage states, runs and cost.

Built from the store alone, so it works for the running engine (``Engine.snapshot()``)
and for ``aisci status`` on a lab another process is using (store opened read-only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.lab.store import LabStore, RunRow
from aisci.engine.stages.contract import StageState
from aisci.engine.stages.registry import current_stage

_NEEDS_A_LOOK = frozenset({StageState.FAILED, StageState.PAUSED, StageState.WAITING})


@dataclass(frozen=True)
class StageRecord:
    """One stage of one idea, as the store has it."""

    stage: str
    state: str
    """A :class:`StageState` value."""
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        if self.finished_at is not None:
            return max(0.0, self.finished_at - self.started_at)
        # Still running: so far. Paused or failed without an end time: unknown.
        return (max(0.0, time.time() - self.started_at) if self.state == StageState.RUNNING
                else None)

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason", ""))


@dataclass(frozen=True)
class IdeaSnapshot:
    id: int
    name: str
    title: str
    template: str
    status: str
    """Triage status: proposed | checked | approved | vetoed | edited."""
    origin: str
    stages: dict[str, StageRecord]
    current_stage: str | None
    """:func:`aisci.engine.stages.registry.current_stage`: the running stage, else the
    first stage not done/skipped; "approval" for a vetoed idea; None when the idea went
    through every stage or never started."""
    current_state: str
    """The state of that stage, or "done" / "vetoed" / "not started"."""
    cost_usd: float
    runs: list[RunRow]
    paused: bool
    novel: bool | None
    data: dict[str, Any]

    @property
    def finished(self) -> bool:
        """Went through every stage (vetoed and not-started ideas are not finished)."""
        return self.current_state == "done"

    @property
    def stage_label(self) -> str:
        """The current stage; "finished" or "-" (not started, vetoed) when there is none."""
        return self.current_stage or ("finished" if self.finished else "-")

    def state_text(self, reason_chars: int) -> str:
        """The current state, with the stage's reason when it failed, paused or waits."""
        st = self.stages.get(self.current_stage or "")
        if st is not None and st.reason and self.current_state in _NEEDS_A_LOOK:
            return f"{self.current_state}: {st.reason[:reason_chars]}"
        return self.current_state

    def elapsed_s(self) -> float:
        return sum(s.duration_s or 0.0 for s in self.stages.values())


@dataclass(frozen=True)
class LabSnapshot:
    lab: Path
    ideas: list[IdeaSnapshot]
    cost_usd: float
    unknown_cost_calls: int
    budget_lab_usd: float | None
    budget_idea_usd: float | None
    running_runs: list[RunRow]
    ideation_active: bool = False
    ts: float = field(default_factory=time.time)

    def idea(self, idea_id: int) -> IdeaSnapshot | None:
        return next((i for i in self.ideas if i.id == idea_id), None)


def build_snapshot(store: LabStore, *, budget_lab_usd: float | None = None,
                   budget_idea_usd: float | None = None,
                   ideation_active: bool = False) -> LabSnapshot:
    paused = set(store.kv_get("pipeline.paused_ideas", []) or [])
    spend = {k: v for k, v in store.spend_by("idea_id").items() if k is not None}
    runs_by_idea: dict[int | None, list[RunRow]] = {}
    for r in store.runs():
        runs_by_idea.setdefault(r.idea_id, []).append(r)
    ideas: list[IdeaSnapshot] = []
    for row in store.list_ideas():
        stages = {name: StageRecord(name, d["state"], d["attempts"], d["started_at"],
                                    d["finished_at"], d["detail"] or {})
                  for name, d in store.stages(row.id).items()}
        cur, cur_state = current_stage({n: s.state for n, s in stages.items()},
                                       vetoed=row.status == "vetoed")
        novel = (row.novelty or {}).get("novel") if row.novelty else None
        ideas.append(IdeaSnapshot(
            id=row.id, name=row.name, title=str(row.data.get("Title", "")),
            template=row.template, status=row.status, origin=row.origin, stages=stages,
            current_stage=cur, current_state=cur_state, cost_usd=spend.get(row.id, 0.0),
            runs=runs_by_idea.get(row.id, []), paused=row.id in paused,
            novel=novel if isinstance(novel, bool) else None, data=row.data))
    return LabSnapshot(lab=store.lab_dir, ideas=ideas, cost_usd=store.spend(),
                       unknown_cost_calls=store.unknown_cost_calls(),
                       budget_lab_usd=budget_lab_usd, budget_idea_usd=budget_idea_usd,
                       running_runs=store.running_runs(), ideation_active=ideation_active)
