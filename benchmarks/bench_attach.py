"""Benchmark: a viewer attached to an engine in another process (issue 13), end to end
through a pseudo-terminal.

The engine (benchmarks/attach_engine.py) serves a scratch lab; ``aisci-tui --lab L`` in
a pty attaches to it over the lab's control socket. Prints:
1. time from launching ``aisci-tui`` to the first frame of the attached viewer;
2. key-press-to-screen latency (p50 / p99 / max) of the attached viewer while a run
   prints RATE lines/s (a press switches the processes / log pane and is timed until a
   text only the new pane draws reaches the terminal);
3. the engine process's CPU during the flood with 0, 1 and 2 viewers attached, and so
   its cost per viewer.

    python benchmarks/bench_attach.py [--rate 100000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_pty import PtyProgram, percentile

HERE = Path(__file__).resolve().parent
TUI = str(Path(sys.executable).with_name("aisci-tui"))
PANES = [(b"6", b"Elapsed / limit"), (b"5", b"val_loss.png")]
PRESS_GAP_S = 0.15


def start_engine(lab: Path, rate: int, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "attach_engine.py"), str(lab),
                             str(rate), str(seconds)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ENGINE-READY":
        raise RuntimeError("the engine did not start")
    return proc


def attach(lab: Path, env: dict[str, str], engine_pid: int) -> tuple[PtyProgram, float]:
    t0 = time.monotonic()
    viewer = PtyProgram([TUI, "--lab", str(lab), "--image-protocol", "none"], cols=160,
                        rows=48, env=env)
    seen = viewer.wait_for(f"engine {engine_pid}".encode(), 60)  # short or long form
    if seen is None:
        raise RuntimeError("the viewer did not attach")
    return viewer, seen - t0


def run(rate: int, seconds: float, viewers: int) -> tuple[float, list[float], list[float]]:
    """Engine CPU seconds per flood second, attach times, and viewer 0's press latencies."""
    tmp = Path(tempfile.mkdtemp(prefix="aisci-attach-"))
    lab = tmp / "lab"
    env = {"AISCI_USER_CONFIG": str(tmp / "none.toml")}
    engine = start_engine(lab, rate, seconds)
    progs: list[PtyProgram] = []
    attach_s: list[float] = []
    latencies: list[float] = []
    try:
        for _ in range(viewers):
            prog, took = attach(lab, env, engine.pid)
            progs.append(prog)
            attach_s.append(took)
        time.sleep(1.0)
        ps = psutil.Process(engine.pid)
        before = ps.cpu_times()
        assert engine.stdin is not None and engine.stdout is not None
        engine.stdin.write("go\n")
        engine.stdin.flush()
        t0 = time.monotonic()
        if progs:
            progs[0].send(b"4")
            progs[0].wait_for(b"run_1", 30)
        k = 0
        while progs and time.monotonic() - t0 < seconds - 0.5:
            key, needle = PANES[k % 2]
            took = progs[0].press(key, needle)
            if took is not None:
                latencies.append(took)
            k += 1
            time.sleep(PRESS_GAP_S)
        if engine.stdout.readline().strip() != "FLOOD-END":
            raise RuntimeError("the flood did not end")
        wall = time.monotonic() - t0
        after = ps.cpu_times()
        cpu = (after.user + after.system) - (before.user + before.system)
        engine.stdin.write("stop\n")
        engine.stdin.flush()
        engine.wait(60)
    finally:
        for prog in progs:
            prog.close()
        if engine.poll() is None:
            engine.kill()
    return cpu / wall, attach_s, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=100_000, help="lines per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of flood")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"attached viewer; {os.cpu_count()} cpus, load average {load[0]:.2f} at start")
    results = {n: run(args.rate, args.seconds, n) for n in (0, 1, 2)}
    attach_all = results[1][1] + results[2][1]
    print(f"attach (launch to first attached frame): median "
          f"{statistics.median(attach_all):.2f} s, max {max(attach_all):.2f} s "
          f"({len(attach_all)} launches)")
    lat = results[1][2]
    if lat:
        print(f"attached key-to-screen during {args.rate:,} lines/s for {args.seconds:g} s: "
              f"p50 {percentile(lat, 50) * 1000:.0f} ms  p99 {percentile(lat, 99) * 1000:.0f}"
              f" ms  max {max(lat) * 1000:.0f} ms ({len(lat)} presses)")
    base = results[0][0]
    for n in (0, 1, 2):
        cpu = results[n][0]
        extra = f"  (+{(cpu - base) / n * 100:.1f}% of a core per viewer)" if n else ""
        print(f"engine CPU during the flood, {n} viewer(s): {cpu * 100:.1f}% of a core{extra}")
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f}")


if __name__ == "__main__":
    main()
