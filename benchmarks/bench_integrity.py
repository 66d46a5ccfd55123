"""Recall per flaw class and the false-flag rate of the integrity check on the planted-flaw
corpus (tests/support/data/integrity_corpus), tuning papers and held-out papers apart,
the time per paper, and the time of one long paper (a clean corpus paper's body 20 times,
about the length of a 30-page paper).

    python benchmarks/bench_integrity.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aisci.engine.paper.integrity_checks import scan
from support.integrity_corpus import TEX, papers, score

LONG_REPEAT = 20


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


def long_paper() -> None:
    src = next(d for d in papers() if d.name.startswith("clean_"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / src.name
        shutil.copytree(src, folder)
        text = (folder / TEX).read_text()
        start = text.index("\\begin{document}") + len("\\begin{document}")
        end = text.index("\\end{document}")
        long = text[:start] + text[start:end] * LONG_REPEAT + text[end:]
        (folder / TEX).write_text(long)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = scan(folder, TEX)
            times.append(time.perf_counter() - t0)
    print(f"long paper ({src.name} body x{LONG_REPEAT}, {long.count(chr(10))} lines): "
          f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms per scan, "
          f"{len(result.findings)} findings")


if __name__ == "__main__":
    report("tuning set", held_out=False)
    report("held-out set", held_out=True)
    long_paper()
