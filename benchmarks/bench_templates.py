"""Each bundled template's baseline numbers next to the reference system's published ones.

Either reads finished baselines (a run folder holding final_info.json, e.g.
``<lab>/baselines/diffusion_2d/run_0``) or runs a template's experiment.py at a chosen
work size (``AISCI_WORK_STEPS`` / ``_SEEDS`` / ``_EVAL``) in a temporary copy, then
prints one row per dataset: aisci's value, the reference's, and the ratio. Prints
numbers only; not a test.

    python benchmarks/bench_templates.py --template diffusion_2d --run-dir DIR [DIR ...]
    python benchmarks/bench_templates.py --template grokking --run --steps 500 --seeds 1
    python benchmarks/bench_templates.py --template nanogpt --run --smoke

Reference numbers (the reference's published baselines):
grokking: first step with validation accuracy > 99% (7500 = never);
diffusion_2d: KL(real || generated) in bits (dino: a range over its published runs);
nanogpt: best validation loss on shakespeare_char.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aisci.engine.resources import templates_dir

REFERENCE: dict[str, tuple[str, dict[str, tuple[float, float] | None]]] = {
    "grokking": ("step_val_acc_99", {
        "x_div_y": (4200, 4200), "x_minus_y": (4720, 4720), "x_plus_y": (2363, 2363),
        "permutation": None,  # never reaches 99% within 7500 updates
    }),
    "diffusion_2d": ("kl_divergence", {
        "circle": (0.354, 0.354), "dino": (0.989, 1.12), "line": (0.161, 0.161),
        "moons": (0.090, 0.090),
    }),
    "nanogpt": ("best_val_loss", {"shakespeare_char": (1.4655, 1.4655)}),
}
"""template -> (metric, dataset -> (low, high) of the reference's value; None = never)."""


def read_means(run_dirs: list[Path]) -> dict[str, dict[str, float]]:
    """dataset -> means, merged over run folders (a baseline split over processes)."""
    out: dict[str, dict[str, float]] = {}
    for d in run_dirs:
        data = json.loads((d / "final_info.json").read_text(encoding="utf-8"))
        for dataset, value in data.items():
            out[dataset] = value["means"]
    return out


def run_template(template: str, smoke: bool, sizes: dict[str, int], limit_s: float) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{template}-"))
    shutil.copytree(templates_dir() / template, work / template,
                    ignore=shutil.ignore_patterns("run_*", "__pycache__"))
    env = dict(os.environ)
    env.pop("AISCI_SMOKE", None)
    if smoke:
        env["AISCI_SMOKE"] = "1"
    env.update({f"AISCI_WORK_{k.upper()}": str(v) for k, v in sizes.items()})
    t0 = time.time()
    subprocess.run([sys.executable, "experiment.py", "--out_dir=run_0"], cwd=work / template,
                   env=env, check=True, timeout=limit_s)
    print(f"ran {template} in {time.time() - t0:.0f} s (work dir {work / template})")
    return work / template / "run_0"


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def table(template: str, means: dict[str, dict[str, float]]) -> None:
    metric, ref = REFERENCE[template]
    print(f"\n{template}: {metric}")
    print(f"{'dataset':<18}{'aisci':>10}{'reference':>16}{'aisci/ref':>11}")
    for dataset in list(ref) + [d for d in means if d not in ref]:
        value = means.get(dataset, {}).get(metric)
        r = ref.get(dataset)
        if r is None:
            ref_text, ratio = ("never (7500)" if template == "grokking" else "-"), "-"
        else:
            lo, hi = r
            ref_text = fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"
            ratio = "-" if value is None else f"{value / ((lo + hi) / 2):.2f}"
        print(f"{dataset:<18}{fmt(value):>10}{ref_text:>16}{ratio:>11}")
    others = sorted({k for m in means.values() for k in m} - {metric})
    for dataset, m in means.items():
        print(f"  {dataset}: " + ", ".join(f"{k}={fmt(m[k])}" for k in others if k in m))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", choices=sorted(REFERENCE), required=True)
    parser.add_argument("--run-dir", type=Path, nargs="*", default=[],
                        help="finished run folder(s) with final_info.json")
    parser.add_argument("--run", action="store_true", help="run the template now")
    parser.add_argument("--smoke", action="store_true", help="with --run: the smoke setting")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--eval", type=int, default=None)
    parser.add_argument("--limit-s", type=float, default=6 * 3600)
    args = parser.parse_args()
    dirs = list(args.run_dir)
    if args.run:
        sizes = {k: getattr(args, k) for k in ("steps", "seeds", "eval")
                 if getattr(args, k) is not None}
        dirs.append(run_template(args.template, args.smoke, sizes, args.limit_s))
    if not dirs:
        parser.error("give --run-dir DIR (a finished baseline) or --run")
    table(args.template, read_means(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
