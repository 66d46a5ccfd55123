"""Builds a real lab for the TUI tests: a LabStore with ideas, stages, runs and LLM
calls, and idea directories with a git history tagged per run, logs, a figure, a
review and integrity findings. No test functions live here."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aisci.tui.screens.main as main_screen
import aisci.tui.widgets.processes.process_table as process_table
import aisci.tui.widgets.runs.runs_pane as runs_pane
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, IdeaChanged, ProcessStats
from aisci.engine.lab.store import LabStore
from PIL import Image, ImageDraw

FROZEN_NOW = 1_750_000_000.0

IDEAS: list[dict[str, Any]] = [
    {"Name": "adaptive_weight_decay", "Title": "Adaptive Weight Decay Schedules for Grokking",
     "Experiment": "Replace the constant weight decay with a schedule that ramps from 0.1 to "
                   "1.0 over training; compare the step at which validation accuracy passes "
                   "99% on all four datasets.",
     "Interestingness": 8, "Feasibility": 9, "Novelty": 6},
    {"Name": "label_noise_grokking", "Title": "Does Label Noise Delay Grokking?",
     "Experiment": "Flip 5%, 10% and 20% of training labels and measure the delay of "
                   "generalisation relative to the clean baseline.",
     "Interestingness": 7, "Feasibility": 10, "Novelty": 5},
    {"Name": "width_sweep", "Title": "Width Sweep of the Grokking Transformer",
     "Experiment": "Vary the model width from 32 to 512 and record the grokking step.",
     "Interestingness": 4, "Feasibility": 10, "Novelty": 2},
]

NOVELTY = {"novel": True, "decided": True, "rounds": 2,
           "rationale": "No paper studies scheduled weight decay as a grokking accelerator.",
           "queries": ["grokking weight decay schedule", "weight decay generalization delay"],
           "papers": [{"title": "Grokking: Generalization Beyond Overfitting on Small "
                                "Algorithmic Datasets", "year": 2022, "citation_count": 400},
                      {"title": "Omnigrok: Grokking Beyond Algorithmic Data", "year": 2023,
                       "citation_count": 120}]}

REVIEW = {
    "review": {"Summary": "The paper studies scheduled weight decay.",
               "Strengths": ["Clear question", "Four datasets"],
               "Weaknesses": ["Only three seeds"], "Originality": 3, "Quality": 3,
               "Clarity": 3, "Significance": 2, "Questions": ["Why a linear ramp?"],
               "Limitations": ["Small models only"], "Ethical Concerns": False,
               "Soundness": 3, "Presentation": 3, "Contribution": 2, "Overall": 5,
               "Confidence": 4, "Decision": "Reject"},
    "reviewers": [{"Overall": 4, "Originality": 2, "Soundness": 3, "Confidence": 4,
                   "Decision": "Reject", "Summary": "A schedule is tried on one model size.",
                   "Weaknesses": ["No learning-rate control run"]},
                  {"Overall": 6, "Originality": 3, "Soundness": 3, "Confidence": 3},
                  {"Overall": 5, "Originality": 3, "Soundness": 2, "Confidence": 4}],
}

INTEGRITY = {"findings": [{"kind": "hardware_claim", "message": "paper claims a V100; the run "
                           "used a CPU", "location": "latex/template.tex:88", "context": ""}],
             "final": True}


def git(repo: Path, *args: str) -> None:
    """git on an idea folder, its git directory under <lab>/repos/ (the engine's layout)."""
    git_dir = repo.parent.parent / "repos" / f"{repo.name}.git"
    subprocess.run(["git", f"--git-dir={git_dir}", f"--work-tree={repo}", "-c", "user.name=t",
                    "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)


def final_info(loss: float, acc: float, step: int) -> dict[str, Any]:
    return {"x_plus_y": {"means": {"final_val_loss": loss, "final_val_acc": acc,
                                   "step_val_acc_99": step}}}


def write_png(path: Path, seed: int = 0) -> None:
    img = Image.new("RGB", (320, 200), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rectangle((20, 20, 300, 180), outline=(30, 30, 30), width=2)
    d.line([(20 + i * 28, 180 - ((i * 37 + seed) % 150)) for i in range(11)],
           fill=(31, 119, 180), width=3)
    img.save(path)


def build_lab(lab: Path, *, log_lines: int = 200, running: bool = True) -> LabStore:
    """Three ideas: #1 approved with runs (run_2 running), #2 checked, #3 vetoed."""
    lab.mkdir(parents=True, exist_ok=True)
    store = LabStore(lab)
    ids = [store.add_idea(d["Name"], "grokking", {k: v for k, v in d.items() if k != "Name"})
           for d in IDEAS]
    store.update_idea(ids[0], status="approved", novelty=NOVELTY, action="approved",
                      source="human")
    store.update_idea(ids[1], status="checked", novelty={**NOVELTY, "novel": False})
    store.update_idea(ids[2], status="vetoed", action="vetoed", source="human",
                      detail={"reason": "too incremental"})
    for stage in ("ideate", "novelty", "approval"):
        store.set_stage(ids[0], stage, "done")
    store.set_stage(ids[0], "experiment", "running")
    # Checked, not yet decided: what the pipeline records for an idea awaiting approval.
    for stage in ("ideate", "novelty"):
        store.set_stage(ids[1], stage, "done")
    store.set_stage(ids[1], "approval", "waiting")
    base = lab / "ideas" / f"{ids[0]}-{IDEAS[0]['Name']}"
    (base / "logs").mkdir(parents=True)
    (base / "experiment.py").write_text("WEIGHT_DECAY = 0.5\nLR = 1e-3\n")
    subprocess.run(["git", "init", "-q", "--bare", str(lab / "repos" / f"{base.name}.git")],
                   check=True, capture_output=True)
    git(base, "add", "experiment.py")
    git(base, "commit", "-qm", "template")
    git(base, "tag", "base")
    (base / "experiment.py").write_text(
        "WEIGHT_DECAY = 0.5\nLR = 1e-3\n\ndef wd_at(step):\n    return 0.1 + 0.9 * step / 7500\n")
    git(base, "commit", "-qam", "run_1: linear weight-decay ramp")
    git(base, "tag", "run_1")
    for i, (loss, acc, step) in enumerate([(0.52, 0.991, 4200), (0.40, 0.996, 3100)]):
        d = base / f"run_{i}"
        d.mkdir()
        (d / "final_info.json").write_text(json.dumps(final_info(loss, acc, step)))
    t0 = FROZEN_NOW - 600
    store.add_run(ids[0], "run_0", 1, "baseline", status="ok", started_at=t0, duration_s=95.0,
                  finished_at=t0 + 95, limit_s=7200.0, isolation="bwrap",
                  log_path=str(base / "logs" / "run_0.log"))
    store.add_run(ids[0], "run_1", 1, "experiment", status="failed", started_at=t0 + 100,
                  duration_s=12.0, reason="exit 1", limit_s=7200.0, isolation="bwrap")
    store.add_run(ids[0], "run_1", 2, "experiment", status="ok", started_at=t0 + 120,
                  duration_s=101.0, limit_s=7200.0, isolation="bwrap",
                  log_path=str(base / "logs" / "run_1.log"))
    if running:
        store.add_run(ids[0], "run_2", 1, "experiment", status="running",
                      started_at=FROZEN_NOW - 130, limit_s=7200.0, isolation="bwrap", pid=0,
                      log_path=str(base / "logs" / "run_2.log"))
    for name in ("run_0", "run_1", "run_2"):
        with open(base / "logs" / f"{name}.log", "w") as fh:
            for k in range(log_lines):
                fh.write(f"[{name}] step {k * 10:>5} train_loss {2.5 / (k + 1):.4f}\n")
    write_png(base / "val_acc_x_plus_y.png")
    (base / "review.json").write_text(json.dumps(REVIEW))
    (base / "integrity.json").write_text(json.dumps(INTEGRITY))
    for stage, idea, cost in (("ideate", None, 0.012), ("novelty", ids[0], 0.034),
                              ("experiment", ids[0], 0.21)):
        store.record_llm_call(stage=stage, idea_id=idea, provider="scripted", model="demo",
                              input_tokens=1000, output_tokens=200, cost_usd=cost)
    return store


class StoreEngine:
    """The engine port (aisci.tui.engine_port.EnginePort) over a real store and bus, for
    pane tests that run before/without a pipeline. Commands change the store and publish
    the real events the engine publishes; pipeline and run controls are recorded (there
    is no pipeline to steer, no process to signal)."""

    def __init__(self, lab: Path, store: LabStore, settings: Settings | None = None,
                 read_only: str | None = None) -> None:
        self.lab = lab
        self.store = store
        self.bus = EventBus()
        self.settings = settings or Settings()
        self.read_only = read_only
        self.blocking_commands = False
        self.attached_to: int | None = None
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def request_stop(self, source: str) -> None:
        self.calls.append(("request_stop", (source,)))

    async def start(self) -> None:
        self.calls.append(("start", ()))

    async def stop(self) -> None:
        self.calls.append(("stop", ()))

    def processes(self) -> list[ProcessStats]:
        return []

    def _status(self, idea_id: int, status: str, action: str, detail: dict[str, Any]) -> None:
        self.store.update_idea(idea_id, status=status, action=action, source="human",
                               detail=detail)
        self.bus.publish(IdeaChanged(idea_id=idea_id, status=status,
                                     detail=detail.get("reason", "")))

    def approve(self, idea_id: int) -> None:
        self.calls.append(("approve", (idea_id,)))
        self._status(idea_id, "approved", "approved", {})

    def veto(self, idea_id: int, reason: str) -> None:
        self.calls.append(("veto", (idea_id, reason)))
        self._status(idea_id, "vetoed", "vetoed", {"reason": reason})

    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> None:
        self.calls.append(("edit_idea", (idea_id, fields)))
        row = self.store.get_idea(idea_id)
        assert row is not None
        self.store.update_idea(idea_id, data={**row.data, **fields}, status="edited",
                               action="edited", source="human", detail={"fields": fields})
        self.bus.publish(IdeaChanged(idea_id=idea_id, status="edited"))

    def generate_ideas(self, n: int) -> None:
        self.calls.append(("generate_ideas", (n,)))

    def pause_idea(self, idea_id: int) -> None:
        self.calls.append(("pause_idea", (idea_id,)))

    def resume_idea(self, idea_id: int) -> None:
        self.calls.append(("resume_idea", (idea_id,)))

    def retry_stage(self, idea_id: int, stage: str) -> None:
        self.calls.append(("retry_stage", (idea_id, stage)))

    def skip_stage(self, idea_id: int, stage: str) -> None:
        self.calls.append(("skip_stage", (idea_id, stage)))

    def literature_decision(self, idea_id: int, decision: str) -> None:
        self.calls.append(("literature_decision", (idea_id, decision)))

    def kill_run(self, idea_id: int | None, run: str) -> bool:
        self.calls.append(("kill_run", (idea_id, run)))
        return True

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> float:
        self.calls.append(("extend_run", (idea_id, run, seconds)))
        return 7200.0 + seconds

    def pause_run(self, idea_id: int | None, run: str) -> bool:
        self.calls.append(("pause_run", (idea_id, run)))
        return True

    def resume_run(self, idea_id: int | None, run: str) -> bool:
        self.calls.append(("resume_run", (idea_id, run)))
        return True

    def raise_budget(self, scope: str, usd: float) -> None:
        self.calls.append(("raise_budget", (scope, usd)))
        setattr(self.settings.budget, f"{scope}_usd", usd)


def frozen_clock(monkeypatch: Any) -> None:
    """Freeze the clocks the panes use for elapsed times (deterministic snapshots)."""
    for mod in (main_screen, process_table, runs_pane):
        monkeypatch.setattr(mod, "clock", lambda: FROZEN_NOW)


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class MessageSink:
    """Stands in for the App as the bridge's message target: keeps what it is posted."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def post_message(self, m: object) -> bool:
        self.got.append(m)
        return True
