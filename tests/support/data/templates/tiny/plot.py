"""Plots the final loss of every labelled run as a bar chart (final_loss.png)."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

labels = {
    "run_0": "Baseline",
}

names, values = [], []
for folder, label in labels.items():
    path = os.path.join(folder, "final_info.json")
    if not os.path.exists(path):
        continue
    with open(path) as fh:
        info = json.load(fh)
    names.append(label)
    values.append(info["toy"]["means"]["final_loss"])

plt.figure(figsize=(4, 3))
plt.bar(names, values)
plt.ylabel("final loss")
plt.title("Final loss per run")
plt.tight_layout()
plt.savefig("final_loss.png")
