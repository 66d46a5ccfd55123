"""Recall per flaw class and the false-flag rate of the integrity check on the planted-flaw
corpus (tests/support/data/integrity_corpus), tuning papers and held-out papers apart,
and the time per paper.

    python benchmarks/bench_integrity.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.integrity_corpus import papers, score


def report(title: str, held_out: bool) -> None:
    dirs = papers(held_out=held_out)
    t0 = time.perf_counter()
    s = score(dirs)
    dt = time.perf_counter() - t0
    total = sum(s.flaws.values())
    print(f"{title}: {len(dirs)} papers, {total} planted flaws, {s.findings} findings, "
          f"{dt / max(1, len(dirs)) * 1000:.0f} ms/paper")
    for cls in sorted(s.flaws):
        print(f"  recall {cls:<16} {s.caught.get(cls, 0):>3}/{s.flaws[cls]:<3}")
    print(f"  recall overall       {s.recall:.1%}")
    print(f"  false flags          {len(s.false)}/{s.findings} = {s.false_rate:.1%}")
    for name, cls, quote in s.missed:
        print(f"  missed: {name}: {cls}: {quote}")
    for name, f in s.false:
        print(f"  false: {name}: {f.render()}")


if __name__ == "__main__":
    report("tuning set", held_out=False)
    report("held-out set", held_out=True)
