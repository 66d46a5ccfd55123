"""Character-level GPT language modelling (after Karpathy's nanoGPT).

Trains a 6-layer, 6-head, 384-wide GPT with a 256-character context on
shakespeare_char (bundled, works offline) and on enwik8 / text8 when prepare.py has
built their data. Reports the best validation loss, final training loss, training
time and generation speed.

The model classes are importable without training (training only runs under
``__main__``): the engine's causality check builds a small model from this file and
verifies that no position sees future tokens.

Metrics as the reference system's template defines them: iterations 0..max_iters
inclusive (5001 optimiser steps for shakespeare_char), best_val_loss = the lowest of the
200-batch validation estimates made every 250 iterations, final_train_loss = the loss of
the last logged training minibatch (iteration max_iters), and the generation speed over
10 samples of 500 characters started from " ". Extra, aisci-only metric:
final_train_loss_est (the 200-batch eval-mode estimate on the training split at the end).

Usage: python experiment.py --out_dir run_0
Smoke mode (a tiny model and a few iterations, same code path and outputs): AISCI_SMOKE=1
Work size (full-run defaults in template.toml [work_size]): AISCI_WORK_STEPS (iterations
of every dataset), AISCI_WORK_SEEDS (seeds per dataset), AISCI_WORK_EVAL (batches per
loss estimate).
"""

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import prepare
import torch
import torch.nn as nn
import torch.nn.functional as F

SMOKE = os.environ.get("AISCI_SMOKE", "") not in ("", "0")


def work_size(key):
    """A work-size knob AISCI_WORK_<KEY> (a positive integer), None when unset."""
    raw = os.environ.get(f"AISCI_WORK_{key}", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"AISCI_WORK_{key}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise SystemExit(f"AISCI_WORK_{key}={raw!r}: expected a positive integer")
    return value



# ---------------------------------------------------------------- model
@dataclass
class GPTConfig:
    block_size: int = 256
    vocab_size: int = 65
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.2
    bias: bool = False


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        # Residual projections get a smaller init (GPT-2), scaled by depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        """Logits for every position (b, t, vocab) and, with targets, the mean loss."""
        t = idx.shape[1]
        assert t <= self.config.block_size, f"sequence of {t} exceeds block size"
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=0.8, top_k=200, generator=None):
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.config.block_size:]
            logits = self(ctx)[0][:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), num_samples=1, generator=generator).to(idx.device)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


# ---------------------------------------------------------------- training setup
# Per-dataset run settings (the reference's: 3 seeds and 5000 iterations on
# shakespeare_char; one seed and 100k iterations on the larger corpora).
DATASET_RUNS = {
    "shakespeare_char": {"seeds": [0, 1, 2], "max_iters": 5000},
    "enwik8": {"seeds": [0], "max_iters": 100_000},
    "text8": {"seeds": [0], "max_iters": 100_000},
}
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
MIN_LR = 1e-4
WARMUP_ITERS = 100
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.99)
GRAD_CLIP = 1.0
EVAL_INTERVAL = 250
EVAL_ITERS = 200
LOG_INTERVAL = 10
GEN_SAMPLES = 10
GEN_TOKENS = 500
GEN_START = " "
MODEL = GPTConfig()

if SMOKE:
    # Same code path, tiny everything: seconds on a laptop CPU.
    DATASET_RUNS = {"shakespeare_char": {"seeds": [0], "max_iters": 50}}
    MODEL = GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    BATCH_SIZE = 8
    WARMUP_ITERS = 5
    EVAL_INTERVAL = 10
    EVAL_ITERS = 4
    LOG_INTERVAL = 5
    GEN_SAMPLES = 1
    GEN_TOKENS = 32

if work_size("STEPS"):
    DATASET_RUNS = {d: {**r, "max_iters": work_size("STEPS")} for d, r in DATASET_RUNS.items()}
if work_size("SEEDS"):
    DATASET_RUNS = {d: {**r, "seeds": list(range(work_size("SEEDS")))} for d, r in DATASET_RUNS.items()}
if work_size("EVAL"):
    EVAL_ITERS = work_size("EVAL")


def lr_at(it, max_iters):
    """Linear warm-up from 0, then cosine decay from LEARNING_RATE to MIN_LR at max_iters."""
    if it < WARMUP_ITERS:
        return LEARNING_RATE * it / WARMUP_ITERS
    if it > max_iters:
        return MIN_LR
    ratio = min(1.0, (it - WARMUP_ITERS) / max(1, max_iters - WARMUP_ITERS))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LEARNING_RATE - MIN_LR)


def load_split(dataset, split):
    path = os.path.join(prepare.DATA_DIR, dataset, f"{split}.bin")
    return np.memmap(path, dtype=np.uint16, mode="r")


def get_batch(data, block, gen, device):
    ix = torch.randint(len(data) - block, (BATCH_SIZE,), generator=gen).tolist()
    x = torch.from_numpy(np.stack([data[i:i + block].astype(np.int64) for i in ix]))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block].astype(np.int64) for i in ix]))
    return x.to(device), y.to(device)


def train_one(dataset, seed, max_iters, device, autocast):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, val = load_split(dataset, "train"), load_split(dataset, "val")
    with open(os.path.join(prepare.DATA_DIR, dataset, "meta.json")) as f:
        meta = json.load(f)
    vocab = meta["vocab_size"]
    stoi = {c: i for i, c in enumerate(meta["itos"])}
    config = GPTConfig(**{**MODEL.__dict__, "vocab_size": vocab})
    model = GPT(config).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LEARNING_RATE, betas=BETAS)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)
    ctx = torch.autocast("cuda", dtype=autocast) if autocast else nullcontext()

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {}
        for split, data in (("train", train), ("val", val)):
            losses = []
            for _ in range(EVAL_ITERS):
                x, y = get_batch(data, config.block_size, gen, device)
                with ctx:
                    losses.append(model(x, y)[1].item())
            out[split] = float(np.mean(losses))
        model.train()
        return out

    train_log, val_log = [], []
    best_val = float("inf")
    last_train_loss = float("nan")
    t0 = time.time()
    # Iterations 0..max_iters inclusive, each one an optimiser step (as the reference).
    for it in range(max_iters + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(it, max_iters)
        if it % EVAL_INTERVAL == 0 or it == max_iters:
            losses = estimate_loss()
            val_log.append({"iter": it, "train_loss": losses["train"], "val_loss": losses["val"]})
            best_val = min(best_val, losses["val"])
            print(f"[{dataset} seed={seed}] iter {it}/{max_iters} train_loss={losses['train']:.4f} "
                  f"val_loss={losses['val']:.4f} ({time.time() - t0:.0f}s)", flush=True)
        x, y = get_batch(train, config.block_size, gen, device)
        with ctx:
            loss = model(x, y)[1]
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if it % LOG_INTERVAL == 0 or it == max_iters:
            last_train_loss = loss.item()
            train_log.append({"iter": it, "loss": last_train_loss})
    total_train_time = time.time() - t0

    # Generation speed: sampled characters per second, averaged over the samples.
    model.eval()
    speeds, samples = [], []
    start_ids = [stoi.get(c, 0) for c in GEN_START]
    for _ in range(GEN_SAMPLES):
        start = torch.tensor([start_ids], dtype=torch.long, device=device)
        t1 = time.time()
        with ctx:
            out = model.generate(start, GEN_TOKENS, generator=gen)
        speeds.append(GEN_TOKENS / (time.time() - t1))
        samples.append("".join(meta["itos"][i] for i in out[0].tolist()))
    final = {
        "best_val_loss": best_val,
        # The reference reports the loss of the last logged training minibatch.
        "final_train_loss": last_train_loss,
        "final_train_loss_est": val_log[-1]["train_loss"],
        "total_train_time": total_train_time,
        "avg_inference_tokens_per_second": float(np.mean(speeds)),
    }
    return final, {"train": train_log, "val": val_log, "samples": samples}


def summarise(finals):
    """{"means", "stderrs", "final_info_dict"} with stderr = std / sqrt(n)."""
    per_seed = {k: [f[k] for f in finals] for k in finals[0]}
    means = {k: float(np.mean(v)) for k, v in per_seed.items()}
    stderrs = {k: float(np.std(v) / math.sqrt(len(v))) for k, v in per_seed.items()}
    return {"means": means, "stderrs": stderrs, "final_info_dict": per_seed}


def main():
    parser = argparse.ArgumentParser(description="Character-level GPT")
    parser.add_argument("--out_dir", type=str, default="run_0")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    autocast = None
    if device == "cuda":
        autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        default_threads = 1 if SMOKE else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or default_threads)))
    print(f"device={device} autocast={autocast} smoke={SMOKE}", flush=True)

    if not prepare.is_prepared("shakespeare_char"):
        prepare.prepare_shakespeare()
    final_info, all_results = {}, {}
    for dataset, run in DATASET_RUNS.items():
        if not prepare.is_prepared(dataset):
            print(f"[{dataset}] skipped: not prepared (run `python prepare.py {dataset}`)", flush=True)
            continue
        finals = []
        for seed in run["seeds"]:
            final, logs = train_one(dataset, seed, run["max_iters"], device, autocast)
            finals.append(final)
            all_results[f"{dataset}_{seed}"] = {"final_info": final, **logs}
        final_info[dataset] = summarise(finals)

    with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
        json.dump(final_info, f, indent=2)
    with open(os.path.join(args.out_dir, "all_results.json"), "w") as f:
        json.dump(all_results, f)


if __name__ == "__main__":
    main()
