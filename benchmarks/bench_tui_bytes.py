"""Benchmark (c): bytes written to the terminal per second while a plot is visible
(sixel) next to a log streaming 100k lines/s (160x48, wide layout: log left, plot
right). Also counts sixel images sent: the plot must be sent once, not every frame.
Run:
    python benchmarks/bench_tui_bytes.py [lines_per_s] [seconds] [protocol]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_pty import PtyProgram

APP = str(Path(__file__).resolve().parent / "tui_flood_app.py")
SIXEL_START = b"\x1bP"  # DCS: every sixel image starts with it


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    protocol = sys.argv[3] if len(sys.argv) > 3 else "sixel"
    lab = Path(tempfile.mkdtemp(prefix="aisci-bytes-")) / "lab"
    prog = PtyProgram([sys.executable, APP, str(lab), protocol, str(rate), str(seconds)],
                      cols=160, rows=48, env={"AISCI_USER_CONFIG": str(lab.parent / "x.toml")})
    try:
        if prog.wait_for(b"Ideas", 60) is None:
            raise RuntimeError("the TUI did not start")
        prog.send(b"5")
        time.sleep(0.5)
        prog.send(b"4")
        if prog.wait_for(b"run_1", 30) is None:
            raise RuntimeError("the flood run never showed up in the log pane")
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(seconds - 2.5)
        t1 = time.monotonic()
        total = prog.bytes_between(t0, t1)
        images = prog.count_between(SIXEL_START, t0, t1)
        first = prog.count_between(SIXEL_START, 0, t0)
        with prog._lock:
            blob = b"".join(d for _, d in prog.chunks)
        start = blob.find(SIXEL_START)
        end = blob.find(b"\x1b\\", start)
        image_bytes = end - start if start >= 0 and end > start else 0
        print(f"{protocol} plot visible + log streaming {rate:,} lines/s, 160x48:")
        print(f"  terminal output {total / (t1 - t0) / 1024:.1f} KiB/s over {t1 - t0:.1f} s")
        print(f"  one image = {image_bytes / 1024:.1f} KiB; images sent before the window: "
              f"{first}, during the window: {images}")
    finally:
        prog.close()


if __name__ == "__main__":
    main()
