"""Plots for the diffusion_2d template: run with no arguments in the idea directory.

Reads every run_* folder and writes the training-loss curves (mean +- stderr over
seeds), a grid of generated samples (runs x datasets) and a bar chart of the k-NN KL
divergence per dataset.
"""

import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

# Runs to plot and their legend names; runs not listed here are added with their
# folder name. Edit this mapping to name the runs after what changed in them.
labels = {
    "run_0": "Baseline",
}


def run_order(path):
    tail = path.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 10**9


def discover_runs():
    runs = {}
    for path in sorted(glob.glob("run_*"), key=run_order):
        if os.path.isfile(os.path.join(path, "all_results.json")):
            runs[path] = labels.get(path, path)
    return runs


def load(run):
    with open(os.path.join(run, "all_results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run, "final_info.json")) as f:
        final = json.load(f)
    return results, final


def datasets_of(loaded):
    names = []
    for _, final in loaded.values():
        for ds in final:
            if ds not in names:
                names.append(ds)
    return names


def smooth(values, window=20):
    if len(values) < window:
        return np.asarray(values)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_losses(loaded, runs, datasets):
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for run, (results, _) in loaded.items():
            series = [r["train"] for name, r in results.items() if name.rsplit("_", 1)[0] == ds]
            if not series:
                continue
            n = min(len(s) for s in series)
            steps = np.array([e["step"] for e in series[0][:n]])
            vals = np.array([smooth([e["loss"] for e in s[:n]]) for s in series])
            steps = steps[len(steps) - vals.shape[1]:]
            mean = vals.mean(0)
            se = vals.std(0) / np.sqrt(vals.shape[0])
            ax.plot(steps, mean, label=runs[run])
            ax.fill_between(steps, mean - se, mean + se, alpha=0.25)
        ax.set_title(f"Training loss ({ds})")
        ax.set_xlabel("Training step")
        ax.set_ylabel("MSE loss (smoothed)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig("train_loss.png", dpi=110)
    plt.close(fig)


def plot_samples(loaded, runs, datasets):
    fig, axes = plt.subplots(len(loaded), len(datasets), figsize=(3.2 * len(datasets), 3.2 * len(loaded)),
                             squeeze=False)
    for i, run in enumerate(loaded):
        for j, ds in enumerate(datasets):
            ax = axes[i][j]
            files = sorted(glob.glob(os.path.join(run, f"samples_{ds}_*.npy")))
            if files:
                pts = np.load(files[0])
                ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            ax.set_title(f"{runs[run]}: {ds}", fontsize=9)
            ax.set_xlim(-6, 6)
            ax.set_ylim(-6, 6)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig("generated_samples.png", dpi=110)
    plt.close(fig)


def plot_kl(loaded, runs, datasets):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(loaded))
    x = np.arange(len(datasets))
    for i, (run, (_, final)) in enumerate(loaded.items()):
        means = [final.get(ds, {}).get("means", {}).get("kl_divergence", np.nan) for ds in datasets]
        errs = [final.get(ds, {}).get("stderrs", {}).get("kl_divergence", 0.0) for ds in datasets]
        ax.bar(x + i * width, means, width, yerr=errs, capsize=3, label=runs[run])
    ax.set_xticks(x + width * (len(loaded) - 1) / 2)
    ax.set_xticklabels(datasets)
    ax.set_ylabel("KL(real || generated), k-NN estimate (bits)")
    ax.set_title("Sample quality per dataset (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig("kl_divergence.png", dpi=110)
    plt.close(fig)


def main():
    runs = discover_runs()
    if not runs:
        raise SystemExit("plot.py: no run_*/all_results.json found; run experiment.py first")
    loaded = {run: load(run) for run in runs}
    datasets = datasets_of(loaded)
    plot_losses(loaded, runs, datasets)
    plot_samples(loaded, runs, datasets)
    plot_kl(loaded, runs, datasets)
    print(f"plot.py: wrote figures for {len(runs)} run(s) and {len(datasets)} dataset(s)")


if __name__ == "__main__":
    main()
