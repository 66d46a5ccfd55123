"""Benchmark (b): an experiment printing 100k lines/s for 10 s while the TUI shows its
log: key-press-to-screen latency (p50/p99) and the TUI process's RSS.

The latency probe switches panes (6: processes, 4: log) and times the first bytes of
the newly shown pane reaching the terminal. Run:
    python benchmarks/bench_tui_flood.py [lines_per_s] [seconds]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_pty import PtyProgram, percentile

APP = str(Path(__file__).resolve().parent / "tui_flood_app.py")


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    lab = Path(tempfile.mkdtemp(prefix="aisci-flood-")) / "lab"
    prog = PtyProgram([sys.executable, APP, str(lab), "none", str(rate), str(seconds)],
                      env={"AISCI_USER_CONFIG": str(lab.parent / "none.toml")})
    try:
        if prog.wait_for(b"Ideas", 60) is None:
            raise RuntimeError("the TUI did not start")
        prog.send(b"4")
        if prog.wait_for(b"run_1", 30) is None:
            raise RuntimeError("the flood run never showed up in the log pane")
        proc = psutil.Process(prog.proc.pid)
        latencies: list[float] = []
        rss: list[int] = []
        t_end = time.monotonic() + seconds - 0.5
        panes = [(b"6", b"Elapsed / limit"), (b"4", b"lines \xc2\xb7 following")]
        k = 0
        while time.monotonic() < t_end:
            key, needle = panes[k % 2]
            took = prog.press(key, needle)
            if took is not None:
                latencies.append(took)
            rss.append(proc.memory_info().rss)
            k += 1
            time.sleep(0.2)
        done = prog.wait_for(b"FLOOD-DONE", 30)
        log = next(lab.glob("ideas/*/logs/run_1.log"))
        with open(log, "rb") as fh:
            lines = sum(1 for _ in fh)
        print(f"flood: {rate:,} lines/s for {seconds:g} s; log file {log.stat().st_size / 2**20:.0f}"
              f" MB, {lines:,} lines; run finished: {done is not None}")
        print(f"key-press-to-screen latency over {len(latencies)} presses: "
              f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
        print("slowest presses (ms):", [round(x * 1000) for x in sorted(latencies)[-8:]])
        print(f"TUI process RSS during the flood: max {max(rss) / 2**20:.0f} MB, "
              f"last {rss[-1] / 2**20:.0f} MB")
    finally:
        prog.close()


if __name__ == "__main__":
    main()
