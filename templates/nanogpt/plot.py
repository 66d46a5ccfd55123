"""Plots for the nanogpt template: run with no arguments in the idea directory.

Reads every run_*/all_results.json and writes, per dataset, the training loss and the
validation loss over iterations (mean +- stderr over seeds) and a bar chart of the
best validation loss.
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
        return json.load(f)


def datasets_of(all_runs):
    names = []
    for results in all_runs.values():
        for name in results:
            ds = name.rsplit("_", 1)[0]
            if ds not in names:
                names.append(ds)
    return names


def series(results, dataset, log, key):
    runs = [r[log] for name, r in results.items() if name.rsplit("_", 1)[0] == dataset]
    if not runs:
        return None
    n = min(len(s) for s in runs)
    steps = np.array([e["iter"] for e in runs[0][:n]])
    vals = np.array([[e[key] for e in s[:n]] for s in runs])
    return steps, vals.mean(0), vals.std(0) / np.sqrt(vals.shape[0])


def plot_curve(all_runs, runs, dataset, log, key, ylabel, filename):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, results in all_runs.items():
        s = series(results, dataset, log, key)
        if s is None:
            continue
        steps, mean, se = s
        ax.plot(steps, mean, label=runs[run])
        ax.fill_between(steps, mean - se, mean + se, alpha=0.25)
    ax.set_title(f"{ylabel} ({dataset})")
    ax.set_xlabel("Iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)


def plot_best_val(all_runs, runs, datasets):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(1, len(all_runs))
    x = np.arange(len(datasets))
    for i, (run, results) in enumerate(all_runs.items()):
        means, errs = [], []
        for ds in datasets:
            vals = [r["final_info"]["best_val_loss"] for n, r in results.items()
                    if n.rsplit("_", 1)[0] == ds]
            means.append(np.mean(vals) if vals else np.nan)
            errs.append(np.std(vals) / np.sqrt(len(vals)) if vals else 0.0)
        ax.bar(x + i * width, means, width, yerr=errs, capsize=3, label=runs[run])
    ax.set_xticks(x + width * (len(all_runs) - 1) / 2)
    ax.set_xticklabels(datasets)
    ax.set_ylabel("Best validation loss (nats/char)")
    ax.set_title("Best validation loss per dataset (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig("best_val_loss.png", dpi=120)
    plt.close(fig)


def main():
    runs = discover_runs()
    if not runs:
        raise SystemExit("plot.py: no run_*/all_results.json found; run experiment.py first")
    all_runs = {run: load(run) for run in runs}
    datasets = datasets_of(all_runs)
    for ds in datasets:
        plot_curve(all_runs, runs, ds, "train", "loss", "Training loss", f"train_loss_{ds}.png")
        plot_curve(all_runs, runs, ds, "val", "val_loss", "Validation loss", f"val_loss_{ds}.png")
    plot_best_val(all_runs, runs, datasets)
    print(f"plot.py: wrote figures for {len(runs)} run(s) and {len(datasets)} dataset(s)")


if __name__ == "__main__":
    main()
