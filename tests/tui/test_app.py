"""Functional tests: the app driven with Pilot over a real lab store and event bus.

The engine's command surface is ``StoreEngine`` (tests/support/tui_lab.py): commands
change the real store and publish the engine's real events, so these tests check what
the panes send and how they react. tests/tui/test_engine.py drives the real Engine.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.tui import bridge as br
from aisci.tui.app import AisciApp
from aisci.tui.commands import AisciCommands
from aisci.tui.images import choose_protocol
from aisci.tui.screens.chrome import PaneBar
from aisci.tui.screens.dialogs import ChoiceDialog, ConfirmDialog, NumberDialog, ReasonDialog
from aisci.tui.screens.edit_idea import EditIdeaScreen
from aisci.tui.screens.help import HelpScreen
from aisci.tui.widgets.activity.llm_stream import LLMStream
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.processes.process_table import ProcessTable
from aisci.tui.widgets.review.scorecard import Scorecard
from rich.console import Console
from support.tui_lab import FROZEN_NOW, StoreEngine, build_lab
from textual.widgets import Static


def make_app(tmp_path: Path, settings: Settings | None = None,
             **lab_kwargs: Any) -> tuple[AisciApp, StoreEngine, list[Any]]:
    lab = tmp_path / "lab"
    store = build_lab(lab, **lab_kwargs)
    engine = StoreEngine(lab, store, settings)
    app = AisciApp(engine, images=choose_protocol("none"))
    return app, engine, []


def keys(text: str) -> list[str]:
    return ["space" if ch == " " else ch for ch in text]


async def reached(pilot: Any, engine: StoreEngine, call: tuple[str, tuple[Any, ...]],
                  timeout: float = 5.0) -> bool:
    """Let the app run until ``call`` has reached the engine (at most ``timeout`` s): a
    fixed pause is too short on a loaded machine (the suite runs on two workers)."""
    for _ in range(int(timeout / 0.05)):
        if call in engine.calls:
            return True
        await pilot.pause(0.05)
    return call in engine.calls


def hook(seen: list[Any]):
    def record(message: Any) -> None:
        seen.append(message)
    return record


def of_type(seen: list[Any], kind: type) -> list[Any]:
    """Messages of ``kind`` (each once: the hook sees a bubbling message at every node)."""
    unique = {id(m): m for m in seen if isinstance(m, kind)}
    return list(unique.values())


async def test_approve_from_the_table_updates_store_and_row(tmp_path: Path) -> None:
    app, engine, seen = make_app(tmp_path)
    async with app.run_test(size=(120, 40), message_hook=hook(seen)) as pilot:
        await pilot.pause()
        table = app.query_one(IdeaTable)
        await pilot.press("down")  # idea 2 (checked)
        await pilot.press("a")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("approve", (2,))), engine.calls
        assert engine.store.get_idea(2).status == "approved"
        assert [m.idea_id for m in of_type(seen, IdeaTable.ApproveRequested)] == [2]
        assert any(2 in m.idea_ids for m in of_type(seen, br.IdeasChanged))
        assert str(table.get_cell("2", "status")) == "approved"
        assert engine.calls[0] == ("start", ())


async def test_veto_asks_for_a_reason(tmp_path: Path) -> None:
    app, engine, seen = make_app(tmp_path)
    async with app.run_test(size=(120, 40), message_hook=hook(seen)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.press("down", "v")
        assert isinstance(app.screen, ReasonDialog)
        await pilot.press("enter")  # empty reason is refused
        assert isinstance(app.screen, ReasonDialog)
        await pilot.press(*keys("done before"))
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("veto", (2, "done before"))), engine.calls
        hist = engine.store.idea_history(2)
        assert hist[-1]["action"] == "vetoed" and hist[-1]["detail"]["reason"] == "done before"
        assert str(app.query_one(IdeaTable).get_cell("2", "status")) == "vetoed"


async def test_edit_form_validates_with_the_idea_schema(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EditIdeaScreen)
        score = screen.query_one("#f-Novelty")
        score.value = "11"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, EditIdeaScreen)
        assert "Novelty" in str(screen.query_one("#edit-error").render())
        score.value = "7"
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("edit_idea", (1, {"Novelty": 7}))), engine.calls
        assert engine.store.get_idea(1).data["Novelty"] == 7


def _start_run(engine: StoreEngine, run: str = "run_2") -> None:
    engine.bus.publish(ev.RunStarted(idea_id=1, run=run, attempt=1, pid=4242, limit_s=600,
                                     isolation="bwrap", log_path=""))
    engine.bus.publish(ev.ProcessStats(idea_id=1, run=run, elapsed_s=580, limit_s=600,
                                       cpu_percent=99.0, rss_bytes=512 << 20,
                                       gpu_mem_bytes=None, last_output_age_s=2.0,
                                       paused=False))


async def test_kill_a_run_from_the_process_pane_after_confirmation(tmp_path: Path) -> None:
    app, engine, seen = make_app(tmp_path, running=False)
    async with app.run_test(size=(120, 40), message_hook=hook(seen)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        _start_run(engine)
        await pilot.pause(0.3)
        await pilot.press("6")
        procs = app.query_one(ProcessTable)
        assert list(procs.rows_by_key) == ["1:run_2"]
        assert "near limit" in str(procs.get_cell("1:run_2", "state"))
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("kill_run", (1, "run_2"))), engine.calls
        assert of_type(seen, ProcessTable.KillRequested)[0].run == "run_2"
        engine.bus.publish(ev.RunFinished(idea_id=1, run="run_2", attempt=1, status="killed",
                                          exit_code=-15))
        await pilot.pause(0.3)
        assert procs.rows_by_key == {}


async def test_extend_and_pause_a_run(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path, running=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        _start_run(engine)
        await pilot.pause(0.3)
        await pilot.press("6", "x")
        assert isinstance(app.screen, NumberDialog)
        await pilot.press("enter")  # default 15 minutes
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("extend_run", (1, "run_2", 900.0))), engine.calls
        engine.bus.publish(ev.RunControl(idea_id=1, run="run_2", action="extend",
                                         detail="+900 s, limit now 1500 s"))
        await pilot.pause(0.3)
        procs = app.query_one(ProcessTable)
        assert procs.rows_by_key["1:run_2"].limit_s == 1500
        assert "near limit" not in str(procs.get_cell("1:run_2", "state"))
        await pilot.press("p")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("pause_run", (1, "run_2"))), engine.calls


async def test_budget_reached_asks_to_raise_it(tmp_path: Path) -> None:
    settings = Settings()
    settings.budget.lab_usd = 0.25
    app, engine, _ = make_app(tmp_path, settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        engine.bus.publish(ev.BudgetReached(scope="lab", idea_id=None, spent_usd=0.256,
                                            budget_usd=0.25, stage="experiment"))
        await pilot.pause(0.3)
        assert isinstance(app.screen, NumberDialog)
        app.screen.query_one("#number").value = "3"
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("raise_budget", ("lab", 3.0))), engine.calls


async def test_log_pane_follows_new_output_of_the_visible_run(tmp_path: Path) -> None:
    app, engine, seen = make_app(tmp_path, log_lines=50)
    async with app.run_test(size=(120, 40), message_hook=hook(seen)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.press("4")
        await pilot.pause(0.5)
        pane = app.query_one(LogPane)
        assert pane.run == "run_2" and pane.view.line_count == 50
        log = tmp_path / "lab" / "ideas" / "1-adaptive_weight_decay" / "logs" / "run_2.log"
        with open(log, "a") as fh:
            for i in range(5000):
                fh.write(f"late line {i}\n")
        for k in range(50):
            engine.bus.publish(ev.RunOutput(idea_id=1, run="run_2",
                                            lines=tuple(f"late line {i}" for i in range(100))))
        for _ in range(50):  # scans run on a thread every 0.1 s; allow a loaded machine
            await pilot.pause(0.1)
            if pane.view.line_count == 5050:
                break
        assert pane.view.line_count == 5050
        # 50 output events arrive as a few batched messages, not one per event
        assert len(of_type(seen, br.RunOutputBatch)) <= 10
        view = pane.view
        await pilot.pause(0.2)
        assert view.scroll_offset.y == 5050 - view.scrollable_content_region.height
        await pilot.press("slash", *keys("late line 10"), "enter")
        await pilot.pause(0.5)
        assert not view.follow and view.search_text == "late line 10"
        assert "late line 10" in pane.query_one("#log-header").render().plain


async def test_keys_can_be_remapped_from_settings(tmp_path: Path) -> None:
    settings = Settings()
    settings.tui.keys = {"approve-idea": "A"}
    app, engine, _ = make_app(tmp_path, settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.press("down", "a")
        await pilot.pause(0.2)
        assert not any(c[0] == "approve" for c in engine.calls)
        await pilot.press("A")
        await pilot.pause(0.3)
        assert await reached(pilot, engine, ("approve", (2,))), engine.calls


async def test_quit_asks_when_experiments_run(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path)  # run_2 is running in the store
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.press("q")
        assert isinstance(app.screen, ChoiceDialog)
        assert "leave the engine running" in app.screen.question
        await pilot.press("escape")
        assert not isinstance(app.screen, ChoiceDialog)
        await pilot.press("q", "s")
        await pilot.pause(0.3)
    assert ("stop", ()) in engine.calls
    assert app.return_value == "stopped"


@pytest.mark.parametrize("keys", [("q", "l"), ("d",)], ids=["quit-leave", "detach-key"])
async def test_leaving_it_running_keeps_the_engine(tmp_path: Path, keys: tuple[str, ...]) -> None:
    app, engine, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause(0.3)
    assert ("stop", ()) not in engine.calls  # the launcher keeps it running headless
    assert app.return_value == "detached"


async def test_narrow_terminal_shows_one_pane_group_at_a_time(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        assert app.screen.has_class("-narrow")
        assert app.query_one("#left-tabs").display and not app.query_one("#right-tabs").display
        await pilot.press("6")
        assert app.query_one("#right-tabs").display and not app.query_one("#left-tabs").display
        await pilot.press("1")
        assert app.query_one("#left-tabs").display
    app2, _, _ = make_app(tmp_path / "wide")
    async with app2.run_test(size=(170, 48)):
        assert app2.screen.has_class("-wide")
        assert app2.query_one("#left-tabs").display and app2.query_one("#right-tabs").display


async def test_a_click_on_a_pane_name_shows_that_pane(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    async with app.run_test(size=(170, 48)) as pilot:
        await pilot.pause()
        right = app.query_one("#right-tabs")
        bar = right.query_one(PaneBar)
        x = bar.render().plain.index("6 Processes")
        assert bar.key_at(x) == "processes" and bar.key_at(x - 2) is None  # the gap
        assert not app.query_one("#process-table").display
        await pilot.click(bar, offset=(x, 0))
        await pilot.pause()
        assert app.query_one("#process-table").display
        assert not app.query_one("#media-pane").display
        assert app.focused is app.query_one("#process-table")
        assert bar.active == "processes"
        await pilot.press("7")  # the keys act on the pane shown, not on the one hidden
        assert app.focused is not None and app.focused.id == "now-table"
    app2, _, _ = make_app(tmp_path / "narrow")
    async with app2.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        bar = app2.query_one("#pane-bar", PaneBar)
        await pilot.click(bar, offset=(bar.render().plain.index("4 Log"), 0))
        await pilot.pause()
        assert app2.query_one("#log-pane").display and app2.query_one("#left-tabs").display
        assert bar.active == "log"


async def test_palette_offers_context_commands_and_themes(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        provider = AisciCommands(app.screen)
        titles = [t for t, _, _ in provider._commands()]
        # idea 1 is approved and its experiment runs: no approve, no resume, no retry
        assert "Approve idea #1 adaptive_weight_decay" not in titles
        assert "Veto idea #1 adaptive_weight_decay" in titles
        assert "Pause idea #1 adaptive_weight_decay" in titles
        assert not any(t.startswith(("Resume idea", "Retry stage", "Literature down"))
                       for t in titles)
        assert "Theme: aisci-light" in titles
        await pilot.press("down")  # idea 2: checked, waiting for approval
        await pilot.pause()
        titles = [t for t, _, _ in provider._commands()]
        assert "Approve idea #2 label_noise_grokking" in titles
        # Textual's own Quit (no question asked while experiments run) is not offered
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert "Quit" not in system and "Theme" in system
        assert [t for t in titles if t == "Quit"] == ["Quit"]
        assert app.theme == "aisci-dark"
        app.set_theme_name("aisci-light")
        assert app.theme == "aisci-light"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


@pytest.mark.parametrize("frozen", [FROZEN_NOW])
def test_frozen_clock_constant(frozen: float) -> None:
    assert frozen > 0


async def test_a_newly_started_run_of_the_selected_idea_is_shown(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path, running=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table
        await pilot.pause(0.3)
        pane = app.query_one(LogPane)
        assert pane.run == "run_1"
        log = tmp_path / "lab" / "ideas" / "1-adaptive_weight_decay" / "logs" / "run_2.log"
        engine.store.add_run(1, "run_2", 1, "experiment", status="running",
                             started_at=FROZEN_NOW, limit_s=600.0, log_path=str(log))
        engine.bus.publish(ev.RunStarted(idea_id=1, run="run_2", attempt=1, pid=1, limit_s=600,
                                         isolation="bwrap", log_path=str(log)))
        engine.bus.publish(ev.StageProgress(idea_id=1, stage="experiment", message="run 2"))
        engine.bus.publish(ev.IdeaChanged(idea_id=1, status="approved"))
        await pilot.pause(0.5)
        assert pane.run == "run_2"
        assert app.query_one("RunTable").selected_run == "run_2"


async def test_palette_commands_reach_the_engine_for_the_selected_idea(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        commands = {t: cb for t, cb, _ in AisciCommands(app.screen)._commands()}
        commands["Pause idea #1 adaptive_weight_decay"]()
        engine.store.set_stage(1, "experiment", "failed")
        engine.store.update_idea(1, novelty={"unavailable": True})
        app.main.reload_ideas(frozenset({1}))
        await pilot.pause()
        commands = {t: cb for t, cb, _ in AisciCommands(app.screen)._commands()}
        commands["Retry stage experiment of idea #1 adaptive_weight_decay"]()
        commands["Literature down for #1 adaptive_weight_decay: skip the novelty check"]()
        await pilot.pause(0.3)
    assert [c for c in engine.calls if c[0] not in ("start", "stop")] == [
        ("pause_idea", (1,)), ("retry_stage", (1, "experiment")),
        ("literature_decision", (1, "skip"))]


async def test_review_pane_steps_through_each_reviewers_own_form(tmp_path: Path) -> None:
    app, _engine, _seen = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause(0.3)
        card = app.query_one(Scorecard)
        assert app.focused is card  # the pane key focuses it, so its keys work at once

        def body() -> str:
            console = Console(width=118, record=True, file=io.StringIO())
            console.print(card.query_one("#scorecard-body", Static).content)
            return console.export_text()

        assert "meta-review of 3 reviewers" in body()
        assert "The paper studies scheduled weight decay." in body()
        await pilot.press("r")
        assert "reviewer 1 of 3" in body()
        assert "A schedule is tried on one model size." in body()
        assert "No learning-rate control run" in body()
        assert "Overall 4 / 10" in body()
        for _ in range(3):  # reviewers 2 and 3, then back to the meta-review
            await pilot.press("r")
        assert card.view == 0 and "meta-review of 3 reviewers" in body()


async def test_llm_wait_line_appears_in_the_activity_pane(tmp_path: Path) -> None:
    app, engine, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # initial focus lands on the idea table (idea 1)
        stream = app.query_one(LLMStream)
        assert "rate-limited" not in str(stream.render())
        engine.bus.publish(ev.LLMRetry(call_id="c7", stage="novelty", idea_id=1, attempt=1,
                                       wait_s=120, reason="429 retry-after 120",
                                       model="anthropic:claude-test", what="rate-limited",
                                       max_tries=6))
        await pilot.pause(0.3)
        shown = str(stream.render())
        assert ("waiting: anthropic:claude-test rate-limited, try 2/6, next in 120 s "
                "(idea 1, novelty)") in shown
        # The call going ahead replaces the wait line.
        engine.bus.publish(ev.LLMCallStarted(call_id="c8", stage="novelty", idea_id=1,
                                             model="anthropic:claude-test"))
        await pilot.pause(0.3)
        assert "rate-limited" not in str(stream.render())
