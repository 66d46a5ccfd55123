"""Benchmark (a): cold start to first frame of aisci-tui vs a bare Textual app.

Both run in a pseudo-terminal (120x40); "first frame" = the moment a text of the first
screen reaches the terminal (aisci-tui's pane bar, drawn before the engine is loaded);
"the lab open" = the moment the main screen's idea table is drawn (a new demo lab made,
its engine started). Prints median and min over N runs. Run:
    python benchmarks/bench_tui_startup.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_pty import PtyProgram

BARE_APP = """
from textual.app import App
from textual.widgets import Static
class Bare(App):
    def compose(self):
        yield Static("bare-first-frame")
Bare().run()
"""


def first_frame(argv: list[str], needle: bytes, env: dict[str, str]) -> float:
    prog = PtyProgram(argv, env=env)
    try:
        t = prog.wait_for(needle, 60)
        if t is None:
            raise RuntimeError(f"{argv[0]}: {needle!r} never appeared")
        return t - prog.t0
    finally:
        prog.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="aisci-bench-"))
    env = {"AISCI_USER_CONFIG": str(tmp / "none.toml")}
    tui = str(Path(sys.executable).with_name("aisci-tui"))
    results: dict[str, list[float]] = {"bare textual app": [], "aisci-tui (empty lab)": [],
                                       "aisci-tui --image-protocol none": [],
                                       "aisci-tui: the lab open (idea table)": []}
    for i in range(n):
        results["bare textual app"].append(
            first_frame([sys.executable, "-c", BARE_APP], b"bare-first-frame", env))
        lab = tmp / f"lab{i}"
        lab.mkdir()
        results["aisci-tui (empty lab)"].append(
            first_frame([tui, "--lab", str(lab)], b"Ideas", env))
        lab2 = tmp / f"lab{i}-none"
        lab2.mkdir()
        results["aisci-tui --image-protocol none"].append(
            first_frame([tui, "--lab", str(lab2), "--image-protocol", "none"], b"Ideas", env))
        lab3 = tmp / f"lab{i}-open"
        lab3.mkdir()
        # the demo lab created, its engine started and the main screen drawn
        results["aisci-tui: the lab open (idea table)"].append(
            first_frame([tui, "--lab", str(lab3), "--image-protocol", "none"], b"I/F/N", env))
    print(f"cold start to first frame, {n} runs each, 120x40 pty, cpu count {os.cpu_count()}")
    for name, values in results.items():
        print(f"  {name:34s} median {statistics.median(values) * 1000:7.0f} ms"
              f"   min {min(values) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
