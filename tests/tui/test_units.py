"""Unit tests of the TUI's headless parts: the log line index and the event bridge."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from aisci.engine import events as ev
from aisci.tui import bridge as br
from aisci.tui.heap_freeze import MAX_FREEZES, MIN_NEW_MODULES, HeapFreezer
from aisci.tui.lab_data import current_stage
from aisci.tui.themes import load_themes
from aisci.tui.widgets.log.line_index import MAX_LINE_BYTES, LineIndex
from aisci.tui.widgets.review.scorecard import render_review
from rich.console import Console
from support.labs import idea_row
from support.tui_lab import MessageSink


def test_index_reads_any_line_with_bounded_checkpoints(tmp_path: Path) -> None:
    log = tmp_path / "run_1.log"
    with open(log, "w") as fh:
        for i in range(50_000):
            fh.write(f"step {i}\n")
    ix = LineIndex(log, max_checkpoints=256, cache_lines=100)
    assert ix.scan()
    assert ix.line_count == 50_000
    assert ix.checkpoints <= 257 and ix.stride >= 50_000 // 256
    assert ix.get_lines(0, 2) == ["step 0", "step 1"]
    assert ix.get_lines(31_337, 1) == ["step 31337"]
    assert ix.get_lines(49_999, 5) == ["step 49999"]
    assert len(ix._cache) <= 100
    assert ix.find("step 4000", 0) == 4000
    assert ix.find("step 4000", 4001) == 40000
    assert ix.find("step 12", 100, backwards=True) == 12
    assert ix.find("nope", 0) is None


def test_index_follows_growth_partial_lines_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "run_1.log"
    log.write_bytes(b"a\nb")
    ix = LineIndex(log)
    ix.scan()
    assert ix.line_count == 2 and ix.get_lines(0, 5) == ["a", "b"]
    with open(log, "ab") as fh:
        fh.write(b"c\nd\n")
    assert ix.scan()
    assert ix.get_lines(0, 5) == ["a", "bc", "d"]
    log.write_bytes(b"new\n")  # truncated / rotated: start over
    ix.scan()
    assert ix.get_lines(0, 5) == ["new"]


def test_index_survives_binary_huge_lines_and_progress_bars(tmp_path: Path) -> None:
    log = tmp_path / "run_1.log"
    log.write_bytes(b"\xff\xfe bad utf8\n" + b"x" * 200_000 + b"\nepoch 1\r50%\r100%\nok\x1b[2J\n")
    ix = LineIndex(log)
    ix.scan()
    lines = ix.get_lines(0, 10)
    assert len(lines) == 4
    assert "bad utf8" in lines[0] and "\ufffd" in lines[0]
    assert len(lines[1]) == MAX_LINE_BYTES
    assert lines[2] == "100%"
    assert "\x1b" not in lines[3] and lines[3].startswith("ok")


def test_bridge_coalesces_a_flood_into_a_few_messages() -> None:
    bus = ev.EventBus()

    sink = MessageSink()
    bridge = br.EngineBridge(bus, sink)  # type: ignore[arg-type]  # a stand-in message pump
    for i in range(2000):
        bus.publish(ev.RunOutput(idea_id=1, run="run_1", lines=(f"line {i}",)))
    for i in range(50):
        bus.publish(ev.ProcessStats(idea_id=1, run="run_1", elapsed_s=i, limit_s=100,
                                    cpu_percent=50, rss_bytes=1, gpu_mem_bytes=None,
                                    last_output_age_s=0, paused=False))
    bus.publish(ev.LLMStreamed(call_id="c1", stage="write", idea_id=1, text="Hel"))
    bus.publish(ev.LLMStreamed(call_id="c1", stage="write", idea_id=1, text="lo"))
    bus.publish(ev.IdeaChanged(idea_id=1, status="approved"))
    bus.publish(ev.IdeaChanged(idea_id=2, status="vetoed"))
    bus.publish(ev.BudgetReached(scope="lab", idea_id=None, spent_usd=2, budget_usd=2))
    assert bridge.flush() == 5
    kinds = {type(m): m for m in sink.got}
    out = kinds[br.RunOutputBatch]
    assert out.total_lines == 2000
    assert out.lines[(1, "run_1")][-1] == "line 1999"
    assert len(out.lines[(1, "run_1")]) == br.MAX_LINES_PER_FLUSH
    assert kinds[br.ProcessStatsBatch].stats[0].elapsed_s == 49
    assert kinds[br.LLMText].chunks[0][1] == "Hello"
    assert kinds[br.IdeasChanged].idea_ids == frozenset({1, 2})
    assert kinds[br.BudgetHit].event.spent_usd == 2
    assert bridge.flush() == 0


def test_engine_never_imports_the_tui_or_textual() -> None:
    code = ("import sys, aisci.engine.engine, aisci.engine.cli; "
            "bad = [m for m in sys.modules if m.startswith(('textual', 'aisci.tui'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_current_stage_is_the_registry_s_in_the_panes_shape() -> None:
    """The same stage as ``aisci status``; "" instead of None for the table cells."""
    idea = idea_row()

    def st(**states: str) -> dict:
        return {k: {"state": v} for k, v in states.items()}

    assert current_stage(idea, {}) == ("", "not started")
    assert current_stage(idea, st(ideate="done", novelty="done", approval="waiting")) == (
        "approval", "waiting")
    assert current_stage(idea, st(ideate="done", experiment="failed", plot="running")) == (
        "plot", "running")
    done = st(ideate="done", novelty="skipped", approval="done", experiment="done",
              plot="done", write="done", integrity="done", review="done", improve="skipped")
    assert current_stage(idea, done) == ("", "done")
    assert current_stage(idea, st(ideate="done")) == ("novelty", "pending")
    vetoed = dataclasses.replace(idea, status="vetoed")
    # decided: no stage waits for anyone (issue 16: no "approval ?" for a vetoed idea)
    assert current_stage(vetoed, st(ideate="done")) == ("", "vetoed")


def test_scorecard_shows_each_integrity_finding_with_its_quote_and_severity():
    findings = [
        {"kind": "wrong_direction", "message": "lower is better for final_loss",
         "location": "latex/template.tex:41", "quote": "1.466 compared to 1.465",
         "severity": "error"},
        {"kind": "untied_number", "message": "no metric named near it",
         "location": "latex/template.tex:50", "quote": "0.37", "severity": "low"},
    ]
    console = Console(width=160, record=True)
    console.print(render_review(None, findings))
    text = console.export_text()
    assert "wrong_direction" in text and "1.466 compared to 1.465" in text
    assert "untied_number (low)" in text and "0.37" in text
    assert "latex/template.tex:41" in text


def test_a_broken_lab_theme_is_reported_and_the_others_load(tmp_path: Path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#336699"\n')
    (themes / "latin1.toml").write_bytes(b'name = "caf\xe9"\nprimary = "#000000"\n')
    (themes / "broken.toml").write_text('primary = "#0\n')
    found, problems = load_themes(tmp_path)
    assert "mine" in {t.name for t in found}
    assert len(problems) == 2 and all("cannot read theme" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_the_heap_is_frozen_again_after_imports_a_bounded_number_of_times() -> None:
    modules = [500]
    done: list[str] = []
    heap = HeapFreezer(lambda: modules[0], collect=lambda: done.append("collect"),
                       freeze=lambda: done.append("freeze"))
    heap.check()
    assert done == []  # nothing before the first frame's freeze
    heap.freeze()
    assert done == ["collect", "freeze"] and heap.freezes == 1
    modules[0] += MIN_NEW_MODULES - 1
    heap.check()
    assert heap.freezes == 1  # a few imports are not worth a collection
    modules[0] += 1
    heap.check()
    assert heap.freezes == 2 and done[-2:] == ["collect", "freeze"]
    for _ in range(3 * MAX_FREEZES):
        modules[0] += MIN_NEW_MODULES
        heap.check()
    assert heap.freezes == MAX_FREEZES  # frozen garbage is never collected: bounded
