"""Peak memory of grokking's validation pass: aisci's (batches of 512, as the reference
evaluates) against one forward pass over the whole validation half (what aisci did before).

Each mode runs in its own process and prints the growth of the peak RSS during three
validation passes. Prints numbers only; not a test.

    python benchmarks/bench_grokking_memory.py [--dataset x_div_y]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys

import torch
from aisci.engine.resources import templates_dir

MODES = ("sampled", "full_batched", "whole")


def measure(mode: str, dataset: str) -> None:
    path = templates_dir() / "grokking" / "experiment.py"
    spec = importlib.util.spec_from_file_location("grokking_experiment", path)
    assert spec is not None and spec.loader is not None
    gk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gk)
    torch.set_num_threads(1)
    _, (x_va, y_va), vocab, n_out = gk.make_split(dataset, 0)
    model = gk.Transformer(gk.NUM_LAYERS, gk.DIM_MODEL, gk.NUM_HEADS, vocab, n_out, seq_len=4)
    gen = torch.Generator().manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        if mode == "sampled":  # every 10 updates: 8 batches of 512 drawn with replacement
            gk.evaluate(model, x_va, y_va, gk.sampled_batches(x_va.shape[0], gen, "cpu"))
        elif mode == "full_batched":  # the extra full_val_* metrics, once at the end
            gk.evaluate(model, x_va, y_va, gk.full_batches(x_va.shape[0], "cpu"))
        else:
            with torch.no_grad():
                model.eval()
                model(x_va)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{mode:<13} peak RSS growth {(peak - base) / 1024:7.1f} MB "
          f"({x_va.shape[0]} validation examples)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="x_div_y")
    parser.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.mode, args.dataset)
        return 0
    for mode in MODES:
        subprocess.run([sys.executable, __file__, "--mode", mode, "--dataset", args.dataset],
                       check=True, timeout=600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
