"""The bridge classifies engine events once: what each kind of event becomes."""

from __future__ import annotations

from typing import Any, cast

from aisci.engine import events as ev
from aisci.tui import bridge as br
from support.tui_lab import MessageSink
from textual.message_pump import MessagePump


def translate(*events: ev.Event) -> list[Any]:
    bridge = br.EngineBridge(ev.EventBus(), cast(MessagePump, MessageSink()))
    return bridge.translate(list(events))


def test_stage_events_become_lines_outputs_and_alerts() -> None:
    out = translate(ev.StageStarted(idea_id=1, stage="plot"),
                    ev.StageFinished(idea_id=1, stage="plot", summary="3 figures"),
                    ev.StageFinished(idea_id=2, stage="write", summary="paper.pdf"),
                    ev.StageFailed(idea_id=3, stage="experiment", reason="exit 1"),
                    ev.StagePaused(idea_id=3, stage="approval", reason="waiting"),
                    ev.StageProgress(idea_id=None, stage="ideate", message="2/5"))
    assert [type(m) for m in out] == [br.IdeasChanged, br.StageActivity, br.OutputsChanged,
                                      br.Alert, br.Alert]
    ideas, activity, outputs, paper, failed = out
    assert isinstance(ideas, br.IdeasChanged) and ideas.idea_ids == {1, 2, 3}
    assert isinstance(activity, br.StageActivity)
    assert [(s.idea_id, s.state, s.text) for s in activity.lines] == [
        (1, "started", ""), (1, "done", "3 figures"), (2, "done", "paper.pdf"),
        (3, "failed", "exit 1"), (3, "paused", "waiting"), (None, "progress", "2/5")]
    assert isinstance(outputs, br.OutputsChanged) and outputs.idea_ids == {1, 2}
    assert isinstance(paper, br.Alert) and paper.title == "Paper finished"
    assert paper.text == "idea 2: paper ready paper.pdf"
    assert isinstance(failed, br.Alert) and failed.severity == "error"
    assert failed.text == "idea 3: experiment failed: exit 1"  # approval pauses: no alert


def test_run_lifecycle_is_one_message_per_event_in_order() -> None:
    started = ev.RunStarted(idea_id=1, run="run_1", attempt=2, pid=1, limit_s=60,
                            isolation="bwrap", log_path="")
    ended = ev.RunFinished(idea_id=1, run="run_1", attempt=1, status="failed", exit_code=1)
    control = ev.RunControl(idea_id=None, run="baseline", action="kill")
    out = translate(ended, started, control)
    assert [type(m) for m in out] == [br.RunEnded, br.RunStarted, br.RunControlled,
                                      br.RunsChanged]
    assert [m.event for m in out[:3]] == [ended, started, control]
    assert out[3].idea_ids == {1, None}


def test_notices_stalls_and_literature_outages_are_alerts() -> None:
    out = translate(ev.Notice(level="warning", message="disk almost full"),
                    ev.Notice(level="info", message="lab budget raised"),
                    ev.RunStalled(idea_id=4, run="run_2", silent_for_s=901.4),
                    ev.LiteratureStatus(source="s2", breaker="open", detail="429"),
                    ev.LiteratureStatus(source="s2", breaker="closed"))
    stats = [m for m in out if isinstance(m, br.ProcessStatsBatch)]
    assert len(stats) == 1 and stats[0].stalled[0].run == "run_2"
    alerts = [(m.text, m.severity) for m in out if isinstance(m, br.Alert)]
    assert alerts == [("disk almost full", "warning"), ("lab budget raised", "information"),
                      ("idea 4 run_2: no output for 901s", "warning"),
                      ("literature source s2 unavailable (429)", "warning")]
