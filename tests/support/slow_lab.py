"""A lab whose approved idea starts a long experiment at once: the template's baseline
prints a numbered line every 50 ms for minutes. For the tests of an engine that outlives
its terminal (detach, attach, kill from another shell)."""

from __future__ import annotations

import shutil
from pathlib import Path

from aisci.engine.lab.store import LabStore

from support import DATA

LONG_EXPERIMENT = '''\
import argparse, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", default="run_0")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
for step in range(100000):
    print(f"step {step} loss {1 / (step + 1):.5f}", flush=True)
    time.sleep(0.05)
'''

CONFIG = '''\
[general]
template = "slow"

[models]
default = "scripted:none"

[novelty]
enabled = false

[sandbox]
mode = "none"
grace_period_s = 0.5
'''

IDEA = {"Title": "A long run", "Experiment": "Train for a long time.",
        "Interestingness": 5, "Feasibility": 9, "Novelty": 5}


def make_slow_lab(lab: Path) -> tuple[int, int]:
    """The lab; returns (the approved idea whose baseline runs long, an idea waiting for
    approval)."""
    tpl = lab / "templates" / "slow"
    shutil.copytree(DATA / "templates" / "tiny", tpl)
    (tpl / "experiment.py").write_text(LONG_EXPERIMENT, encoding="utf-8")
    (tpl / "template.toml").write_text(
        (tpl / "template.toml").read_text(encoding="utf-8").replace('"tiny"', '"slow"'),
        encoding="utf-8")
    (lab / "aisci.toml").write_text(CONFIG, encoding="utf-8")
    store = LabStore(lab)
    try:
        runner = store.add_idea("long_run", "slow", IDEA, status="approved")
        waiting = store.add_idea("waiting_idea", "slow", {**IDEA, "Title": "Another"},
                                 status="checked")
    finally:
        store.close()
    return runner, waiting


def baseline_log(lab: Path) -> Path:
    hits = sorted(lab.glob("baselines/slow*/logs/run_0.log"))
    return hits[0] if hits else lab / "baselines" / "slow" / "logs" / "run_0.log"
