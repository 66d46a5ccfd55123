"""Executor basics: results, store rows, events, output handling, and the human controls
(kill / extend / pause / resume) on a running experiment."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest
from aisci.engine.config import Settings
from aisci.engine.events import (
    EventBus,
    ProcessStats,
    RunControl,
    RunFinished,
    RunOutput,
    RunStalled,
    RunStarted,
)
from aisci.engine.lab.store import LabStore
from aisci.engine.run.executor import (
    Executor,
    IsolationUnavailable,
    RunSpec,
)
from aisci.engine.run.output_pump import OutputPump, _LineSplitter

TICKER = ("import sys, time\ni = 0\nwhile True:\n    print('tick', i, flush=True)\n"
          "    i += 1\n    time.sleep(0.05)\n")


def make(tmp_path: Path, mode: str = "none", **exp: object):
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    s.sandbox.grace_period_s = 0.5
    for k, v in exp.items():
        setattr(s.experiment, k, v)
    bus = EventBus()
    bus.bind_loop()
    store = LabStore(tmp_path / "lab")
    idea = tmp_path / "idea"
    idea.mkdir(exist_ok=True)
    return Executor(s, bus, store), bus, store, idea


def spec(idea: Path, code: str, limit_s: float, run: str = "run_1") -> RunSpec:
    (idea / f"{run}.py").write_text(code)
    return RunSpec(argv=[sys.executable, f"{run}.py"], cwd=idea,
                   log_path=idea / "logs" / f"{run}.log", limit_s=limit_s,
                   kind="experiment", run=run, idea_id=None, attempt=2)


async def test_ok_and_failed_runs_are_recorded(tmp_path):
    ex, bus, store, idea = make(tmp_path)
    sub = bus.subscribe()
    ok = await ex.run(spec(idea, "print('fine')\n", 10, "run_1"))
    bad = await ex.run(spec(idea, "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n",
                            10, "run_2"))
    assert ok.status == "ok" and ok.exit_code == 0 and ok.isolation == "none"
    assert bad.status == "failed" and bad.exit_code == 3 and bad.reason == "exit code 3"
    assert bad.stderr_tail == "boom"
    rows = {r.run: r for r in store.runs()}
    assert rows["run_1"].status == "ok" and rows["run_1"].pid == ok.pid
    assert rows["run_1"].pid_start_time and rows["run_1"].isolation == "none"
    assert rows["run_2"].exit_code == 3 and rows["run_2"].attempt == 2
    assert rows["run_2"].log_path == str(idea / "logs" / "run_2.log")
    kinds = [type(e) for e in sub.drain()]
    assert kinds.count(RunStarted) == 2 and kinds.count(RunFinished) == 2
    assert RunOutput in kinds
    log = (idea / "logs" / "run_1.log").read_text()
    assert " out fine" in log and "ok (ran " in log


async def test_missing_interpreter_is_a_failed_run(tmp_path):
    ex, _, store, idea = make(tmp_path)
    res = await ex.run(RunSpec(argv=["/nonexistent/python", "x.py"], cwd=idea,
                               log_path=idea / "logs" / "x.log", limit_s=5, kind="check",
                               run="check"))
    assert res.status == "failed" and "could not start" in res.reason
    assert store.runs()[0].status == "failed"


async def test_require_isolation_refuses_without_bwrap(tmp_path):
    ex, _, _, idea = make(tmp_path, mode="none")
    ex.settings.sandbox.require_isolation = True
    with pytest.raises(IsolationUnavailable, match="require_isolation"):
        await ex.run(spec(idea, "print(1)\n", 5))


async def _started(ex: Executor, run: str = "run_1") -> None:
    for _ in range(100):
        if any(p.run == run for p in ex.running()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("run did not start")


async def test_pause_resume_extend_and_timeout_accounting(tmp_path):
    ex, bus, store, idea = make(tmp_path)
    sub = bus.subscribe()
    task = asyncio.create_task(ex.run(spec(idea, TICKER, 1.5)))
    await _started(ex)
    await asyncio.sleep(0.4)
    assert ex.pause(None, "run_1")
    assert not ex.pause(None, "run_1")  # already paused
    root = psutil.Process(ex.running()[0].pid)
    await asyncio.sleep(0.2)
    assert root.status() == psutil.STATUS_STOPPED
    frozen = ex.running()[0].elapsed_s
    await asyncio.sleep(1.3)  # longer than the remaining limit: paused time is not counted
    info = ex.running()[0]
    assert info.paused and abs(info.elapsed_s - frozen) < 0.05 and not task.done()
    assert ex.resume(None, "run_1")
    assert ex.extend(None, "run_1", 0.5) == pytest.approx(2.0)
    t0 = time.monotonic()
    res = await task
    assert res.status == "timeout" and "2 s" in res.reason
    assert 0.9 < time.monotonic() - t0 < 3.0
    assert 1.9 < res.duration_s < 2.6
    row = store.runs()[0]
    assert row.limit_s == pytest.approx(2.0) and row.status == "timeout"
    assert [c["action"] for c in row.controls] == ["pause", "resume", "extend"]
    events = sub.drain()
    assert [e.action for e in events if isinstance(e, RunControl)] == ["pause", "resume",
                                                                       "extend"]
    assert any(isinstance(e, ProcessStats) for e in events)
    log = (idea / "logs" / "run_1.log").read_text()
    assert "[aisci] pause" in log and "[aisci] extend" in log


async def test_kill_stops_the_tree_and_is_recorded(tmp_path):
    ex, bus, store, idea = make(tmp_path)
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(100)'])\n"
            "print('up', flush=True)\ntime.sleep(100)\n")
    task = asyncio.create_task(ex.run(spec(idea, code, 60)))
    await _started(ex)
    await asyncio.sleep(0.5)
    pids = [p.pid for p in psutil.Process(ex.running()[0].pid).children(recursive=True)]
    assert pids, "the grandchild should be running"
    assert ex.kill(None, "run_1")
    assert not ex.kill(None, "run_1")
    res = await task
    assert res.status == "killed" and res.reason == "killed by a human"
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)
    row = store.runs()[0]
    assert row.status == "killed" and [c["action"] for c in row.controls] == ["kill"]
    assert ex.running() == [] and not ex.kill(None, "run_1")


async def test_stall_is_flagged_not_killed(tmp_path):
    ex, bus, _, idea = make(tmp_path, stall_after_s=0.3)
    sub = bus.subscribe(kinds=(RunStalled,))
    res = await ex.run(spec(idea, "import time\nprint('x', flush=True)\ntime.sleep(1.0)\n", 10))
    assert res.status == "ok"
    stalls = sub.drain()
    assert len(stalls) == 1 and stalls[0].silent_for_s >= 0.3


async def test_shutdown_interrupts_running(tmp_path):
    ex, _, store, idea = make(tmp_path)
    task = asyncio.create_task(ex.run(spec(idea, TICKER, 60)))
    await _started(ex)
    await ex.shutdown()
    res = await task
    assert res.status == "interrupted" and store.runs()[0].status == "interrupted"


def test_line_splitter_edge_cases():
    sp = _LineSplitter("out")
    assert sp.feed(b"par") == []
    assert sp.feed(b"tial\nnext\r\n\xff\n") == ["partial", "next", "\ufffd"]
    assert sp.feed(b"10%\r20%\r") == [] and sp.feed(b"30%\n") == ["30%"]
    big = b"z" * (200 * 1024)
    assert sp.feed(big) == []
    out = sp.feed(b"zz\n")
    assert len(out) == 1 and out[0].endswith(f"[aisci: line truncated, {200 * 1024 + 2 - 65536} more bytes]")
    assert len(sp.buf) == 0
    assert sp.feed(b"no newline") == [] and sp.rest() == ["no newline"]


def test_pump_batches_are_bounded_and_log_is_capped(tmp_path):
    bus = EventBus()
    sub = bus.subscribe(kinds=(RunOutput,))
    pump = OutputPump(tmp_path / "x.log", 1, "run_1", bus, tail_chars=100, max_log_bytes=10_000)
    for _ in range(10):
        pump._emit([f"line {i}" for i in range(1000)], "out", "00:00:00.000")
    pump.flush()
    pump.close("done")
    batches = sub.drain()
    assert len(batches) == 2  # the batch, then the footer
    assert len(batches[0].lines) == 2001 and "8000 lines not shown live" in batches[0].lines[-1]
    text = (tmp_path / "x.log").read_text()
    assert "log reached 0 MB" in text and text.rstrip().endswith("done")
    assert len(text) < 12_000
