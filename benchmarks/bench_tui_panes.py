"""Benchmark: key-press-to-screen latency over all seven panes of a real lab (issue 18),
end to end through a pseudo-terminal.

The flood benchmarks switch between two light panes; this one walks every pane of an
idea that went through the whole pipeline (ideas with their detail, runs and diff,
review scorecard, training log, plots, processes, activity and cost), the view a
researcher flips through. The lab is the offline demo's (``aisci run --demo``, a few
minutes) unless ``--lab`` names one. Prints p50 / p99 / max per pane and over all
presses, at 160x48 (wide: two groups side by side) and 120x40 (narrow: one at a time).

    python benchmarks/bench_tui_panes.py [--lab LAB] [--seconds 25]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_pty import PtyProgram, percentile

BIN = Path(sys.executable).parent
#: key -> a text only that pane draws (for the idea the benchmark selects)
NEEDLES = {b"1": b"Experiment plan", b"2": b"Time / limit", b"3": b"Originality",
           b"4": b"lines \xc2\xb7", b"5": b"previous/next", b"6": b"Elapsed / limit",
           b"7": b"Spend"}
PRESS_GAP_S = 0.15


def demo_lab() -> Path:
    lab = Path(tempfile.mkdtemp(prefix="aisci-panes-")) / "lab"
    print(f"running the offline demo into {lab} (a few minutes) ...", flush=True)
    r = subprocess.run([str(BIN / "aisci"), "run", "--demo", "--lab", str(lab)],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"the demo failed (exit {r.returncode}): {r.stderr[-500:]}")
    return lab


def reviewed_row(lab: Path) -> int:
    """The idea table's row of the first idea with a review (rows are in id order)."""
    ids = sorted(int(d.name.split("-", 1)[0]) for d in (lab / "ideas").iterdir()
                 if d.is_dir() and d.name.split("-", 1)[0].isdigit())
    for row, idea in enumerate(ids):
        if any((d / "review.json").is_file() for d in (lab / "ideas").glob(f"{idea}-*")):
            return row
    raise SystemExit(f"no idea of {lab} has a review")


def measure(lab: Path, row: int, cols: int, rows: int, seconds: float) -> dict[bytes, list[float]]:
    prog = PtyProgram([str(BIN / "aisci-tui"), "--lab", str(lab), "--image-protocol", "none"],
                      cols=cols, rows=rows,
                      env={"AISCI_USER_CONFIG": str(lab.parent / "none.toml")})
    try:
        if prog.wait_for(b"Ideas", 60) is None:
            raise SystemExit("the TUI did not start")
        time.sleep(3)  # the lab open and every pane's content loaded
        prog.send(b"1" + b"\x1b[B" * row)
        time.sleep(1)
        # wide: the left group's panes alternate with the right group's
        order = [b"2", b"5", b"3", b"6", b"4", b"7", b"1", b"5"] if cols >= 160 \
            else [b"2", b"1", b"3", b"4", b"5", b"6", b"7"]
        times: dict[bytes, list[float]] = {k: [] for k in NEEDLES}
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            key = order[k % len(order)]
            took = prog.press(key, NEEDLES[key])
            if took is None:
                print(f"  pane {key.decode()}: its text never appeared", flush=True)
            else:
                times[key].append(took)
            k += 1
            time.sleep(PRESS_GAP_S)
        return times
    finally:
        prog.send(b"q")
        time.sleep(1)
        prog.close()


def line(name: str, v: list[float]) -> str:
    return (f"  {name:<10} p50 {percentile(v, 50) * 1000:4.0f} ms   p99 "
            f"{percentile(v, 99) * 1000:4.0f} ms   max {max(v) * 1000:4.0f} ms   "
            f"({len(v)} presses)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", type=Path, default=None, help="a lab with a reviewed idea")
    ap.add_argument("--seconds", type=float, default=25.0, help="seconds of presses per size")
    args = ap.parse_args()
    lab = args.lab.resolve() if args.lab else demo_lab()
    row = reviewed_row(lab)
    print(f"aisci-tui, all seven panes of a reviewed idea; {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for cols, rows in ((160, 48), (120, 40)):
        times = measure(lab, row, cols, rows, args.seconds)
        print(f"{cols}x{rows}:", flush=True)
        for key, v in times.items():
            if v:
                print(line(f"pane {key.decode()}", v))
        every = [t for v in times.values() for t in v]
        print(line("all", every), flush=True)


if __name__ == "__main__":
    main()
