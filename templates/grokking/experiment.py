"""Grokking on algorithmic datasets (Power et al. 2022).

A 2-layer causal transformer learns binary operations "a o b = c" from half of the
table and is evaluated on the other half. Validation accuracy typically jumps to 100%
long after training accuracy does ("grokking"), except on the S5 permutation task.

Besides loss and accuracy, a compression-based complexity estimate of the weights is
logged during training (compressed size of the parameters quantised on a fixed grid),
so ideas can study how model complexity rises and falls around grokking.

Metrics follow the reference system's template: every 10 updates the training loss
and accuracy are the running averages over those 10 training batches, and validation
is 8 batches of 512 examples drawn with replacement from the validation half; the final
metrics are the last of these (not a re-evaluation). Extra, aisci-only metrics:
full_val_loss / full_val_acc (the whole validation half once at the end, in batches of
512) and final_compressed_bytes. Deliberate difference from the reference: the
train/validation split is seeded by the run's seed (the reference draws it unseeded).

Usage: python experiment.py --out_dir run_0
Smoke mode (a few steps, same code path and outputs): AISCI_SMOKE=1
Work size (full-run defaults in template.toml [work_size]): AISCI_WORK_STEPS (updates),
AISCI_WORK_SEEDS (seeds per dataset), AISCI_WORK_EVAL (validation batches per eval).
"""

import argparse
import itertools
import json
import math
import os
import random
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SMOKE = os.environ.get("AISCI_SMOKE", "") not in ("", "0")


def work_size(key, default, smoke_default):
    """A work-size knob: AISCI_WORK_<KEY> if set, else the smoke or full default."""
    raw = os.environ.get(f"AISCI_WORK_{key}", "").strip()
    if not raw:
        return smoke_default if SMOKE else default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"AISCI_WORK_{key}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise SystemExit(f"AISCI_WORK_{key}={raw!r}: expected a positive integer")
    return value


# ---------------------------------------------------------------- hyperparameters
PRIME = 97
PERM_K = 5
TRAIN_FRACTION = 0.5
NUM_LAYERS = 2
DIM_MODEL = 128
NUM_HEADS = 4
LEARNING_RATE = 1e-3
BETAS = (0.9, 0.98)
WEIGHT_DECAY = 0.5
WARMUP_STEPS = 50
BATCH_SIZE = 512
NUM_UPDATES = work_size("STEPS", 7500, 20)
EVAL_EVERY = 10  # steps between validation evaluations
EVAL_BATCHES = work_size("EVAL", 8, 8)  # batches of BATCH_SIZE drawn with replacement
COMPLEXITY_EVERY = 10 if SMOKE else 100  # steps between complexity estimates
COMPLEXITY_GRID = 1e-2  # absolute quantisation step of the complexity estimate
LOG_EVERY = 10 if SMOKE else 500  # steps between progress lines on stdout
SEEDS = list(range(work_size("SEEDS", 3, 1)))
DATASETS = ["x_plus_y", "x_minus_y", "x_div_y", "permutation"]


# ---------------------------------------------------------------- datasets
def operation_table(name):
    """All (a, b, c) triples of the operation, with elements as hashable values."""
    if name == "permutation":
        perms = list(itertools.permutations(range(PERM_K)))
        return [(a, b, tuple(a[i] for i in b)) for a in perms for b in perms], perms
    elems = list(range(PRIME))
    if name == "x_plus_y":
        rows = [(a, b, (a + b) % PRIME) for a in elems for b in elems]
    elif name == "x_minus_y":
        rows = [(a, b, (a - b) % PRIME) for a in elems for b in elems]
    elif name == "x_div_y":
        # a / b = a * b^(p-2) mod p (Fermat); b ranges over the non-zero elements.
        rows = [(a, b, (a * pow(b, PRIME - 2, PRIME)) % PRIME) for a in elems for b in elems[1:]]
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return rows, elems


def make_split(name, seed):
    """Token tensors for the seeded train/val split: inputs [a, o, b, =], target c."""
    rows, elems = operation_table(name)
    index = {e: i + 2 for i, e in enumerate(elems)}  # 0 = "o", 1 = "="
    inputs = torch.tensor([[index[a], 0, index[b], 1] for a, b, _ in rows], dtype=torch.long)
    targets = torch.tensor([index[c] - 2 for _, _, c in rows], dtype=torch.long)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_train = int(len(rows) * TRAIN_FRACTION)
    train_idx = torch.tensor(order[:n_train])
    val_idx = torch.tensor(order[n_train:])
    vocab = len(elems) + 2
    return (inputs[train_idx], targets[train_idx]), (inputs[val_idx], targets[val_idx]), vocab, len(elems)


# ---------------------------------------------------------------- model
class DecoderBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ln2 = nn.LayerNorm(dim)
        # Initialised like torch.nn.MultiheadAttention, which the reference model uses:
        # Xavier-uniform on the stacked q/k/v projection, zero biases. The init scale
        # matters for grokking (larger weights delay generalisation).
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, last_only=False):
        """Causal self-attention + MLP (post-norm). With last_only, only the last
        position is computed (it attends to every position), which is all the final
        block needs: same result, about a third less compute per update."""
        b, t, d = x.shape
        h, hd = self.heads, d // self.heads
        if last_only:
            q = F.linear(x[:, -1:], self.qkv.weight[:d], self.qkv.bias[:d])
            kv = F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:])
            q = q.view(b, 1, h, hd).transpose(1, 2)
            k, v = kv.view(b, t, 2, h, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v)
            x = x[:, -1:]
        else:
            q, k, v = self.qkv(x).view(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = self.ln1(x + self.proj(a.transpose(1, 2).reshape(b, x.shape[1], d)))
        return self.ln2(x + self.ffn(x))


class Transformer(nn.Module):
    def __init__(self, num_layers, dim, heads, vocab_size, output_size, seq_len):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList([DecoderBlock(dim, heads) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, output_size)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos.weight[: tokens.shape[1]]
        # The answer is predicted from the last position (the "=" token).
        for i, block in enumerate(self.blocks):
            x = block(x, last_only=i == len(self.blocks) - 1)
        return self.head(self.ln_f(x[:, -1]))


# ---------------------------------------------------------------- complexity
def weight_complexity(model):
    """Compressed size (bytes) of the weights quantised on a fixed absolute grid.

    A fixed grid (not per-tensor scaling) makes small or sparse weights cheaper to
    encode, so the number tracks the description length of the network.
    """
    with torch.no_grad():
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        q = torch.clamp(torch.round(flat / COMPLEXITY_GRID), -32768, 32767).to(torch.int16)
        norm = float(flat.norm())
    return len(zlib.compress(q.numpy().tobytes(), 6)), norm


# ---------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model, inputs, targets, batches):
    """Loss and accuracy over the given index batches, one batch of BATCH_SIZE at a time
    (so the peak memory is that of one batch, as in the reference)."""
    model.eval()
    loss_sum = correct = total = 0.0
    for idx in batches:
        logits = model(inputs[idx])
        labels = targets[idx]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        total += labels.shape[0]
    model.train()
    return loss_sum / total, correct / total


def sampled_batches(n, gen, device, count=None):
    """`count` (default EVAL_BATCHES) batches of BATCH_SIZE indices drawn with replacement."""
    for _ in range(EVAL_BATCHES if count is None else count):
        yield torch.randint(0, n, (BATCH_SIZE,), generator=gen).to(device)


def full_batches(n, device):
    """The whole set once, in order, in batches of BATCH_SIZE."""
    for start in range(0, n, BATCH_SIZE):
        yield torch.arange(start, min(start + BATCH_SIZE, n), device=device)


def warmup_factor(step):
    """LR multiplier before optimiser update `step` (0-based): a ramp from 0, as the reference."""
    return min(step / WARMUP_STEPS, 1.0)


def train_one(dataset, seed, device):
    torch.manual_seed(seed)
    (x_tr, y_tr), (x_va, y_va), vocab, n_out = make_split(dataset, seed)
    x_tr, y_tr, x_va, y_va = (t.to(device) for t in (x_tr, y_tr, x_va, y_va))
    model = Transformer(NUM_LAYERS, DIM_MODEL, NUM_HEADS, vocab, n_out, seq_len=4).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=BETAS,
                            weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_factor)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # Validation draws have their own stream: changing the eval size never changes training.
    eval_gen = torch.Generator(device="cpu").manual_seed(10_000 + seed)

    train_log, val_log, complexity_log = [], [], []
    step_val_acc_99 = NUM_UPDATES
    n_train, n_val = x_tr.shape[0], x_va.shape[0]
    run_loss = run_acc = 0.0
    t0 = time.time()
    for step in range(1, NUM_UPDATES + 1):
        idx = torch.randint(0, n_train, (BATCH_SIZE,), generator=gen).to(device)
        logits = model(x_tr[idx])
        loss = F.cross_entropy(logits, y_tr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item()
        run_acc += (logits.argmax(-1) == y_tr[idx]).float().mean().item()
        if step % EVAL_EVERY == 0 or step == NUM_UPDATES:
            n = EVAL_EVERY if step % EVAL_EVERY == 0 else step % EVAL_EVERY
            train_log.append({"step": step, "loss": run_loss / n, "acc": run_acc / n})
            run_loss = run_acc = 0.0
            val_loss, val_acc = evaluate(model, x_va, y_va, sampled_batches(n_val, eval_gen, device))
            val_log.append({"step": step, "loss": val_loss, "acc": val_acc})
            if val_acc > 0.99 and step_val_acc_99 == NUM_UPDATES:
                step_val_acc_99 = step
        if step % COMPLEXITY_EVERY == 0 or step == NUM_UPDATES:
            size, norm = weight_complexity(model)
            complexity_log.append({"step": step, "compressed_bytes": size, "weight_norm": norm})
        if step % LOG_EVERY == 0 or step == NUM_UPDATES:
            v = val_log[-1]
            print(f"[{dataset} seed={seed}] step {step}/{NUM_UPDATES} "
                  f"train_loss={train_log[-1]['loss']:.4f} train_acc={train_log[-1]['acc']:.3f} "
                  f"val_loss={v['loss']:.4f} val_acc={v['acc']:.3f} "
                  f"({step / (time.time() - t0):.1f} updates/s)", flush=True)

    # Final metrics as the reference reports them: the last running averages.
    full_val_loss, full_val_acc = evaluate(model, x_va, y_va, full_batches(n_val, device))
    final = {
        "final_train_loss": train_log[-1]["loss"],
        "final_val_loss": val_log[-1]["loss"],
        "final_train_acc": train_log[-1]["acc"],
        "final_val_acc": val_log[-1]["acc"],
        "step_val_acc_99": step_val_acc_99,
        "full_val_loss": full_val_loss,
        "full_val_acc": full_val_acc,
        "final_compressed_bytes": complexity_log[-1]["compressed_bytes"],
        "train_time_s": time.time() - t0,
    }
    return final, {"train": train_log, "val": val_log, "complexity": complexity_log}


def summarise(finals):
    """{"means", "stderrs", "final_info_dict"} with stderr = std / sqrt(n)."""
    per_seed = {k: [f[k] for f in finals] for k in finals[0]}
    means = {k: float(np.mean(v)) for k, v in per_seed.items()}
    stderrs = {k: float(np.std(v) / math.sqrt(len(v))) for k, v in per_seed.items()}
    return {"means": means, "stderrs": stderrs, "final_info_dict": per_seed}


def main():
    parser = argparse.ArgumentParser(description="Grokking on algorithmic datasets")
    parser.add_argument("--out_dir", type=str, default="run_0")
    parser.add_argument("--datasets", type=str, default=",".join(DATASETS),
                        help="comma-separated subset of the datasets (default: all)")
    parser.add_argument("--seeds", type=str, default=",".join(map(str, SEEDS)),
                        help="comma-separated seeds (default: the reference's 3 seeds)")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    os.makedirs(args.out_dir, exist_ok=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # Small matrices: extra threads mostly add synchronisation, and on a shared
        # machine they oversubscribe the cores; smoke runs use one thread.
        default_threads = 1 if SMOKE else min(4, os.cpu_count() or 1)
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or default_threads)))
    print(f"device={device} smoke={SMOKE} updates={NUM_UPDATES} seeds={seeds} "
          f"threads={torch.get_num_threads()}", flush=True)

    final_info, all_results = {}, {}
    for dataset in datasets:
        finals = []
        for seed in seeds:
            final, logs = train_one(dataset, seed, device)
            finals.append(final)
            all_results[f"{dataset}_{seed}"] = {"final_info": final, **logs}
        final_info[dataset] = summarise(finals)
        m = final_info[dataset]["means"]
        print(f"[{dataset}] final_val_acc={m['final_val_acc']:.4f} "
              f"step_val_acc_99={m['step_val_acc_99']:.0f}", flush=True)

    with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
        json.dump(final_info, f, indent=2)
    with open(os.path.join(args.out_dir, "all_results.json"), "w") as f:
        json.dump(all_results, f)


if __name__ == "__main__":
    main()
