"""Benchmark: the TUI's responsiveness in one run (issue 18), measured end to end
through a pseudo-terminal:

1. cold start to first frame: a bare Textual app vs aisci-tui (median of N runs);
2. key-press-to-screen latency (p50 / p99 / max) with the TUI idle (no run);
3. the same while an experiment prints RATE lines/s for SHORT seconds (~1M lines);
4. the same for LONG seconds (~10M lines), with the p99 of the presses made while the
   log held its first million lines vs its last million (latency must not grow with the
   log's size);
5. the GPU-slot busy fraction over the GPU window and over the wall time
   (benchmarks/bench_scheduler.py, run as it is).

A press switches panes (narrow, 120x40: 6 processes / 4 log; wide, 160x48: 6 processes /
5 plots, with the log always in view) and is timed until a text only the newly shown pane
draws reaches the terminal. Run:
    python benchmarks/bench_tui_latency.py [--rate 100000] [--short 10] [--long 100]
        [--starts 3] [--wide] [--skip-long] [--skip-start] [--skip-scheduler]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tui_startup import BARE_APP, first_frame
from tui_pty import PtyProgram, percentile

APP = str(Path(__file__).resolve().parent / "tui_flood_app.py")
PRESS_GAP_S = 0.15
"""Pause between a press's answer and the next press."""
PRESS_TIMEOUT_S = 5.0


@dataclass
class Presses:
    latencies: list[float] = field(default_factory=list)
    lines_at: list[int] = field(default_factory=list)
    """Estimated lines in the log when each press was made."""
    missed: int = 0
    rss: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU seconds the TUI process used per second of the window (all threads)."""
    main_cpu_s: float = 0.0
    """... of which its main thread (Textual's event loop): the work a press waits on."""

    def line(self, name: str, only: list[bool] | None = None) -> str:
        vals = [v for v, keep in zip(self.latencies, only or [True] * len(self.latencies),
                                     strict=True) if keep]
        if not vals:
            return f"  {name:44s} no presses"
        return (f"  {name:44s} p50 {percentile(vals, 50) * 1000:6.0f} ms   "
                f"p99 {percentile(vals, 99) * 1000:6.0f} ms   max {max(vals) * 1000:6.0f} ms"
                f"   ({len(vals)} presses)")

    def cpu(self) -> str:
        return f"TUI CPU {self.cpu_s:.2f} s/s (event loop {self.main_cpu_s:.2f} s/s)"


def _log_lines(lab: Path, bytes_per_line: float) -> int:
    logs = list(lab.glob("ideas/*/logs/run_1.log"))
    try:
        return int(logs[0].stat().st_size / bytes_per_line) if logs else 0
    except OSError:
        return 0


def _cpu(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the process and of its main thread (the thread id is the pid)."""
    t = proc.cpu_times()
    main = next((th.user_time + th.system_time for th in proc.threads() if th.id == proc.pid),
                0.0)
    return t.user + t.system, main


def measure(rate: int, seconds: float, *, wide: bool) -> tuple[Presses, str]:
    """Presses during ``seconds`` of a run printing ``rate`` lines/s (0: no run)."""
    lab = Path(tempfile.mkdtemp(prefix="aisci-latency-")) / "lab"
    cols, rows = (160, 48) if wide else (120, 40)
    prog = PtyProgram([sys.executable, APP, str(lab), "none", str(rate), str(seconds)],
                      cols=cols, rows=rows,
                      env={"AISCI_USER_CONFIG": str(lab.parent / "none.toml")})
    out = Presses()
    note = ""
    try:
        if prog.wait_for(b"Ideas", 60) is None:
            raise RuntimeError("the TUI did not start")
        if rate:
            prog.send(b"4")
            if prog.wait_for(b"run_1", 30) is None:
                raise RuntimeError("the flood run never showed up in the log pane")
        else:
            time.sleep(2.0)  # let start-up settle
        if wide:
            panes = [(b"6", b"Elapsed / limit"), (b"5", b"val_loss.png")]
        else:
            log_needle = b"lines \xc2\xb7 following" if rate else b"no run selected"
            panes = [(b"6", b"Elapsed / limit"), (b"4", log_needle)]
        proc = psutil.Process(prog.proc.pid)
        t_start = time.monotonic()
        cpu0, main0 = _cpu(proc)
        t_end = t_start + seconds - (0.5 if rate else 0.0)
        k = 0
        while time.monotonic() < t_end:
            key, needle = panes[k % 2]
            lines = _log_lines(lab, 80.0) if rate else 0
            took = prog.press(key, needle, PRESS_TIMEOUT_S)
            if took is None:
                out.missed += 1
            else:
                out.latencies.append(took)
                out.lines_at.append(lines)
            out.rss.append(proc.memory_info().rss)
            k += 1
            time.sleep(PRESS_GAP_S)
        cpu1, main1 = _cpu(proc)
        span = time.monotonic() - t_start
        out.cpu_s, out.main_cpu_s = (cpu1 - cpu0) / span, (main1 - main0) / span
        if rate:
            logs = list(lab.glob("ideas/*/logs/run_1.log"))
            deadline = time.monotonic() + 120
            while logs and time.monotonic() < deadline:
                with open(logs[0], "rb") as fh:
                    fh.seek(max(0, logs[0].stat().st_size - 4096))
                    if b"FLOOD-DONE" in fh.read():
                        break
                time.sleep(0.5)
            if logs:
                size = logs[0].stat().st_size
                with open(logs[0], "rb") as fh:
                    total = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 22), b""))
                # the presses' line counts were estimated at 80 bytes a line: rescale
                scale = (size / total / 80.0) if total else 1.0
                out.lines_at = [int(n / scale) for n in out.lines_at]
                note = (f"log {size / 2**20:.0f} MB, {total:,} lines; "
                        f"TUI RSS max {max(out.rss) / 2**20:.0f} MB")
        else:
            note = f"TUI RSS max {max(out.rss) / 2**20:.0f} MB"
        if out.missed:
            note += f"; {out.missed} presses got no answer within {PRESS_TIMEOUT_S:g} s"
    finally:
        prog.close()
    return out, note


def cold_start(n: int) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="aisci-start-"))
    env = {"AISCI_USER_CONFIG": str(tmp / "none.toml")}
    tui = str(Path(sys.executable).with_name("aisci-tui"))
    bare: list[float] = []
    tui_auto: list[float] = []
    tui_none: list[float] = []
    for i in range(n):
        bare.append(first_frame([sys.executable, "-c", BARE_APP], b"bare-first-frame", env))
        (tmp / f"a{i}").mkdir()
        tui_auto.append(first_frame([tui, "--lab", str(tmp / f"a{i}")], b"Ideas", env))
        (tmp / f"n{i}").mkdir()
        tui_none.append(first_frame([tui, "--lab", str(tmp / f"n{i}"), "--image-protocol",
                                     "none"], b"Ideas", env))
    base = statistics.median(bare)
    out = [f"cold start to first frame (120x40 pty, median of {n}; new lab = offline demo):"]
    for name, vals in (("bare Textual app", bare), ("aisci-tui", tui_auto),
                       ("aisci-tui --image-protocol none", tui_none)):
        med = statistics.median(vals)
        out.append(f"  {name:44s} median {med * 1000:6.0f} ms   min {min(vals) * 1000:6.0f} ms"
                   f"   = {med / base:.1f}x bare")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=100_000, help="lines per second")
    ap.add_argument("--short", type=float, default=10.0, help="seconds of the short flood")
    ap.add_argument("--long", type=float, default=100.0, help="seconds of the long flood")
    ap.add_argument("--starts", type=int, default=3, help="cold starts per program")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle presses")
    ap.add_argument("--wide", action="store_true", help="160x48: log and panes side by side")
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--skip-start", action="store_true")
    ap.add_argument("--skip-scheduler", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"aisci-tui responsiveness; {os.cpu_count()} cpus, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    if not args.skip_start:
        for text in cold_start(args.starts):
            print(text, flush=True)
    layout = "160x48 wide (6/5)" if args.wide else "120x40 narrow (6/4)"
    print(f"key-press-to-screen latency, {layout}:", flush=True)
    idle, note = measure(0, args.idle, wide=args.wide)
    print(idle.line("idle") + f"   {idle.cpu()}; {note}", flush=True)
    short, note = measure(args.rate, args.short, wide=args.wide)
    print(short.line(f"{args.rate:,} lines/s for {args.short:g} s")
          + f"   {short.cpu()}; {note}", flush=True)
    if not args.skip_long:
        long, note = measure(args.rate, args.long, wide=args.wide)
        print(long.line(f"{args.rate:,} lines/s for {args.long:g} s")
              + f"   {long.cpu()}; {note}")
        last = max(long.lines_at, default=0)
        first_m = [n <= 1_000_000 for n in long.lines_at]
        last_m = [n >= last - 1_000_000 for n in long.lines_at]
        print(long.line("  while the log held <= 1M lines", first_m))
        print(long.line(f"  in its last 1M lines (up to {last / 1e6:.1f}M)", last_m))
        a = [v for v, k in zip(long.latencies, first_m, strict=True) if k]
        b = [v for v, k in zip(long.latencies, last_m, strict=True) if k]
        if a and b:
            print(f"  p99 last-1M / first-1M = {percentile(b, 99) / percentile(a, 99):.2f}")
    if not args.skip_scheduler:
        print("GPU-slot busy fraction (bench_scheduler.py):", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_scheduler.py"))],
                       check=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
