"""The messages of issue 16 item 17, each as the user reads it."""

from __future__ import annotations

from pathlib import Path

from aisci.engine.cli.run_progress import format_event
from aisci.engine.events import EventBus, IdeaChanged, RunOutput
from aisci.engine.lab.store import LabStore
from aisci.engine.run.output_pump import OutputPump
from aisci.engine.stages import approval
from aisci.tui.lab_data import metric_delta


def test_metric_delta_never_reads_minus_zero():
    assert metric_delta("loss", 4.593, {"loss": 4.593}, True) == "4.593 (= baseline)"
    tiny = metric_delta("loss", 4.5929, {"loss": 4.593}, True)
    assert "-0.0%" not in tiny and tiny.endswith("%)") and "(-" in tiny
    assert metric_delta("loss", 4.0, {"loss": 5.0}, True) == "4 (-20.0%)"


def test_approval_line_says_approved_once(tmp_path: Path):
    bus = EventBus()
    seen: list[IdeaChanged] = []
    bus.add_sink(lambda e: seen.append(e) if isinstance(e, IdeaChanged) else None)
    with LabStore(tmp_path) as store:
        iid = store.add_idea("a", "grokking", {"Name": "a"})
        approval.approve(store, bus, iid, source="auto")
    line = format_event(seen[-1])
    assert line is not None and line.count("approved") == 1, line


def test_live_view_names_the_log_cap_when_the_log_stopped(tmp_path: Path):
    bus = EventBus()
    got: list[RunOutput] = []
    bus.add_sink(lambda e: got.append(e) if isinstance(e, RunOutput) else None)
    pump = OutputPump(tmp_path / "run_0.log", None, "run_0", bus, tail_chars=100,
                      max_log_bytes=2**20)
    try:
        pump._omitted_now = 5
        pump.flush()
        assert "all are in run_0.log" in got[-1].lines[-1]
        pump.log_truncated = True  # the log reached its cap
        pump._omitted_now = 5
        pump.flush()
        last = got[-1].lines[-1]
        assert "all are in" not in last and "stopped at its 1 MB cap" in last, last
    finally:
        pump._log.close()
