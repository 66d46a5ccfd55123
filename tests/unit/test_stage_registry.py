"""The one stage list: order, lookup, and where an idea is (the same for ``aisci status``,
the snapshot and the TUI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aisci.engine.errors import UsageError
from aisci.engine.lab.store import LabStore
from aisci.engine.snapshot import build_snapshot
from aisci.engine.stages.contract import StageKind, StageOutcome, StageState
from aisci.engine.stages.registry import STAGE_NAMES, STAGES, current_stage, spec
from aisci.tui.lab_data import LabReader

ALL_DONE = {name: "done" for name in STAGE_NAMES} | {"novelty": "skipped",
                                                       "improve": "skipped"}


def test_not_started_and_vetoed() -> None:
    assert current_stage({}) == (None, "not started")
    assert current_stage({}, vetoed=True) == (None, "vetoed")
    # a veto wins over whatever the stages say
    assert current_stage({"ideate": "done", "novelty": "running"}, vetoed=True) == (
        None, "vetoed")


def test_the_running_stage_wins() -> None:
    states = {"ideate": "done", "novelty": "done", "approval": "done", "experiment": "failed",
              "plot": "running"}
    assert current_stage(states) == ("plot", "running")


def test_first_unfinished_stage_in_order_and_a_missing_row_is_pending() -> None:
    assert current_stage({"ideate": "done"}) == ("novelty", "pending")
    assert current_stage({"ideate": "done", "novelty": "skipped", "approval": "waiting"}) == (
        "approval", "waiting")
    # rows out of order: the earliest stage that is not finished
    assert current_stage({"novelty": "done", "write": "paused"}) == ("ideate", "pending")
    assert current_stage({**ALL_DONE, "review": "failed"}) == ("review", "failed")


def test_all_done_or_skipped_is_done() -> None:
    assert current_stage(ALL_DONE) == (None, "done")
    assert current_stage({k: StageState(v) for k, v in ALL_DONE.items()}) == (None, "done")


def test_unknown_stage_is_a_usage_error_naming_the_stages() -> None:
    with pytest.raises(UsageError, match=r"unknown stage 'nope'; expected one of ideate, "
                                         r"novelty, approval, experiment"):
        spec("nope")
    assert spec("review").kind is StageKind.LLM


def test_registry_shape() -> None:
    assert STAGE_NAMES == ("ideate", "novelty", "approval", "experiment", "plot", "write",
                           "integrity", "review", "improve")
    for s in STAGES:
        # only the record and the decision have no stage function
        assert (s.run is None) == (s.kind in (StageKind.RECORD, StageKind.DECISION)), s.name
    assert {s.name for s in STAGES if s.optional} == {"novelty", "improve"}
    assert {s.name for s in STAGES if s.kind is StageKind.SLOT} == {"experiment", "plot"}


def test_outcome_defaults() -> None:
    assert StageOutcome() == StageOutcome(ok=True, summary="", reason="")
    assert StageState.DONE.finished and not StageState.FAILED.finished


IDEA = {"Title": "t", "Experiment": "e", "Interestingness": 5, "Feasibility": 5, "Novelty": 5}

CASES: dict[str, tuple[str, dict[str, str]]] = {
    "fresh": ("proposed", {}),
    "vetoed": ("vetoed", {"ideate": "done", "novelty": "done"}),
    "waiting": ("checked", {"ideate": "done", "novelty": "done", "approval": "waiting"}),
    "running": ("approved", {"ideate": "done", "novelty": "done", "approval": "done",
                             "experiment": "failed", "plot": "running"}),
    "gap": ("checked", {"novelty": "done"}),
    "finished": ("approved", ALL_DONE),
    "failed": ("approved", {**ALL_DONE, "write": "failed", "integrity": "pending"}),
}


def test_status_and_tui_agree_on_the_current_stage(tmp_path: Path) -> None:
    with LabStore(tmp_path) as store:
        ids = {}
        for name, (status, states) in CASES.items():
            ids[name] = store.add_idea(name, "grokking", {**IDEA, "Name": name}, status=status)
            for stage, state in states.items():
                store.set_stage(ids[name], stage, state)
        snap = build_snapshot(store)
        reader = LabReader(tmp_path, store)
        seen = {}
        for name, idea_id in ids.items():
            status_view = snap.idea(idea_id)
            assert status_view is not None
            tui_stage, tui_state = reader.stage(idea_id)
            assert (tui_stage or None, tui_state) == (
                status_view.current_stage, status_view.current_state), name
            seen[name] = (status_view.current_stage, status_view.current_state)
    assert seen == {"fresh": (None, "not started"), "vetoed": (None, "vetoed"),
                    "waiting": ("approval", "waiting"), "running": ("plot", "running"),
                    "gap": ("ideate", "pending"), "finished": (None, "done"),
                    "failed": ("write", "failed")}
