"""`aisci run/resume/status` and the headless batch driver: exit codes, summaries,
progress output, read-only status while another process holds the lab."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

from aisci.engine import events as ev
from aisci.engine.batch import run_batch, summary_lines
from aisci.engine.cli import main
from aisci.engine.cli.run_cmd import status_lines
from aisci.engine.cli.run_progress import ProgressDisplay, format_event
from aisci.engine.config import Settings
from aisci.engine.demo import DEMO_MARKER, prepare_demo_lab
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.client import BudgetExceeded
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.stages.contract import StageOutcome

IDEA = {"Name": "x", "Title": "A title", "Experiment": "Do something useful.",
        "Interestingness": 5, "Feasibility": 5, "Novelty": 5}


def _stages(**override):
    async def ok(ctx, idea_id):
        await asyncio.sleep(0)
        return StageOutcome()

    names = ("novelty", "experiment", "plot", "write", "integrity", "review", "improve")
    return {n: override.get(n, ok) for n in names}


def _lab(tmp_path, names=("idea_a", "idea_b")):
    with LabStore(tmp_path) as store:
        return [store.add_idea(n, "grokking", {**IDEA, "Name": n}, status="approved")
                for n in names]


def _opts():
    return PipelineOptions(template="grokking", skip_idea_generation=True)


async def test_batch_exit_codes_ok_failed_budget(tmp_path):
    ids = _lab(tmp_path / "ok")
    res = await run_batch(tmp_path / "ok", Settings(), _opts(), stages=_stages())
    assert res.exit_code == 0 and all(res.outcomes[i].state == "done" for i in ids)

    async def boom(ctx, idea_id):
        raise RuntimeError("latexmk exploded")

    _lab(tmp_path / "bad")
    res = await run_batch(tmp_path / "bad", Settings(), _opts(), stages=_stages(write=boom))
    assert res.exit_code == 1
    text = "\n".join(summary_lines(res))
    assert "failed at write: RuntimeError: latexmk exploded" in text

    async def broke(ctx, idea_id):
        raise BudgetExceeded("lab", None, 2.0, 2.0)

    _lab(tmp_path / "money")
    res = await run_batch(tmp_path / "money", Settings(), _opts(), stages=_stages(review=broke))
    assert res.exit_code == 3 and res.budget_stopped
    assert "budget reached" in "\n".join(summary_lines(res))


async def test_waiting_for_approval_is_a_clean_stop(tmp_path):
    with LabStore(tmp_path) as store:
        a = store.add_idea("idea_w", "grokking", {**IDEA, "Name": "idea_w"}, status="checked")
    res = await run_batch(tmp_path, Settings(), PipelineOptions(
        template="grokking", skip_idea_generation=True, skip_novelty=True, auto_approve=False),
        stages=_stages())
    assert res.exit_code == 0 and res.outcomes[a].state == "waiting"
    assert "aisci approve ID" in "\n".join(summary_lines(res))


def test_status_is_read_only_and_works_while_lab_is_held(tmp_path, capsys):
    ids = _lab(tmp_path)
    holder = LabStore(tmp_path)  # another "engine" holds the lab
    try:
        holder.set_stage(ids[0], "experiment", "running")
        holder.add_run(ids[0], "run_1", 1, "experiment", status="ok")
        holder.record_llm_call(stage="write", idea_id=ids[0], provider="scripted",
                               model="demo", cost_usd=0.25)
        lines = status_lines(tmp_path)
        assert lines[0].split() == ["id", "idea", "triage", "stage", "state", "runs", "cost",
                                    "time"]
        row = next(ln for ln in lines if "idea_a" in ln)
        assert "experiment" in row and "running" in row and "1/1" in row and "$0.2500" in row
        assert f"engine: running, pid {os.getpid()}" in lines[-1]
        assert main(["status", "--lab", str(tmp_path)]) == 0
        assert "idea_b" in capsys.readouterr().out
        # `aisci run` on a lab in use: exit 4 with one clear line.
        assert main(["run", "--lab", str(tmp_path), "--skip-idea-generation"]) == 4
        assert "in use by pid" in capsys.readouterr().err
    finally:
        holder.close()


def test_resume_without_a_batch_is_a_usage_error(tmp_path, capsys):
    assert main(["resume", "--lab", str(tmp_path)]) == 2
    assert "no lab here" in capsys.readouterr().err
    _lab(tmp_path)
    assert main(["resume", "--lab", str(tmp_path)]) == 2
    assert "no batch to resume" in capsys.readouterr().err


def test_demo_refuses_a_real_lab_and_reopens_its_own(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.md").write_text("mine")
    assert main(["run", "--demo", "--lab", str(real)]) == 2
    assert "not empty" in capsys.readouterr().err
    demo = tmp_path / "demo"
    cfg = prepare_demo_lab(demo)
    assert (demo / "aisci.toml").read_text().startswith(DEMO_MARKER)
    assert cfg.settings.models.default == "scripted:demo"
    assert cfg.settings.literature.sources == ["offline"] and cfg.settings.general.smoke
    assert prepare_demo_lab(demo).settings.ideation.num_ideas == 3


async def test_progress_lines_when_not_a_tty_and_table_on_a_tty(tmp_path):
    _lab(tmp_path)
    out = io.StringIO()
    res = await run_batch(tmp_path, Settings(), _opts(), stages=_stages(),
                          display=lambda eng: ProgressDisplay(eng, stream=out, tty=False))
    assert res.exit_code == 0
    text = out.getvalue()
    assert "idea 1 idea_a: experiment started" in text and "review done" in text
    tty = io.StringIO()
    res = await run_batch(tmp_path / "t", Settings(), _opts(), stages=_stages(),
                          display=lambda eng: ProgressDisplay(eng, stream=tty, tty=True))
    assert "aisci t" in tty.getvalue()  # the table's title names the lab
    line = format_event(ev.RunFinished(idea_id=None, run="run_1", attempt=2, status="timeout",
                                       exit_code=None, reason="timed out after 10 s",
                                       duration_s=10.0))
    assert line == "lab: run_1 attempt 2 timeout in 10.0 s: timed out after 10 s"


def test_cli_flags_are_saved_for_resume(tmp_path):
    _lab(tmp_path)
    # The flags are stored before the batch starts; the batch itself fails fast here:
    # the novelty check's first model call finds no cassette named "nope".
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from aisci.engine.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "run", "--lab", str(tmp_path),
         "--skip-idea-generation", "--model", "scripted:nope", "--budget", "2.5",
         "--parallel", "2", "--set", 'literature.sources=["offline"]'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "novelty FAILED" in proc.stdout and "nope" in proc.stdout
    with LabStore(tmp_path, read_only=True) as ro:
        saved = ro.kv_get("pipeline.cli_overrides")
        opts = ro.kv_get("pipeline.options")
    assert saved == {"models.default": "scripted:nope", "budget.lab_usd": 2.5,
                     "scheduler.parallel": 2, "literature.sources": ["offline"]}
    assert opts["skip_novelty"] is False and opts["skip_idea_generation"] is True
    assert json.dumps(opts)


async def test_sigint_stops_cleanly_with_exit_130(tmp_path):
    import signal

    ids = _lab(tmp_path, names=("idea_a",))

    async def interrupted(ctx, idea_id):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the stage runs
        await asyncio.sleep(30)

    res = await run_batch(tmp_path, Settings(), _opts(), stages=_stages(write=interrupted))
    assert res.exit_code == 130 and res.interrupted
    with LabStore(tmp_path, read_only=True) as ro:
        st = ro.stages(ids[0])["write"]
    assert st["state"] == "paused" and "interrupted" in st["detail"]["reason"]
    assert "aisci resume" in "\n".join(summary_lines(res))
