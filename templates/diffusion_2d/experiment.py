"""DDPM on 2-D point clouds (Ho et al. 2020), after the tiny-diffusion setup.

An MLP denoiser with sinusoidal embeddings learns four 2-D distributions (circle,
Datasaurus dino, line, two moons). After training, 10,000 points are sampled with the
EMA weights and compared to the data with a k-nearest-neighbour (k=5) estimate of
KL(real || generated) in bits, under the max-norm, against all real points: the same
definition as the reference system's template, so the numbers are comparable.

Usage: python experiment.py --out_dir run_0
Smoke mode (a few steps, small data, same code path and outputs): AISCI_SMOKE=1
Work size (full-run defaults in template.toml [work_size]): AISCI_WORK_STEPS (training
steps), AISCI_WORK_SEEDS (seeds per dataset), AISCI_WORK_EVAL (generated samples).
"""

import argparse
import copy
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.spatial import cKDTree

SMOKE = os.environ.get("AISCI_SMOKE", "") not in ("", "0")
HERE = os.path.dirname(os.path.abspath(__file__))


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
NUM_POINTS = 2_000 if SMOKE else 100_000
NUM_TIMESTEPS = 100
BETA_START, BETA_END = 1e-4, 0.02
EMBEDDING_DIM = 128
HIDDEN_SIZE = 256
HIDDEN_LAYERS = 3
TRAIN_STEPS = work_size("STEPS", 10_000, 60)
TRAIN_BATCH_SIZE = 256
NUM_EVAL_SAMPLES = work_size("EVAL", 10_000, 500)
LEARNING_RATE = 3e-4
GRAD_CLIP = 0.5
# EMA as in the reference (ema_pytorch defaults it uses): every 10th update; copies the
# model up to update 100, then decay 1 - (1 + e)^(-2/3) with e = update - 101, capped at 0.995.
EMA_DECAY = 0.995
EMA_EVERY = 10
EMA_UPDATE_AFTER = 100
EMA_POWER = 2 / 3
KNN_K = 5
LOG_EVERY = 30 if SMOKE else 1000
SEEDS = list(range(work_size("SEEDS", 1, 1)))
DATASETS = ["circle", "dino", "line", "moons"]


# ---------------------------------------------------------------- datasets
def make_dataset(name, n, seed=42):
    """n points of a 2-D distribution, roughly centred with spread of a few units."""
    rng = np.random.default_rng(seed)
    if name == "circle":
        # Points snapped to a coarse grid, projected onto the unit circle, then jittered.
        x = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
        y = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
        r = np.sqrt(x ** 2 + y ** 2) + 1e-10
        theta = 2 * np.pi * rng.uniform(0, 1, n)
        jitter = rng.uniform(0, 0.03, n)
        pts = np.stack([x / r + jitter * np.cos(theta), y / r + jitter * np.sin(theta)], 1) * 3
    elif name == "dino":
        # The 142 points of the Datasaurus "dino", resampled with Gaussian noise.
        raw = np.loadtxt(os.path.join(HERE, "data", "datasaurus_dino.tsv"), delimiter="\t",
                         skiprows=1, usecols=(1, 2))
        idx = rng.integers(0, len(raw), n)
        x = raw[idx, 0] + rng.normal(size=n) * 0.15
        y = raw[idx, 1] + rng.normal(size=n) * 0.15
        pts = np.stack([(x / 54 - 1) * 4, (y / 48 - 1) * 4], 1)
    elif name == "line":
        pts = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-1, 1, n)], 1) * 4
    elif name == "moons":
        # Two interleaving half circles with small Gaussian noise (no sklearn needed).
        n_out = n // 2
        t_out = np.linspace(0, np.pi, n_out)
        t_in = np.linspace(0, np.pi, n - n_out)
        outer = np.stack([np.cos(t_out), np.sin(t_out)], 1)
        inner = np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)
        pts = np.concatenate([outer, inner]) + rng.normal(scale=0.03, size=(n, 2))
        pts = rng.permutation(pts)
        pts = np.stack([(pts[:, 0] + 0.3) * 2 - 1, (pts[:, 1] + 0.3) * 3 - 1], 1)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return torch.tensor(pts, dtype=torch.float32)


# ---------------------------------------------------------------- model
class SinusoidalEmbedding(nn.Module):
    def __init__(self, size, scale=1.0):
        super().__init__()
        half = size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs)
        self.scale = scale

    def forward(self, x):
        arg = (x * self.scale).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ff = nn.Linear(width, width)

    def forward(self, x):
        return x + self.ff(F.relu(x))


class MLPDenoiser(nn.Module):
    """Predicts the noise added to a point, from the point and the timestep."""

    def __init__(self, embedding_dim=EMBEDDING_DIM, hidden=HIDDEN_SIZE, layers=HIDDEN_LAYERS):
        super().__init__()
        # Coordinates use a larger scale so small distances get distinct embeddings.
        self.emb_x = SinusoidalEmbedding(embedding_dim, scale=25.0)
        self.emb_y = SinusoidalEmbedding(embedding_dim, scale=25.0)
        self.emb_t = SinusoidalEmbedding(embedding_dim)
        self.net = nn.Sequential(
            nn.Linear(3 * embedding_dim, hidden),
            *[ResidualBlock(hidden) for _ in range(layers)],
            nn.ReLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x, t):
        h = torch.cat([self.emb_x(x[:, 0]), self.emb_y(x[:, 1]), self.emb_t(t.float())], dim=-1)
        return self.net(h)


class NoiseScheduler:
    """Linear-beta DDPM forward process and ancestral sampling step."""

    def __init__(self, num_timesteps=NUM_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                 device="cpu"):
        self.num_timesteps = num_timesteps
        self.betas = torch.linspace(beta_start, beta_end, num_timesteps, device=device)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        prev = F.pad(self.alphas_cumprod[:-1], (1, 0), value=1.0)
        self.sqrt_ab = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_ab = (1 - self.alphas_cumprod).sqrt()
        self.sqrt_inv_ab = (1 / self.alphas_cumprod).sqrt()
        self.sqrt_inv_ab_m1 = (1 / self.alphas_cumprod - 1).sqrt()
        self.coef_x0 = self.betas * prev.sqrt() / (1 - self.alphas_cumprod)
        self.coef_xt = (1 - prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)
        self.variance = (self.betas * (1 - prev) / (1 - self.alphas_cumprod)).clamp(min=1e-20)

    def add_noise(self, x0, noise, t):
        return self.sqrt_ab[t, None] * x0 + self.sqrt_one_minus_ab[t, None] * noise

    def step(self, eps, t, xt, generator):
        x0 = self.sqrt_inv_ab[t] * xt - self.sqrt_inv_ab_m1[t] * eps
        mean = self.coef_x0[t] * x0 + self.coef_xt[t] * xt
        if t == 0:
            return mean
        z = torch.randn(xt.shape, generator=generator, device="cpu").to(xt.device)
        return mean + self.variance[t].sqrt() * z


# ---------------------------------------------------------------- metric
def knn_kl_divergence(real, generated, k=KNN_K):
    """k-NN estimate of KL(real || generated) in bits (Wang, Kulkarni & Verdu 2009).

    Max-norm (Chebyshev) distances; rho = distance from each real point to its k-th
    nearest OTHER real point, nu = to its k-th nearest generated point:
    KL = (log m - log(n - 1) + d * (mean log nu - mean log rho)) / log 2.
    """
    real = np.asarray(real, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"expected two (n, d) arrays of the same d, got {real.shape} and {generated.shape}")
    n, d = real.shape
    m = generated.shape[0]
    if not (k < n and k <= m):
        raise ValueError(f"k={k} needs more than k real points and at least k samples (n={n}, m={m})")
    # k+1 neighbours within the real set: the first one is the point itself.
    rho = cKDTree(real).query(real, k=k + 1, p=np.inf)[0][:, k]
    nu = cKDTree(generated).query(real, k=[k], p=np.inf)[0][:, 0]
    # Exact duplicates would give log(0) (the reference returns -inf/nan there).
    tiny = 1e-300
    log_rho = np.log(np.maximum(rho, tiny))
    log_nu = np.log(np.maximum(nu, tiny))
    nats = math.log(m) - math.log(n - 1) + d * (log_nu.mean() - log_rho.mean())
    return float(nats / math.log(2))


def ema_decay(update):
    """EMA decay at optimiser update number `update` (0-based), None = copy the model."""
    if update <= EMA_UPDATE_AFTER:
        return None
    epoch = max(update - EMA_UPDATE_AFTER - 1, 0)
    if epoch <= 0:
        return 0.0
    return min(max(1 - (1 + epoch) ** -EMA_POWER, 0.0), EMA_DECAY)


def shuffled_batches(n, batch_size, gen, device):
    """Endless shuffled passes over range(n) in batches (the last one of a pass may be short)."""
    while True:
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            yield perm[start:start + batch_size]


# ---------------------------------------------------------------- training
def update_ema(ema, model, update, state):
    """One EMA update after optimiser update `update` (0-based), as the reference does it."""
    if update % EMA_EVERY != 0:
        return
    decay = ema_decay(update)
    with torch.no_grad():
        if decay is None or not state["started"]:
            # Warm-up, and the first update after it: the EMA is a copy of the model.
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.copy_(p)
            state["started"] = decay is not None
            if decay is None:
                return
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)


def train_one(dataset, seed, device):
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    data = make_dataset(dataset, NUM_POINTS).to(device)
    model = MLPDenoiser().to(device)
    ema = copy.deepcopy(model).eval()
    ema_state = {"started": False}
    sched = NoiseScheduler(device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=TRAIN_STEPS)

    train_log = []
    batches = shuffled_batches(data.shape[0], TRAIN_BATCH_SIZE, gen, device)
    model.train()
    t0 = time.time()
    for step in range(1, TRAIN_STEPS + 1):
        x0 = data[next(batches)]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, NUM_TIMESTEPS, (x0.shape[0],), generator=gen).to(device)
        loss = F.mse_loss(model(sched.add_noise(x0, noise, t), t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        update_ema(ema, model, step - 1, ema_state)
        lr_sched.step()
        if step % 10 == 0 or step == TRAIN_STEPS:
            train_log.append({"step": step, "loss": loss.item()})
        if step % LOG_EVERY == 0 or step == TRAIN_STEPS:
            print(f"[{dataset} seed={seed}] step {step}/{TRAIN_STEPS} loss={loss.item():.4f} "
                  f"({step / (time.time() - t0):.1f} steps/s)", flush=True)
    training_time = time.time() - t0

    model.eval()
    with torch.no_grad():
        # Evaluation loss of the RAW model (as the reference): the mean of per-batch MSEs
        # over one shuffled pass of the whole dataset in training-size batches.
        losses = []
        perm = torch.randperm(data.shape[0], generator=gen).to(device)
        for start in range(0, data.shape[0], TRAIN_BATCH_SIZE):
            x0 = data[perm[start:start + TRAIN_BATCH_SIZE]]
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, NUM_TIMESTEPS, (x0.shape[0],), generator=gen).to(device)
            losses.append(F.mse_loss(model(sched.add_noise(x0, noise, t), t), noise).item())
        eval_loss = float(np.mean(losses))

        # Sampling with the EMA weights.
        t1 = time.time()
        sample = torch.randn((NUM_EVAL_SAMPLES, 2), generator=gen).to(device)
        for step_t in reversed(range(NUM_TIMESTEPS)):
            t = torch.full((NUM_EVAL_SAMPLES,), step_t, dtype=torch.long, device=device)
            sample = sched.step(ema(sample, t), step_t, sample, gen)
        samples = sample.cpu().numpy()
        inference_time = time.time() - t1

    # KL(real || generated) in bits against ALL real points, as the reference.
    kl = knn_kl_divergence(data.cpu().numpy(), samples)
    final = {"training_time": training_time, "eval_loss": eval_loss,
             "inference_time": inference_time, "kl_divergence": kl}
    print(f"[{dataset} seed={seed}] eval_loss={eval_loss:.4f} kl_divergence={kl:.4f} bits "
          f"training_time={training_time:.1f}s inference_time={inference_time:.2f}s", flush=True)
    return final, {"train": train_log}, samples


def summarise(finals):
    """{"means", "stderrs", "final_info_dict"} with stderr = std / sqrt(n)."""
    per_seed = {k: [f[k] for f in finals] for k in finals[0]}
    means = {k: float(np.mean(v)) for k, v in per_seed.items()}
    stderrs = {k: float(np.std(v) / math.sqrt(len(v))) for k, v in per_seed.items()}
    return {"means": means, "stderrs": stderrs, "final_info_dict": per_seed}


def main():
    parser = argparse.ArgumentParser(description="DDPM on 2-D point clouds")
    parser.add_argument("--out_dir", type=str, default="run_0")
    parser.add_argument("--datasets", type=str, default=",".join(DATASETS),
                        help="comma-separated subset of the datasets (default: all)")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    datasets = [d for d in args.datasets.split(",") if d]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # Small matrices: extra threads mostly add synchronisation, and on a shared
        # machine they oversubscribe the cores; smoke runs use one thread.
        default_threads = 1 if SMOKE else min(4, os.cpu_count() or 1)
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or default_threads)))
    print(f"device={device} smoke={SMOKE} steps={TRAIN_STEPS} points={NUM_POINTS}", flush=True)

    final_info, all_results = {}, {}
    for dataset in datasets:
        finals = []
        for seed in SEEDS:
            final, logs, samples = train_one(dataset, seed, device)
            finals.append(final)
            all_results[f"{dataset}_{seed}"] = {"final_info": final, **logs}
            np.save(os.path.join(args.out_dir, f"samples_{dataset}_{seed}.npy"), samples)
        final_info[dataset] = summarise(finals)

    with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
        json.dump(final_info, f, indent=2)
    with open(os.path.join(args.out_dir, "all_results.json"), "w") as f:
        json.dump(all_results, f)


if __name__ == "__main__":
    main()
