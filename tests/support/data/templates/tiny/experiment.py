"""A tiny deterministic "experiment" for the engine's tests: fits y = 3x by gradient
descent in pure Python and writes final_info.json like a real template."""

import argparse
import json
import os
import random

LEARNING_RATE = 0.01
STEPS = 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", type=str, default="run_0")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    results = {}
    for seed in (0, 1):
        rng = random.Random(seed)
        xs = [rng.uniform(-1, 1) for _ in range(64)]
        w = 0.0
        for _ in range(STEPS):
            grad = sum(2 * (w * x - 3 * x) * x for x in xs) / len(xs)
            w -= LEARNING_RATE * grad
        loss = sum((w * x - 3 * x) ** 2 for x in xs) / len(xs)
        results[seed] = loss
    mean = sum(results.values()) / len(results)
    info = {"toy": {"means": {"final_loss": mean}, "seeds": sorted(results)}}
    with open(os.path.join(args.out_dir, "final_info.json"), "w") as fh:
        json.dump(info, fh)
    print(f"final_loss={mean:.6f}")


if __name__ == "__main__":
    main()
