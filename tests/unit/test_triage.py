"""Triage commands: approve / veto (reason required) / edit (validated, rename rules),
history with time and source, IdeaChanged events, the auto-approve policy."""

from __future__ import annotations

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, IdeaChanged
from aisci.engine.lab.store import LabStore
from aisci.engine.stages.approval import TriageError, approve, auto_approve_decision, edit, veto

IDEA = {"Name": "lr_warmup_grokking", "Title": "Learning-rate warm-up and grokking",
        "Experiment": "Vary the warm-up length and record steps to 99 percent accuracy.",
        "Interestingness": 5, "Feasibility": 9, "Novelty": 4, "Extra": "kept"}


@pytest.fixture
def env(tmp_path):
    store = LabStore(tmp_path)
    bus = EventBus()
    sub = bus.subscribe(kinds=(IdeaChanged,))
    iid = store.add_idea(IDEA["Name"], "grokking", IDEA)
    yield store, bus, sub, iid
    store.close()


def test_approve_and_veto_recorded(env):
    store, bus, sub, iid = env
    approve(store, bus, iid)
    assert store.get_idea(iid).status == "approved"
    with pytest.raises(TriageError, match="reason is required"):
        veto(store, bus, iid, "   ")
    veto(store, bus, iid, "duplicates Power et al.", source="auto")
    row = store.get_idea(iid)
    assert row.status == "vetoed"
    hist = store.idea_history(iid)
    assert [h["action"] for h in hist] == ["created", "approved", "vetoed"]
    assert hist[1]["source"] == "human" and hist[2]["source"] == "auto"
    assert hist[2]["detail"] == {"from": "approved", "reason": "duplicates Power et al."}
    assert all(h["ts"] > 0 for h in hist)
    statuses = [e.status for e in sub.drain()]
    assert statuses == ["approved", "vetoed"]
    with pytest.raises(TriageError, match="no idea with id 999"):
        approve(store, bus, 999)


def test_edit_validates_and_keeps_extras(env):
    store, bus, sub, iid = env
    with pytest.raises(TriageError, match="Feasibility"):
        edit(store, bus, iid, {"Feasibility": 11})
    with pytest.raises(TriageError, match="snake_case"):
        edit(store, bus, iid, {"Name": "Bad Name"})
    store.update_idea(iid, novelty={"novel": True, "complete": True})
    row = edit(store, bus, iid, {"Title": "Warm-up length controls grokking", "Novelty": 6})
    assert row.status == "edited" and row.data["Extra"] == "kept"
    assert row.data["Title"] == "Warm-up length controls grokking"
    assert row.novelty["stale"] is True
    last = store.idea_history(iid)[-1]
    assert last["action"] == "edited"
    assert last["detail"]["changes"]["Novelty"] == {"before": 4, "after": 6}
    # Renaming works before a workspace exists, and is refused after.
    row = edit(store, bus, iid, {"Name": "warmup_grokking"})
    assert row.name == "warmup_grokking" and store.find_idea("warmup_grokking").id == iid
    (store.lab_dir / "ideas" / f"{iid}-warmup_grokking").mkdir(parents=True)
    with pytest.raises(TriageError, match="workspace already exists"):
        edit(store, bus, iid, {"Name": "another_name"})
    other = store.add_idea("taken_name", "grokking", {**IDEA, "Name": "taken_name"})
    with pytest.raises(TriageError, match="is taken"):
        edit(store, bus, other, {"Name": "warmup_grokking"})


def test_auto_approve_policy(env):
    store, bus, sub, iid = env
    s = Settings()
    assert auto_approve_decision(s, store.get_idea(iid))  # unchecked (novelty skipped)
    store.update_idea(iid, novelty={"novel": False, "decided": False, "complete": True})
    assert not auto_approve_decision(s, store.get_idea(iid))
    s.novelty.require_novel_for_auto_approve = False
    assert auto_approve_decision(s, store.get_idea(iid))
    store.update_idea(iid, novelty={"novel": True, "decided": True, "complete": True})
    s.novelty.require_novel_for_auto_approve = True
    assert auto_approve_decision(s, store.get_idea(iid))
    veto(store, bus, iid, "no")
    assert not auto_approve_decision(s, store.get_idea(iid))
