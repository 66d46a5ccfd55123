"""`aisci run --skip-idea-generation` on a lab without ideas runs the template's seed
ideas (a template without any is one line, exit 2), and `aisci run --demo` uses the lab
it is given (``.`` too) or the same default folder as `aisci-tui --demo`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path

from aisci.engine.batch import run_batch
from aisci.engine.cli import build_parser, main
from aisci.engine.cli.run_cmd import demo_lab
from aisci.engine.config import Settings
from aisci.engine.errors import EXIT_USAGE
from aisci.engine.lab.layout import DEMO_LAB_DIR
from aisci.engine.lab.store import LabStore
from aisci.engine.lab.templates import find_template
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.stages.contract import StageOutcome
from aisci.tui.main import lab_path
from support import DATA


def _stages():
    async def ok(ctx, idea_id):
        await asyncio.sleep(0)
        return StageOutcome()

    return {n: ok for n in ("novelty", "experiment", "plot", "write", "integrity", "review",
                            "improve")}


async def test_skip_idea_generation_on_a_new_lab_runs_the_template_seed_ideas(tmp_path):
    seeds = json.loads((find_template("grokking").path / "seed_ideas.json").read_text())
    options = PipelineOptions(template="grokking", skip_idea_generation=True,
                              include_seeds=True, skip_novelty=True, auto_approve=True)
    res = await run_batch(tmp_path / "lab", Settings(), options, stages=_stages())
    with LabStore(tmp_path / "lab", read_only=True) as store:
        ideas = store.list_ideas()
    assert sorted(i.name for i in ideas) == sorted(s["Name"] for s in seeds)
    assert {i.origin for i in ideas} == {"seed"}
    assert set(res.outcomes) == {i.id for i in ideas}  # each one ran, none was left out
    # again on the same lab: the seeds are not added twice
    await run_batch(tmp_path / "lab", Settings(), options, stages=_stages())
    with LabStore(tmp_path / "lab", read_only=True) as store:
        assert len(store.list_ideas()) == len(seeds)


def test_skip_idea_generation_without_ideas_or_seeds_is_one_line(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    lab = tmp_path / "lab"
    shutil.copytree(DATA / "templates" / "tiny", lab / "templates" / "tiny")  # no seeds
    code = main(["run", "--lab", str(lab), "--template", "tiny", "--skip-idea-generation",
                 "--skip-novelty-check", "--set", "models.default=scripted:demo"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    [line] = err.splitlines()
    assert line.startswith("aisci: nothing to run") and "'tiny' has no" in line


def test_demo_lab_is_the_given_one_or_the_tui_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    explicit = parser.parse_args(["run", "--demo", "--lab", "."])
    assert demo_lab(explicit) == tmp_path
    default = parser.parse_args(["run", "--demo"])
    assert demo_lab(default) == tmp_path / DEMO_LAB_DIR
    # one demo folder for both front ends
    assert lab_path(argparse.Namespace(lab=None, demo=True)) == demo_lab(default)
    assert parser.parse_args(["run"]).lab is None  # not given: the current directory
    assert Path(parser.parse_args(["run", "--lab", "x"]).lab) == Path("x")
