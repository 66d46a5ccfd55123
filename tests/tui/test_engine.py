"""Functional tests of the TUI driving the real Engine (scripted provider) and its real
executor: approve / veto change the engine's store, kill / extend reach a real process.
Each runs twice: the engine in the app's process, and the engine in the same loop but
reached only through its control socket (what a viewer attached from another terminal
gets: :class:`AttachedEngine`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aisci.engine.config import load_config
from aisci.engine.control.attached import AttachedEngine
from aisci.engine.control.client import engine_serving
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
from support.engines import IDEA, quick_settings
from support.slow_lab import make_slow_lab


@pytest.fixture(params=["in-process", "attached"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def port_for(engine: Engine, mode: str) -> Any:
    """What the App is given: the engine itself, or a viewer attached to it."""
    if mode == "in-process":
        return engine
    if not engine._started:
        await engine.start()
    return await asyncio.to_thread(AttachedEngine, engine.lab)


def seen_types(seen: list[Any], kind: type) -> list[Any]:
    return list({id(m): m for m in seen if isinstance(m, kind)}.values())


async def test_approve_and_veto_through_the_real_engine(tmp_path: Path, mode: str) -> None:
    lab = tmp_path / "lab"
    store = LabStore(lab)
    a = store.add_idea("scheduled_wd", "grokking", IDEA, status="checked")
    b = store.add_idea("other_idea", "grokking", {**IDEA, "Title": "Other idea"},
                       status="checked")
    engine = Engine(lab, quick_settings(), headless=False, store=store)
    seen: list[Any] = []
    port = await port_for(engine, mode)
    app = AisciApp(port, images=choose_protocol("none"), start_engine=port is not engine)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.pause(0.3)
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
    if port is not engine:
        assert engine.control is not None and engine.control.viewers == 0  # it left
        await engine.stop()


async def test_kill_and_extend_a_real_run(tmp_path: Path, mode: str) -> None:
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea = store.add_idea("runner", "grokking", IDEA, status="vetoed")
    engine = Engine(lab, quick_settings(), headless=False, store=store)
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
    port = await port_for(engine, mode)
    app = AisciApp(port, images=choose_protocol("none"), start_engine=port is not engine)
    assert app.workbench is not None
    app.workbench.engine_started = True
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


async def test_an_engine_killed_under_a_viewer_is_offered_a_restart(tmp_path: Path) -> None:
    """The engine (``aisci run``, another process) dies by SIGKILL while a TUI is attached:
    the viewer says so and offers to start it again; the new engine resumes the lab the
    way crash recovery does (the orphaned experiment is found and stopped)."""
    lab = tmp_path / "lab"
    make_slow_lab(lab)
    aisci = Path(sys.executable).with_name("aisci")
    proc = subprocess.Popen([str(aisci), "run", "--lab", str(lab), "--num-ideas", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = None
    try:
        for _ in range(300):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(engine_serving, lab):
                break
        port = await asyncio.to_thread(AttachedEngine, lab)
        app = AisciApp(port, images=choose_protocol("none"))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(100):
                await pilot.pause(0.1)
                orphan = running_pid(lab)
                if orphan:
                    break
            assert orphan, "the long experiment did not start"
            os.kill(proc.pid, signal.SIGKILL)
            for _ in range(100):
                await pilot.pause(0.1)
                if isinstance(app.screen, ConfirmDialog):
                    break
            assert isinstance(app.screen, ConfirmDialog)
            assert f"engine (pid {proc.pid}) is gone" in app.screen.question
            await pilot.press("y")
            await pilot.pause(0.3)
        assert app.return_value == "restart"
        # its engine is dead; the run dies of a broken pipe at its next line, or lives on
        # as an orphan until the next engine's recovery stops it
        engine = Engine(lab, load_config(lab).settings, headless=False)
        await engine.start()  # what "restart" runs: recovery stops the orphan
        await engine.stop()
        assert not os.path.exists(f"/proc/{orphan}") or is_zombie(orphan)
    finally:
        proc.kill()
        proc.wait(10)
        if orphan and os.path.exists(f"/proc/{orphan}"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)


def running_pid(lab: Path) -> int | None:
    with LabStore(lab, read_only=True) as store:
        rows = [r for r in store.runs(kind="baseline") if r.status == "running" and r.pid]
    return rows[-1].pid if rows else None


def is_zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True
