"""The one stage list: every per-idea stage, in pipeline order, with how it runs.

The pipeline walks :data:`STAGES`; ``aisci status``, the snapshot, the CLI progress table
and the TUI take the stage names and an idea's current stage from here and nowhere else.
Adding a stage = a module in this package + one :class:`StageSpec` line below.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass

from aisci.engine.errors import UsageError
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import FINISHED, StageKind, StageOutcome, StageState
from aisci.engine.stages.experiment import run_experiments
from aisci.engine.stages.improve import improve_paper
from aisci.engine.stages.integrity import check_integrity
from aisci.engine.stages.novelty import check_novelty
from aisci.engine.stages.plot import run_plots
from aisci.engine.stages.review import review_paper
from aisci.engine.stages.write import write_paper

StageFn = Callable[[StageContext, int], Coroutine[object, object, StageOutcome]]
"""``async def <verb>(ctx, idea_id) -> <a StageOutcome subclass>``."""


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: StageKind
    run: StageFn | None
    """None for stages the pipeline decides itself (ideate, approval)."""
    title: str
    optional: bool = False
    """Skipped unless asked for (improve) or when switched off (novelty); the batch's
    options and the settings decide (``Pipeline._switched_off``)."""


STAGES: tuple[StageSpec, ...] = (
    StageSpec("ideate", StageKind.RECORD, None, "the idea exists (generated, seed or imported)"),
    StageSpec("novelty", StageKind.LLM, check_novelty, "literature search: is it novel?",
              optional=True),
    StageSpec("approval", StageKind.DECISION, None, "a human (or the policy) approves or vetoes"),
    StageSpec("experiment", StageKind.SLOT, run_experiments, "edit the code, run up to N runs"),
    StageSpec("plot", StageKind.SLOT, run_plots, "edit plot.py until the figures exist"),
    StageSpec("write", StageKind.LLM, write_paper, "write and compile the LaTeX paper"),
    StageSpec("integrity", StageKind.LLM, check_integrity, "check the paper against the runs"),
    StageSpec("review", StageKind.LLM, review_paper, "NeurIPS-style review ensemble"),
    StageSpec("improve", StageKind.LLM, improve_paper, "revise the paper from the review",
              optional=True),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
_BY_NAME: dict[str, StageSpec] = {s.name: s for s in STAGES}


def spec(name: str) -> StageSpec:
    """The stage called ``name``; a UsageError naming the known stages otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UsageError(
            f"unknown stage {name!r}; expected one of {', '.join(STAGE_NAMES)}") from None


def current_stage(states: Mapping[str, str], *, vetoed: bool = False) -> tuple[str | None, str]:
    """Where an idea is, from its stage states (stage name -> state string):

    - the running stage, if any;
    - else the first stage in order that is not done or skipped, with its state
      (``pending`` when it has no row yet);
    - ``(None, "vetoed")`` for a vetoed idea (decided: no stage waits for anyone);
    - ``(None, "not started")`` when no stage has a state, ``(None, "done")`` when every
      stage is done or skipped.
    """
    if vetoed:
        return None, "vetoed"
    if not states:
        return None, "not started"
    for name in STAGE_NAMES:
        if states.get(name) == StageState.RUNNING:
            return name, StageState.RUNNING.value
    for name in STAGE_NAMES:
        state = states.get(name)
        if state is None:
            return name, StageState.PENDING.value
        if state not in FINISHED:
            return name, str(state)
    return None, "done"
