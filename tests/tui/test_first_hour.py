"""Issue 16, TUI half: what a new user met in the first hour (log lines cut, hidden State
column, chktex "failed", vetoed "approval ?", activity pane, 80x24, help names, plots
jump, palette, graphics probe under tmux, read-only lab, repeated failure toasts).

Each test drives the real app (Pilot) over a real lab store (tests/support/tui_lab.py)
or calls the unit that decides what is shown."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.tui import bridge as br
from aisci.tui.app import AisciApp
from aisci.tui.commands import AisciCommands
from aisci.tui.images import choose_protocol, no_graphics_query_in_multiplexer
from aisci.tui.lab_data import LabReader, RunSummary, run_status_label
from aisci.tui.screens.chrome import fit_status
from aisci.tui.screens.help import HelpScreen
from aisci.tui.widgets.activity.activity_pane import NOW_WIDTH, now_text, render_cost
from aisci.tui.widgets.activity.llm_stream import visible_lines
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaItem, MediaPane
from aisci.tui.widgets.processes.process_table import ProcessTable
from aisci.tui.widgets.runs.run_table import RunTable
from rich.console import Console
from support.tui_lab import StoreEngine, build_lab
from textual.widgets import DataTable

LOG = Path("ideas") / "1-adaptive_weight_decay" / "logs" / "run_2.log"
TAIL = "val_loss=0.0123 val_acc=0.9987"


def make_app(tmp_path: Path, **kwargs: Any) -> tuple[AisciApp, StoreEngine]:
    lab = tmp_path / "lab"
    store = build_lab(lab)
    engine = StoreEngine(lab, store, **kwargs)
    return AisciApp(engine, images=choose_protocol("none")), engine


def visible_columns(table: DataTable[Any]) -> list[str]:
    """Labels of the columns that lie wholly inside the table's width."""
    out, x = [], 0
    for column in table.ordered_columns:
        x += column.get_render_width(table)
        if x <= table.size.width:
            out.append(str(column.label))
    return out


def rendered(view: Any) -> list[str]:
    return [view.render_line(y).text for y in range(view.size.height)]


# -- 3: the log pane wraps long lines, or cuts and scrolls sideways (w toggles) -----------

async def test_log_pane_wraps_long_lines_and_w_cuts_them(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    long_line = "step 7400/7500 train_loss=0.0012 train_acc=1.0000 " + "x" * 60 + " " + TAIL
    with open(tmp_path / "lab" / LOG, "a") as fh:
        fh.write(long_line + "\n")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        pane = app.query_one(LogPane)
        for _ in range(40):
            await pilot.pause(0.1)
            if TAIL in "".join(rendered(pane.view)):
                break
        view = pane.view
        assert view.wrap and view.size.width < len(long_line)
        assert TAIL in "".join(rendered(view))  # the validation numbers are on screen
        await pilot.press("w")
        await pilot.pause(0.2)
        assert not view.wrap and TAIL not in "".join(rendered(view))
        assert "cut" in pane.query_one("#log-header").render().plain
        view.scroll_to(x=view.max_scroll_x, animate=False)
        await pilot.pause(0.2)
        assert view.max_scroll_x > 0 and TAIL in "".join(rendered(view))


async def test_wrapped_frame_reads_one_screenful_not_the_log(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    with open(tmp_path / "lab" / LOG, "a") as fh:
        for i in range(20_000):
            fh.write(f"line {i} " + "y" * 150 + "\n")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        view = app.query_one(LogPane).view
        for _ in range(50):
            await pilot.pause(0.1)
            if view.line_count > 20_000:
                break
        assert view.index is not None
        asked: list[int] = []
        get_lines = view.index.get_lines

        def counting(first: int, count: int) -> list[str]:
            asked.append(count)
            return get_lines(first, count)

        view.index.get_lines = counting  # type: ignore[method-assign]
        view._rows_key = None
        rows = rendered(view)
        assert sum(asked) <= view.size.height
        assert rows[-1].rstrip().endswith("y")  # the newest line's end is in view
        assert "line 19999 " in "".join(rows)
        view.follow = False
        view.scroll_to(y=100, animate=False)
        await pilot.pause(0.1)
        asked.clear()
        top = get_lines(100, 1)[0]
        assert rendered(view)[0].rstrip() == top[:view.size.width].rstrip()
        assert sum(asked) <= view.size.height


# -- 9: the processes pane keeps its State column at 160 columns --------------------------

async def test_process_state_column_visible_at_160_columns(tmp_path: Path) -> None:
    app, engine = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        engine.bus.publish(ev.RunStarted(idea_id=1, run="run_3", attempt=1, pid=1, limit_s=600,
                                         isolation="bwrap", log_path=""))
        engine.bus.publish(ev.ProcessStats(idea_id=1, run="run_3", elapsed_s=590, limit_s=600,
                                           cpu_percent=99.0, rss_bytes=1 << 30,
                                           gpu_mem_bytes=2 << 30, last_output_age_s=1.0,
                                           paused=False))
        await pilot.pause(0.4)
        await pilot.press("6")
        await pilot.pause()
        table = app.query_one(ProcessTable)
        assert "State" in visible_columns(table)
        assert "near limit" in str(table.get_cell("1:run_3", "state"))


# -- 10: a chktex warning is not a failure -----------------------------------------------

def test_chktex_warnings_are_not_shown_as_failed() -> None:
    def run(name: str, code: int | None) -> RunSummary:
        return RunSummary(name, 1, "failed", "check", 1.0, 60.0, {}, None, "", code)

    assert run_status_label(run("chktex", 2)) == "warnings"
    assert run_status_label(run("chktex", 1)) == "failed"  # chktex itself broke
    assert run_status_label(run("run_1", 2)) == "failed"  # an experiment's exit 2 fails


# -- 11: a vetoed idea waits for nobody ---------------------------------------------------

async def test_vetoed_idea_shows_no_approval_waiting(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.query_one(IdeaTable)
        stage = str(table.get_cell("3", "stage"))
        assert "approval" not in stage and "?" not in stage and "vetoed" in stage
        await pilot.press("down", "down")
        await pilot.pause(0.2)
        console = Console(width=110, record=True, file=io.StringIO())
        console.print(app.query_one("#idea-detail-body").content)
        text = console.export_text()
        assert "status vetoed" in text and "approval" not in text


# -- 12: activity pane: Now fits, spend labels on one line, no bare code fence -------------

def test_activity_now_text_fits_and_spend_labels_do_not_wrap(tmp_path: Path) -> None:
    long = "experiment run 3 attempt 2 failed: " + "Traceback line " * 20
    assert len(str(now_text("failed", long))) <= NOW_WIDTH
    assert "\n" not in str(now_text("progress", "a\nb"))
    store = build_lab(tmp_path / "lab")
    console = Console(width=34, record=True, file=io.StringIO())
    console.print(render_cost(LabReader(tmp_path / "lab", store).spend(), 5.0, 1.0))
    lines = console.export_text().splitlines()
    stage_lines = [line for line in lines if "stage" in line]
    assert stage_lines and all(line.strip().startswith("stage ") for line in stage_lines)


def test_model_output_panel_drops_code_fences() -> None:
    body = 'Here is the plan.\n```json\n{"Name": "x",\n "Title": "y"}\n```\n\n'
    assert visible_lines(body, 10) == ["Here is the plan.", '{"Name": "x",', ' "Title": "y"}']
    assert visible_lines("```python\n", 5) == []


# -- 13: 80x24 -------------------------------------------------------------------------

async def test_80x24_one_tab_bar_status_fits_time_column_visible(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tabs = [w for w in app.screen.query(".group-bar") if w.display]
        assert tabs == [] and app.query_one("#pane-bar").display
        status = app.query_one("#status-bar")
        assert len(status.render().plain) <= status.size.width
        await pilot.press("2")
        await pilot.pause(0.5)
        assert "Time / limit" in visible_columns(app.query_one(RunTable))
        assert "2 Runs" in app.query_one("#pane-bar").render().plain


def test_status_parts_shorten_to_fit() -> None:
    parts = [("DEMO · model is SCRIPTED (recorded answers, no API calls)", "DEMO (scripted)"),
             ("aisci · lab demo", "lab demo"), ("model scripted:demo", "scripted:demo"),
             ("images halfcell", "")]
    assert "recorded answers" in fit_status(parts, 160)
    short = fit_status(parts, 78)
    assert len(short) <= 78 and "lab demo" in short and "scripted:demo" in short
    assert len(fit_status(parts, 20)) == 20


# -- 13/14: help: user-facing names, not covered by toasts --------------------------------

async def test_help_lists_user_facing_names_and_clears_toasts(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.notify("a toast that would cover the help", timeout=30)
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert not app._notifications  # cleared when the help opened
        text = " ".join(" ".join(row[:3]) for row in app.screen.rows)
        for internal in ("AisciApp", "Aisci ", "IdeaTable", "LogView", "question_mark",
                         "slash", "right_square_bracket"):
            assert internal not in text
        places = {row[0] for row in app.screen.rows}
        assert {"Everywhere", "Ideas", "Training log", "Plots & paper"} <= places
        keys = {row[1] for row in app.screen.rows}
        assert "? / f1" in keys and "/" in keys


# -- 15: a key jumps to the paper's pages -------------------------------------------------

async def test_plots_pane_p_jumps_to_the_paper_and_back(tmp_path: Path) -> None:
    app, _engine = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause(0.3)
        pane = app.query_one(MediaPane)
        assert pane.idea_dir is not None
        fig = pane.idea_dir / "missing.png"  # not shown: only the position is checked
        draft = pane.idea_dir / "latex" / "draft-9.pdf"
        pane.items = [*(MediaItem(f"f{i}.png", fig) for i in range(21)),
                      *(MediaItem(f"p.{i + 1}", draft, i) for i in range(3))]
        pane.position = 0
        await pilot.press("p")
        assert pane.position == 21 and pane.items[pane.position].page == 0
        await pilot.press("p")
        assert pane.position == 0
        pane.items = pane.items[:21]
        await pilot.press("p")
        assert pane.position == 0  # no paper: stays, says so


# -- 19: the kitty graphics probe never reaches tmux's title -------------------------------

def test_graphics_probe_apc_dropped_inside_tmux(monkeypatch: Any) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "__stdout__", out)
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    with no_graphics_query_in_multiplexer():
        sys.__stdout__.write("\x1b_Gi=7,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\")
        sys.__stdout__.write("\x1b[c")
    assert out.getvalue() == "\x1b[c" and sys.__stdout__ is out
    monkeypatch.delenv("TMUX")
    monkeypatch.delenv("STY", raising=False)
    with no_graphics_query_in_multiplexer():
        sys.__stdout__.write("\x1b_Gx\x1b\\")
    assert out.getvalue().endswith("\x1b_Gx\x1b\\")  # outside a multiplexer: untouched


# -- 2 (TUI side): a read-only lab opens as a viewer with its commands disabled ------------

async def test_read_only_lab_is_a_viewer_with_commands_disabled(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    build_lab(lab, running=False).close()
    engine = Engine(lab, Settings(), headless=False, read_only="lab is on a read-only mount")
    app = AisciApp(engine, images=choose_protocol("none"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert "READ-ONLY" in app.query_one("#status-bar").render().plain
        await pilot.press("down", "a")
        await pilot.pause(0.3)
        assert engine.store.get_idea(2).status == "checked"  # nothing was approved
        texts = [n.message for n in app._notifications]
        assert any("approving is disabled" in t and "read-only" in t for t in texts)
        titles = [t for t, _, _ in AisciCommands(app.screen)._commands()]
        assert not any(t.startswith(("Approve", "Veto", "Generate", "Raise")) for t in titles)
        assert "Quit" in titles and "Show pane: Ideas" in titles
        await pilot.press("q")
        await pilot.pause(0.3)


# -- a stage failure is toasted once per occurrence -------------------------------------

def test_stage_failure_toasted_once_per_occurrence() -> None:
    bridge = br.EngineBridge(ev.EventBus(), None)  # type: ignore[arg-type]
    bridge.known_failures({(1, "plot")})

    def alerts(*events: ev.Event) -> list[br.Alert]:
        return [m for m in bridge.translate(list(events)) if isinstance(m, br.Alert)]

    failed = ev.StageFailed(idea_id=1, stage="plot", reason="no finished experiment run")
    assert alerts(failed) == []  # on record before launch: in the activity pane only
    lines = [m for m in bridge.translate([failed]) if isinstance(m, br.StageActivity)]
    assert lines and lines[0].lines[0].state == "failed"
    other = ev.StageFailed(idea_id=2, stage="write", reason="x")
    assert len(alerts(other)) == 1 and alerts(other) == []
    assert len(alerts(ev.StageStarted(idea_id=1, stage="plot"), failed)) == 1  # new one
