"""What a new user meets in the first hour (issue 16, engine and CLI side): a read-only
lab, a lab in use, a non-UTF-8 ideas file, a bad template with --demo, a review without
a key, a machine without TeX or apt, chktex warnings, a run that ended before it was
extended, a scripted model asked for more ideas, an experiment stage with no run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aisci.engine import doctor
from aisci.engine import events as ev
from aisci.engine.cli import main
from aisci.engine.config import Settings
from aisci.engine.demo import make_demo_engine
from aisci.engine.engine import Engine, EngineError
from aisci.engine.errors import EXIT_USAGE
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabReadOnly, LabStore
from aisci.engine.paper.run_facts import key_metric, load_run_facts, results_table_tex
from aisci.engine.paper.texscan import paper_text
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.run.executor import Executor, RunSpec
from aisci.engine.stages.contract import StageOutcome
from aisci.engine.stages.experiment import _ended

IDEA = {"Name": "idea_a", "Title": "A title", "Experiment": "Do something useful.",
        "Interestingness": 5, "Feasibility": 5, "Novelty": 5}
CLI = [sys.executable, "-c", "import sys; from aisci.engine.cli import main; "
       "sys.exit(main(sys.argv[1:]))"]
BWRAP = shutil.which("bwrap")


def _lab(path: Path) -> Path:
    with LabStore(path) as store:
        store.add_idea("idea_a", "grokking", dict(IDEA))
        store.kv_set("pipeline.options", {"template": "grokking"})
    return path


def _ro(lab: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with ``lab`` bound read-only (a read-only mount: root cannot write it)."""
    argv = [BWRAP or "bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--ro-bind", str(lab), str(lab), *CLI, *args, "--lab", str(lab)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _bwrap_works() -> bool:
    if not BWRAP:
        return False
    r = subprocess.run([BWRAP, "--bind", "/", "/", "--dev", "/dev", "true"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap cannot run here")


@needs_bwrap
@pytest.mark.parametrize("with_wal", [False, True])
def test_read_only_lab_reads_and_refuses_changes_in_one_line(tmp_path, with_wal):
    lab = _lab(tmp_path / "lab")
    holder = None
    if with_wal:  # a lab left by a killed engine: -wal and -shm next to the database
        holder = LabStore(lab, lock=False)
        holder.add_idea("idea_b", "grokking", {**IDEA, "Name": "idea_b"})
        assert (lab / "aisci.db-wal").exists()
    try:
        # every command on the WAL case (the harder one); two on the plain one
        reads = (["status"], ["ideas", "list"], ["ideas", "show", "1"]) if with_wal else \
            (["status"],)
        writes = (["approve", "1"], ["veto", "1", "--why", "x"], ["run"], ["resume"]) \
            if with_wal else (["approve", "1"],)
        for cmd in reads:
            r = _ro(lab, *cmd)
            assert r.returncode == 0, (cmd, r.stderr)
            assert "Traceback" not in r.stderr + r.stdout
            assert "idea_a" in r.stdout
        for cmd in writes:
            r = _ro(lab, *cmd)
            assert r.returncode == EXIT_USAGE, (cmd, r.stdout, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "is read-only" in lines[0], (cmd, r.stderr)
            assert "resuming" not in r.stdout
    finally:
        if holder is not None:
            holder.close()


def test_lab_in_use_opens_as_a_viewer_that_refuses_commands(tmp_path):
    lab = _lab(tmp_path / "lab")
    owner = LabStore(lab)  # another engine owns the lab
    try:
        engine = Engine.open(lab, Settings())
        assert engine.read_only and "in use" in engine.read_only

        async def go() -> None:
            await engine.start()
            assert [i.name for i in engine.snapshot().ideas] == ["idea_a"]
            with pytest.raises(LabReadOnly) as err:
                engine.approve(1)
            assert err.value.exit_code == EXIT_USAGE and "read-only" in err.value.message
            await engine.stop()

        asyncio.run(go())
        assert owner.get_idea(1).status == "proposed"
    finally:
        owner.close()
    writable = Engine.open(lab, Settings())
    assert writable.read_only is None
    writable.store.close()


def test_import_of_a_non_utf8_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "ideas.json"
    f.write_bytes('[{"Name": "caf\u00e9"}]'.encode("latin-1"))
    assert main(["ideas", "import", str(f), "--lab", str(tmp_path / "lab")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not UTF-8" in err[0] and "Traceback" not in err[0]


def test_demo_with_unknown_template_is_one_line_and_leaves_no_lab(tmp_path, capsys):
    lab = tmp_path / "demo"
    assert main(["run", "--demo", "--template", "nosuch", "--lab", str(lab)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count("'nosuch'") == 1, err
    assert not lab.exists()


def test_review_without_a_key_is_bad_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    pdf = tmp_path / "p.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    code = main(["review", str(pdf), "--model", "anthropic:claude-sonnet-5-5",
                 "--lab", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "ANTHROPIC_API_KEY is not set" in capsys.readouterr().err


def test_setup_plans_by_privilege_and_never_fails(tmp_path):
    none = doctor.plan_setup(which=lambda name: None)
    assert "not Debian" in none.why_not and "texlive-latex-extra" in none.packages
    apt_only = doctor.plan_setup(which=lambda n: "/usr/bin/apt-get" if n == "apt-get" else None,
                                 euid=1000, sudo_ok=lambda: False)
    assert apt_only.prefix is None and "sudo" in apt_only.why_not
    root = doctor.plan_setup(which=lambda n: "/usr/bin/apt-get" if n == "apt-get" else None,
                             euid=0)
    assert root.prefix == [] and "bubblewrap" in root.packages
    said: list[str] = []
    assert not doctor.run_setup(none, tmp_path / "log", echo=said.append)
    assert "sudo apt-get install -y" in said[0]
    assert doctor.run_setup(doctor.SetupPlan([], None), tmp_path / "log", echo=said.append)
    # the command on a machine with no apt-get and no TeX: exit 0, one line
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    r = subprocess.run([*CLI, "setup"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": str(bin_dir)})
    assert r.returncode == 0, r.stderr
    assert "cannot install" in r.stdout and "Traceback" not in r.stderr


def test_paper_text_from_latex_keeps_title_sections_and_prose():
    tex = (r"\documentclass{article}\usepackage{graphicx}\title{Grokking \emph{Fast}}"
           "\n\\begin{document}\\maketitle\n\\section{Results}\\label{sec:r}\n"
           "Loss fell to 0.12 (Table~\\ref{t}) \\cite{k}. % a comment\n"
           "\\includegraphics[width=0.5\\linewidth]{fig.png}\n"
           "\\bibliography{refs}\n\\end{document}\n")
    text = paper_text(tex)
    assert text.startswith("Grokking Fast")
    assert "Results" in text and "Loss fell to 0.12" in text
    for hidden in ("sec:r", "fig.png", "a comment", "refs", "usepackage", "\\"):
        assert hidden not in text


def test_chktex_warning_exit_is_not_a_failure(tmp_path):
    settings = Settings()

    async def go() -> tuple[str, str]:
        bus = EventBus()
        bus.bind_loop()
        ex = Executor(settings, bus, None)
        res = await ex.run(RunSpec(argv=["sh", "-c", "exit 2"], cwd=tmp_path,
                                   log_path=tmp_path / "logs" / "chktex.log", limit_s=30,
                                   kind="check", run="chktex", ok_exit_codes=(0, 2)))
        bad = await ex.run(RunSpec(argv=["sh", "-c", "exit 2"], cwd=tmp_path,
                                   log_path=tmp_path / "logs" / "other.log", limit_s=30,
                                   kind="check", run="other"))
        return res.status + "|" + res.reason, bad.status

    ok, bad = asyncio.run(go())
    assert ok.startswith("ok|") and "warnings" in ok
    assert bad == "failed"


def test_extend_of_a_finished_run_names_it(tmp_path):
    lab = _lab(tmp_path / "lab")
    engine = Engine(lab, Settings())
    try:
        engine._executor = Executor(engine.settings, engine.bus, engine.store)
        engine.store.add_run(1, "run_2", 1, "experiment", status="ok")
        with pytest.raises(EngineError, match="run_2 already finished \\(ok\\)"):
            engine.extend_run(1, "run_2", 60)
        with pytest.raises(EngineError, match="run_3 is not running"):
            engine.extend_run(1, "run_3", 60)
    finally:
        engine.store.close()


def test_demo_asked_for_more_ideas_says_the_set_is_fixed(tmp_path):
    engine = make_demo_engine(tmp_path / "demo")
    try:
        with pytest.raises(EngineError, match="fixed set of recorded ideas"):
            engine.generate_ideas(4)  # the cassette records 3
        engine.generate_ideas(1)  # what the cassette holds is allowed
    finally:
        engine.store.close()


def test_experiment_stage_with_no_finished_run_fails_with_a_reason():
    none = _ended([], "run_1 failed after 2 attempt(s): killed by the operator")
    assert not none.ok and "no experiment run finished" in none.reason
    assert "killed by the operator" in none.reason
    some = _ended([1], "run_2 failed after 2 attempt(s): killed by the operator")
    assert some.ok and some.runs == [1] and "1 run(s) finished (run_1)" in some.summary


def test_approving_a_seed_idea_starts_it_with_feedback(tmp_path):
    lab = tmp_path / "lab"
    with LabStore(lab) as store:
        seed = store.add_idea("seed_a", "grokking", {**IDEA, "Name": "seed_a"}, origin="seed")
    ran: list[str] = []

    def stage(name: str):
        async def fn(ctx, idea_id):
            ran.append(name)
            return StageOutcome(summary=f"{name} ok")
        return fn

    stages = {n: stage(n) for n in ("novelty", "experiment", "plot", "write", "integrity",
                                    "review", "improve")}

    async def go() -> list[str]:
        engine = Engine(lab, Settings(), headless=False, stages=stages,
                        options=PipelineOptions(template="grokking", skip_novelty=True))
        sub = engine.bus.subscribe(kinds=(ev.Notice,))
        await engine.start()
        try:
            assert engine.pipeline is not None and not engine.pipeline.running(seed)
            engine.approve(seed)
            for _ in range(200):
                if "review" in ran:
                    break
                await asyncio.sleep(0.02)
            return [e.message for e in sub.drain() if isinstance(e, ev.Notice)]
        finally:
            await engine.stop()

    notices = asyncio.run(go())
    assert "experiment" in ran and "review" in ran
    assert any("seed_a approved: its experiments start now" in n for n in notices), notices


def test_results_table_lists_every_run_with_recorded_numbers(tmp_path):
    for i, acc in ((0, 0.25), (1, 0.5), (2, 0.125)):
        d = tmp_path / f"run_{i}"
        d.mkdir()
        (d / "final_info.json").write_text(json.dumps({
            "x_plus_y": {"means": {"final_train_acc": 1.0, "final_val_acc": acc},
                         "stderrs": {"final_val_acc": 0.0}}}))
    rf = load_run_facts(tmp_path)
    assert key_metric(rf, ["final_train_acc", "final_val_acc"]) == "final_val_acc"
    table = results_table_tex(rf, ["final_train_acc", "final_val_acc"])
    assert "\\label{tab:results}" in table and "x\\_plus\\_y" in table
    assert "baseline (run 0) & 0.25" in table and "run 1 & 0.5" in table
    assert "run 2 & 0.125" in table and "$\\pm$" not in table.split("\\toprule")[1]
    assert results_table_tex(load_run_facts(tmp_path / "none"), []) == ""


TUI_ON_READ_ONLY_LAB = r"""
import asyncio, sys
from aisci.tui.app import AisciApp
from aisci.tui.images import choose_protocol
from aisci.tui.launch import open_engine
from aisci.tui.main import build_parser

engine, _ = open_engine(build_parser().parse_args(["--lab", sys.argv[1]]))
print("read_only:", engine.read_only)

async def drive() -> None:
    app = AisciApp(engine, images=choose_protocol("none"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        print("status:", app.query_one("#status-bar").render().plain)
        await pilot.press("a")
        await pilot.pause(0.3)
        print("toasts:", " | ".join(n.message for n in app._notifications))
        await pilot.press("q")

asyncio.run(drive())
print("status after:", engine.store.get_idea(1).status)
"""


@needs_bwrap
def test_tui_opens_a_read_only_mount_as_a_viewer(tmp_path):
    """The real entry point on a lab bound read-only: a viewer, no traceback, nothing
    written, and a command says why it is disabled."""
    lab = _lab(tmp_path / "lab")
    before = sorted(p.name for p in lab.iterdir())
    argv = [BWRAP or "bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--ro-bind", str(lab), str(lab), sys.executable, "-c", TUI_ON_READ_ONLY_LAB,
            str(lab)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "read_only: None" not in r.stdout
    assert "READ-ONLY" in r.stdout and "disabled" in r.stdout, r.stdout
    assert "status after: proposed" in r.stdout
    assert sorted(p.name for p in lab.iterdir()) == before
