"""Causality check for an (edited) nanogpt project.

Usage: python causality_check.py --project DIR

Imports DIR/experiment.py (its training only runs under __main__), builds a small
random GPT from its GPTConfig and verifies that changing the input tokens after
position t never changes the logits at positions <= t. A language model that sees
future tokens gets an impossibly low loss, so its numbers would be meaningless.

Prints one JSON line and exits 0 when causal, 1 when future tokens leak, 2 when the
check cannot run (the project does not define GPT/GPTConfig or they fail to build).
The engine runs the pristine template copy of this file, never the project's.
"""

import argparse
import importlib.util
import json
import os
import sys
import traceback

import torch

SEQ_LEN = 16
VOCAB = 32
BATCH = 2
ATOL = 1e-5


def load_project(project):
    path = os.path.join(project, "experiment.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    sys.path.insert(0, os.path.abspath(project))  # experiment.py imports its siblings
    spec = importlib.util.spec_from_file_location("aisci_checked_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(module):
    base = module.GPTConfig()
    fields = dict(base.__dict__)
    # A small model: few layers keep the check fast; dropout off so it is deterministic.
    fields.update(block_size=max(SEQ_LEN, 1), vocab_size=VOCAB, dropout=0.0)
    heads = fields.get("n_head", 2)
    fields["n_embd"] = max(2, heads) * 8
    fields["n_layer"] = min(fields.get("n_layer", 2), 2)
    model = module.GPT(type(base)(**fields))
    model.eval()
    return model


def all_logits(model, idx):
    """Per-position logits, whatever the forward returns (tensor or (logits, loss))."""
    out = model(idx, idx)
    logits = out[0] if isinstance(out, tuple) else out
    if logits.dim() != 3 or logits.shape[1] != idx.shape[1]:
        raise ValueError(f"forward(idx, targets) returned logits of shape {tuple(logits.shape)}; "
                         f"expected (batch, {idx.shape[1]}, vocab)")
    return logits


def check(model):
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, VOCAB, (BATCH, SEQ_LEN), generator=gen)
    with torch.no_grad():
        base = all_logits(model, idx)
        worst = 0.0
        for t in range(SEQ_LEN - 1):
            changed = idx.clone()
            # Different tokens at every position after t (shift by a non-zero offset).
            changed[:, t + 1:] = (idx[:, t + 1:] + 1 + torch.randint(0, VOCAB - 1, (1,), generator=gen)) % VOCAB
            out = all_logits(model, changed)
            diff = (out[:, : t + 1] - base[:, : t + 1]).abs().max().item()
            worst = max(worst, diff)
            if diff > ATOL:
                return {"causal": False, "position": t, "max_abs_diff": diff,
                        "detail": f"logits at positions <= {t} change when tokens after {t} change"}
    return {"causal": True, "positions_checked": SEQ_LEN - 1, "max_abs_diff": worst}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, help="directory holding experiment.py")
    args = parser.parse_args()
    torch.manual_seed(0)
    try:
        model = build_model(load_project(args.project))
        result = check(model)
    except (Exception, SystemExit) as exc:  # any failure of the project's code: cannot check
        tail = traceback.format_exc().strip().splitlines()[-1]
        print(json.dumps({"causal": None, "error": f"{type(exc).__name__}: {exc}", "where": tail}))
        return 2
    print(json.dumps(result))
    return 0 if result["causal"] else 1


if __name__ == "__main__":
    sys.exit(main())
