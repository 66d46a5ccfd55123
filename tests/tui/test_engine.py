"""Functional tests of the TUI driving the real Engine (scripted provider) and its real
executor: approve / veto change the engine's store, kill / extend reach a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.engine.lab.store import LabStore
from aisci.engine.run.executor import RunSpec
from aisci.tui import bridge as br
from aisci.tui.app import AisciApp
from aisci.tui.images import choose_protocol
from aisci.tui.screens.dialogs import ConfirmDialog, NumberDialog
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.processes.process_table import ProcessTable

IDEA = {"Title": "Scheduled weight decay", "Experiment": "Ramp weight decay linearly.",
        "Interestingness": 7, "Feasibility": 8, "Novelty": 6}


def settings() -> Settings:
    s = Settings()
    s.models.default = "scripted:none"
    s.sandbox.mode = "none"
    s.sandbox.grace_period_s = 0.5
    return s


def seen_types(seen: list[Any], kind: type) -> list[Any]:
    return list({id(m): m for m in seen if isinstance(m, kind)}.values())


async def test_approve_and_veto_through_the_real_engine(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    store = LabStore(lab)
    a = store.add_idea("scheduled_wd", "grokking", IDEA, status="checked")
    b = store.add_idea("other_idea", "grokking", {**IDEA, "Title": "Other idea"},
                       status="checked")
    engine = Engine(lab, settings(), headless=False, store=store)
    seen: list[Any] = []
    app = AisciApp(engine, images=choose_protocol("none"), start_engine=False)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause(0.3)
        assert engine.store.get_idea(a).status == "approved"
        assert str(app.query_one(IdeaTable).get_cell(str(a), "status")) == "approved"
        await pilot.press("down", "v", *"dup", "enter")
        await pilot.pause(0.3)
        row = engine.store.get_idea(b)
        assert row.status == "vetoed"
        assert any(h["action"].startswith("veto") for h in engine.store.idea_history(b))
        changed = seen_types(seen, br.IdeasChanged)
        assert {a, b} <= set().union(*(m.idea_ids for m in changed))
        await pilot.press("q")
        await pilot.pause(0.3)


async def test_kill_and_extend_a_real_run(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea = store.add_idea("runner", "grokking", IDEA, status="vetoed")
    engine = Engine(lab, settings(), headless=False, store=store)
    await engine.start()
    idea_dir = lab / "ideas" / f"{idea}-runner"
    idea_dir.mkdir(parents=True)
    code = ("import time, itertools\n"
            "for i in itertools.count():\n"
            "    print('step', i, 'loss', 1 / (i + 1), flush=True)\n"
            "    time.sleep(0.01)\n")
    spec = RunSpec(argv=[sys.executable, "-c", code], cwd=idea_dir,
                   log_path=idea_dir / "logs" / "run_1.log", limit_s=120, kind="experiment",
                   run="run_1", idea_id=idea)
    seen: list[Any] = []
    app = AisciApp(engine, images=choose_protocol("none"), start_engine=False)
    app._engine_started = True
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        task = asyncio.get_running_loop().create_task(engine.ctx.executor.run(spec))
        procs = app.query_one(ProcessTable)
        for _ in range(50):
            await pilot.pause(0.1)
            if procs.rows_by_key:
                break
        assert list(procs.rows_by_key) == [f"{idea}:run_1"]
        # the visible run's output reaches the log pane from the file, batched
        log = app.query_one(LogPane)
        log.show_run(idea, "run_1", spec.log_path)
        for _ in range(30):
            await pilot.pause(0.1)
            if log.view.line_count > 10:
                break
        assert log.view.line_count > 10
        await pilot.press("6", "x")
        assert isinstance(app.screen, NumberDialog)
        app.screen.query_one("#number").value = "2"
        await pilot.press("enter")
        for _ in range(30):
            await pilot.pause(0.1)
            if procs.rows_by_key[f"{idea}:run_1"].limit_s == 240:
                break
        assert procs.rows_by_key[f"{idea}:run_1"].limit_s == 240
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        result = await asyncio.wait_for(task, 15)
        assert result.status == "killed"
        await pilot.pause(0.3)
        assert procs.rows_by_key == {}
        controls = [m.event for m in seen_types(seen, br.RunControlled)]
        assert [c.action for c in controls] == ["extend", "kill"]
        assert seen_types(seen, br.RunsChanged) and seen_types(seen, br.RunEnded)
        assert seen_types(seen, ProcessTable.KillRequested)
        rows = engine.store.runs(idea)
        assert rows[-1].status == "killed"
    await engine.stop()
