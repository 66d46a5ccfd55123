"""The demo pipeline under the chaos model: every perturbation class, and ``all``.

For each class, ``aisci run --demo`` runs in its own fresh lab with the scripted model
replaced by ``scripted:demo@chaos=CLASS,seed=S,rate=R``; a ``none`` row (the unperturbed
cassette) is the control. Everything is the real pipeline (real experiments in smoke mode,
real LaTeX, real store); what makes it affordable:

- ``--ideas`` generated ideas per class (default 1) and ``--runs`` experiment runs per idea
  (default 1, ``experiment.max_runs``); the optional improve stage runs too (``--no-improve``
  leaves it out);
- the template's baseline run_0 is produced once (``aisci baseline --smoke``) and copied
  into every lab's ``baselines/`` folder, where the engine looks for it first;
- classes run in parallel, each in its own lab and process, at most ``--jobs`` at a time
  (default: the number of cores).

Checked per run: exit within ``--limit-s`` (no hang), no Python traceback in the output,
a sound store (SQLite integrity check), every idea either finished or stopped at a stage
with a one-line reason. Printed: per class and stage, ``done/reached`` (ideas that got
through the stage of those that entered it) and the LLM calls recorded (failed ones, e.g.
malformed JSON after the repair budget, in brackets), what "done" does not say (ideas
whose experiment.py the model really changed; template placeholders left in the paper),
the stop reasons, and per stage the totals over all chaos classes.

    nice -n 10 python benchmarks/bench_chaos.py [--classes prose,fences,all] [--seed 1]
        [--rate 0.5] [--ideas 1] [--runs 1] [--jobs 2] [--no-improve] [--limit-s 900]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aisci.engine.demo import prepare_demo_lab
from aisci.engine.lab import layout
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.chaos import CLASSES
from aisci.engine.resources import templates_dir
from aisci.engine.stages.registry import STAGE_NAMES

CONTROL = "none"
ATTEMPTED = ("done", "failed", "paused", "running", "waiting")
OUTPUT_CAP = 4_000_000  # characters of a run's output kept for the traceback check


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def make_baseline(root: Path, limit_s: float) -> Path:
    """A demo lab holding only the template's smoke baseline; its ``baselines/`` folder is
    copied into every class's lab."""
    seed_lab = root / "baseline-lab"
    cfg = prepare_demo_lab(seed_lab)
    cmd = [sys.executable, "-m", "aisci.engine.cli", "baseline", "--template",
           cfg.settings.general.template, "--smoke", "--lab", str(seed_lab)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s, check=False)
    src = seed_lab / layout.BASELINES_DIR
    if proc.returncode != 0 or not src.is_dir():
        sys.exit(f"bench_chaos: the baseline failed (exit {proc.returncode}):\n"
                 f"{(proc.stdout + proc.stderr)[-2000:]}")
    print(f"baseline run_0 made once in {time.monotonic() - t0:.1f} s", flush=True)
    return src


def run_class(kind: str, args: argparse.Namespace, root: Path, baselines: Path
              ) -> dict[str, Any]:
    lab = root / f"lab-{kind}"
    prepare_demo_lab(lab)
    shutil.copytree(baselines, lab / layout.BASELINES_DIR, symlinks=True)
    model = ("scripted:demo" if kind == CONTROL
             else f"scripted:demo@chaos={kind},seed={args.seed},rate={args.rate}")
    cmd = [sys.executable, "-m", "aisci.engine.cli", "run", "--demo", "--lab", str(lab),
           "--set", f"models.default={model}",
           "--set", f"ideation.num_ideas={args.ideas}",
           "--set", f"experiment.max_runs={args.runs}",
           "--set", f"review.improve={'true' if args.improve else 'false'}"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit_s,
                              check=False)
        out, code, hung = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        out, code, hung = _text(exc.stdout) + _text(exc.stderr), -1, True
    took = time.monotonic() - t0
    out = out[-OUTPUT_CAP:]
    (root / f"{kind}.log").write_text(out, encoding="utf-8")
    stages: dict[str, list[int]] = {}  # stage -> [done, reached]
    reasons: list[str] = []
    integrity = "no store"
    llm = (0, 0)
    quality: list[tuple[bool, int]] = []
    if (lab / "aisci.db").exists():
        with LabStore(lab, read_only=True) as store:
            integrity = store.integrity_check()
            calls = store.query("SELECT COUNT(*) AS n, COALESCE(SUM(error IS NOT NULL), 0) "
                                "AS bad FROM llm_calls")[0]
            llm = (int(calls["n"]), int(calls["bad"]))
            for idea in store.list_ideas():
                states = store.stages(idea.id)
                if states.get("novelty", {}).get("state", "pending") == "pending" \
                        and states.get("approval", {}).get("state", "pending") == "pending":
                    continue  # a template seed idea this batch does not run
                quality.append(_quality(lab, idea.id, idea.name, idea.template))
                for stage, st in states.items():
                    if st["state"] not in ATTEMPTED:
                        continue
                    done_reached = stages.setdefault(stage, [0, 0])
                    done_reached[1] += 1
                    if st["state"] == "done":
                        done_reached[0] += 1
                    else:
                        detail = st.get("detail") or {}
                        why = detail.get("reason") or detail.get("error") or detail
                        reasons.append(f"{idea.name}/{stage} {st['state']}: {why}")
    multiline = [r for r in reasons if "\n" in r]
    return {"class": kind, "exit": code, "hung": hung, "took_s": took,
            "traceback": "Traceback (most recent call last)" in out,
            "integrity": integrity, "stages": stages, "reasons": reasons,
            "multiline": multiline, "llm": llm, "quality": quality}


_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z ]* HERE\b")


def _quality(lab: Path, idea_id: int, name: str, template: str) -> tuple[bool, int]:
    """What a stage's "done" does not say: did the model's code edits land (the idea's
    experiment.py differs from the template's), and how many section placeholders of the
    template ("RESULTS HERE") are left in the paper."""
    idea_dir = layout.idea_dir(lab, idea_id, name)
    code = idea_dir / "experiment.py"
    edited = code.is_file() and code.read_bytes() != (
        templates_dir() / template / "experiment.py").read_bytes()
    tex = idea_dir / "latex" / "template.tex"
    left = len(_PLACEHOLDER.findall(tex.read_text("utf-8", "replace"))) if tex.is_file() else -1
    return edited, left


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", default=",".join((CONTROL, *CLASSES, "all")))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--ideas", type=int, default=1, help="generated ideas per class")
    ap.add_argument("--runs", type=int, default=1, help="experiment runs per idea")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="classes run at the same time (each its own lab)")
    ap.add_argument("--improve", action=argparse.BooleanOptionalAction, default=True,
                    help="run the optional improve stage too (default: yes)")
    ap.add_argument("--limit-s", type=float, default=900)
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the labs and logs in this folder instead of a temporary one")
    args = ap.parse_args()
    kinds = [k for k in args.classes.split(",") if k]
    for k in kinds:
        if k not in (CONTROL, "all", *CLASSES):
            sys.exit(f"bench_chaos: unknown class {k!r}; expected {CONTROL}, all or one of "
                     f"{', '.join(CLASSES)}")
    jobs = max(1, min(args.jobs, len(kinds)))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aisci-chaos-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        baselines = make_baseline(root, args.limit_s)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_class, k, args, root, baselines) for k in kinds]
            results = []
            for f in futures:
                r = f.result()
                results.append(r)
                print(f"{r['class']:16s} exit {r['exit']:3d} in {r['took_s']:6.1f} s",
                      flush=True)
    return report(results, time.monotonic() - t0, args, jobs)


def _extra(r: dict[str, Any]) -> str:
    calls, failed = r["llm"]
    edited = f"{sum(e for e, _ in r['quality'])}/{len(r['quality'])}"
    left = ",".join(str(n) for _, n in r["quality"]) or "-"
    return f"   {f'{calls} ({failed})':>18s}  {edited:>11s}  {left:>17s}"


def report(results: list[dict[str, Any]], wall_s: float, args: argparse.Namespace,
           jobs: int) -> int:
    stages = [s for s in STAGE_NAMES if any(s in r["stages"] for r in results)]
    print(f"\nper class: done/reached per stage  (seed {args.seed}, rate {args.rate}, "
          f"{args.ideas} idea(s), {args.runs} run(s), improve {args.improve}, {jobs} job(s), "
          f"{wall_s:.0f} s wall)")
    print(f"{'class':16s} " + " ".join(f"{s[:10]:>10s}" for s in stages)
          + "   LLM calls (failed)  code edited  placeholders left  flags")
    totals: dict[str, list[int]] = {s: [0, 0] for s in stages}
    bad = 0
    for r in results:
        flags = [f for f, on in (("HUNG", r["hung"]), ("TRACEBACK", r["traceback"]),
                                 ("STORE:" + r["integrity"], r["integrity"] != "ok"),
                                 ("MULTILINE-REASON", bool(r["multiline"]))) if on]
        bad += bool(flags)
        cells = []
        for s in stages:
            d, n = r["stages"].get(s, (0, 0))
            cells.append(f"{d}/{n}" if n else "-")
            if r["class"] != CONTROL:
                totals[s][0] += d
                totals[s][1] += n
        print(f"{r['class']:16s} " + " ".join(f"{c:>10s}" for c in cells)
              + _extra(r)
              + ("  " + " ".join(flags) if flags else ""))
    print("\nstops (one line each):")
    for r in results:
        for line in r["reasons"][:4]:
            print(f"  {r['class']:16s} {' '.join(str(line).split())[:220]}")
    print("\nper-stage success over all chaos classes:")
    for s, (d, n) in totals.items():
        print(f"  {s:12s} {d:3d}/{n:<3d} {100.0 * d / n if n else 0:5.1f}%")
    print(f"runs with a hang, traceback, corrupt store or multi-line reason: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
