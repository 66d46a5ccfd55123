"""Training throughput of the grokking template on this machine's CPU (updates/s).

Runs the template's own model, optimiser and data (x_plus_y, batch 512) for a number
of updates, with and without the validation pass the experiment makes every 10
updates, and projects the wall time of the full baseline (4 datasets x 3 seeds x 7500
updates). Prints numbers only; not a test.

Usage: python benchmarks/bench_grokking.py [--updates 100] [--threads 1,2] [--dataset x_plus_y]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from aisci.engine.resources import templates_dir

FULL_UPDATES = 4 * 3 * 7500


def load_template():
    path = templates_dir() / "grokking" / "experiment.py"
    spec = importlib.util.spec_from_file_location("grokking_experiment", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(gk, dataset: str, updates: int, threads: int) -> tuple[float, float, float]:
    """(updates/s without eval, seconds per validation pass, updates/s with eval)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    (x_tr, y_tr), (x_va, y_va), vocab, n_out = gk.make_split(dataset, 0)
    model = gk.Transformer(gk.NUM_LAYERS, gk.DIM_MODEL, gk.NUM_HEADS, vocab, n_out, seq_len=4)
    opt = torch.optim.AdamW(model.parameters(), lr=gk.LEARNING_RATE, betas=gk.BETAS,
                            weight_decay=gk.WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, x_tr.shape[0], (gk.BATCH_SIZE,), generator=gen)
        loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):  # warm-up (allocator, kernels)
        step()
    t0 = time.perf_counter()
    for _ in range(updates):
        step()
    train_ups = updates / (time.perf_counter() - t0)
    n_eval = max(3, updates // gk.EVAL_EVERY // 2)
    t0 = time.perf_counter()
    for _ in range(n_eval):
        gk.evaluate(model, x_va, y_va, gk.sampled_batches(x_va.shape[0], gen, "cpu"))
    eval_s = (time.perf_counter() - t0) / n_eval
    with_eval = 1.0 / (1.0 / train_ups + eval_s / gk.EVAL_EVERY)
    return train_ups, eval_s, with_eval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--threads", default=f"1,{min(4, os.cpu_count() or 1)}")
    parser.add_argument("--dataset", default="x_plus_y")
    args = parser.parse_args()
    gk = load_template()
    cpu = platform.processor() or platform.machine()
    print(f"grokking template throughput on CPU ({cpu}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f})")
    print(f"dataset {args.dataset}, batch {gk.BATCH_SIZE}, {args.updates} timed updates")
    for threads in sorted({int(t) for t in args.threads.split(",") if t}):
        train_ups, eval_s, with_eval = measure(gk, args.dataset, args.updates, threads)
        full_min = FULL_UPDATES / with_eval / 60
        print(f"threads={threads}: {train_ups:6.1f} updates/s training only, "
              f"{eval_s * 1000:6.1f} ms per validation pass, "
              f"{with_eval:6.1f} updates/s with validation every {gk.EVAL_EVERY}; "
              f"full baseline ({FULL_UPDATES} updates) ~ {full_min:.0f} min in one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
