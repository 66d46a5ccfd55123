"""Plots for the grokking template: run with no arguments in the idea directory.

Reads every run_*/all_results.json and writes, per dataset, training/validation
loss and accuracy curves and the weight-complexity curve (mean +- stderr over seeds),
plus a bar chart of the step at which validation accuracy first exceeds 99%.
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


def discover_runs():
    runs = {}
    for path in sorted(glob.glob("run_*"), key=lambda p: int(p.split("_")[-1]) if p.split("_")[-1].isdigit() else 10**9):
        if os.path.isfile(os.path.join(path, "all_results.json")):
            runs[path] = labels.get(path, path)
    return runs


def load(run):
    with open(os.path.join(run, "all_results.json")) as f:
        return json.load(f)


def curves(results, dataset, log, key):
    """steps, mean, stderr of one logged quantity across the seeds of a dataset."""
    series = [r[log] for name, r in results.items() if name.rsplit("_", 1)[0] == dataset]
    if not series:
        return None
    n = min(len(s) for s in series)
    steps = np.array([e["step"] for e in series[0][:n]])
    values = np.array([[e[key] for e in s[:n]] for s in series])
    mean = values.mean(axis=0)
    stderr = values.std(axis=0) / np.sqrt(values.shape[0])
    return steps, mean, stderr


def datasets_of(all_runs):
    names = []
    for results in all_runs.values():
        for name in results:
            ds = name.rsplit("_", 1)[0]
            if ds not in names:
                names.append(ds)
    return names


def plot_metric(all_runs, runs, dataset, log, key, ylabel, filename, logy=False):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for run, results in all_runs.items():
        c = curves(results, dataset, log, key)
        if c is None:
            continue
        steps, mean, se = c
        ax.plot(steps, mean, label=runs[run])
        ax.fill_between(steps, mean - se, mean + se, alpha=0.25)
        drawn = True
    if not drawn:
        plt.close(fig)
        return
    ax.set_title(f"{ylabel} ({dataset})")
    ax.set_xlabel("Update step")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)


def plot_grokking_steps(all_runs, runs, datasets):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(all_runs))
    x = np.arange(len(datasets))
    for i, (run, results) in enumerate(all_runs.items()):
        means, errs = [], []
        for ds in datasets:
            vals = [r["final_info"]["step_val_acc_99"] for n, r in results.items()
                    if n.rsplit("_", 1)[0] == ds]
            means.append(np.mean(vals) if vals else np.nan)
            errs.append(np.std(vals) / np.sqrt(len(vals)) if vals else 0.0)
        ax.bar(x + i * width, means, width, yerr=errs, capsize=3, label=runs[run])
    ax.set_xticks(x + width * (len(all_runs) - 1) / 2)
    ax.set_xticklabels(datasets)
    ax.set_ylabel("First step with val. accuracy > 99%")
    ax.set_title("Steps to generalise (lower is faster; max = never)")
    ax.legend()
    fig.tight_layout()
    fig.savefig("steps_to_val_acc_99.png", dpi=120)
    plt.close(fig)


def main():
    runs = discover_runs()
    if not runs:
        raise SystemExit("plot.py: no run_*/all_results.json found; run experiment.py first")
    all_runs = {run: load(run) for run in runs}
    datasets = datasets_of(all_runs)
    for ds in datasets:
        plot_metric(all_runs, runs, ds, "train", "loss", "Training loss", f"train_loss_{ds}.png", logy=True)
        plot_metric(all_runs, runs, ds, "val", "loss", "Validation loss", f"val_loss_{ds}.png", logy=True)
        plot_metric(all_runs, runs, ds, "train", "acc", "Training accuracy", f"train_acc_{ds}.png")
        plot_metric(all_runs, runs, ds, "val", "acc", "Validation accuracy", f"val_acc_{ds}.png")
        plot_metric(all_runs, runs, ds, "complexity", "compressed_bytes",
                    "Compressed weight size (bytes)", f"complexity_{ds}.png")
    plot_grokking_steps(all_runs, runs, datasets)
    print(f"plot.py: wrote figures for {len(runs)} run(s) and {len(datasets)} dataset(s)")


if __name__ == "__main__":
    main()
