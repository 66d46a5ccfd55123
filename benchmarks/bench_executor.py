"""Executor overhead: request -> child started (p50/p95, with and without bubblewrap), and
output throughput of a child printing as fast as it can into the log and the event
stream, with the engine's peak RSS meanwhile.

Run: ``python benchmarks/bench_executor.py [--runs 30] [--flood-s 3]``. Prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, RunOutput, RunStarted
from aisci.engine.run.executor import Executor, RunSpec
from aisci.engine.run.sandbox import probe_isolation

FLOOD = ("import sys\nline = b'x' * 99 + b'\\n'\nblock = line * 1000\n"
         "w = sys.stdout.buffer.write\nwhile True:\n    w(block)\n")


def settings(mode: str) -> Settings:
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    s.sandbox.grace_period_s = 0.5
    return s


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def start_latency(mode: str, runs: int, idea: Path) -> tuple[list[float], list[float]]:
    """(request -> child exec'd, request -> first output line of ``python -c print``)."""
    bus = EventBus()
    bus.bind_loop()
    ex = Executor(settings(mode), bus)
    sub = bus.subscribe(kinds=(RunStarted, RunOutput))
    spawn, first = [], []
    for i in range(runs):
        sub.drain()
        t0 = time.time()
        await ex.run(RunSpec(argv=[sys.executable, "-S", "-c", "print('up')"], cwd=idea,
                             log_path=idea / "logs" / "lat.log", limit_s=30, kind="check",
                             run=f"lat{i}"))
        events = sub.drain()
        started = next(e for e in events if isinstance(e, RunStarted))
        spawn.append(started.ts - t0)
        out = next(e for e in events if isinstance(e, RunOutput) and
                   any(line.endswith(" out up") for line in e.lines))
        first.append(out.ts - t0)
    return spawn, first


async def flood(mode: str, seconds: float, idea: Path) -> dict[str, float]:
    bus = EventBus()
    bus.bind_loop()
    sub = bus.subscribe(maxsize=1000, kinds=(RunOutput,))
    ex = Executor(settings(mode), bus)
    me = psutil.Process()
    rss0 = peak = me.memory_info().rss
    lines = chars = 0
    stop = asyncio.Event()

    async def consume() -> None:
        nonlocal lines, chars
        while not stop.is_set():
            for ev in sub.drain():
                lines += len(ev.lines)
                chars += sum(map(len, ev.lines))
            await asyncio.sleep(0.02)

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, me.memory_info().rss)
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(consume()), asyncio.create_task(sample())]
    log = idea / "logs" / "flood.log"
    log.unlink(missing_ok=True)
    (idea / "flood.py").write_text(FLOOD)
    t0 = time.monotonic()
    res = await ex.run(RunSpec(argv=[sys.executable, "flood.py"], cwd=idea, log_path=log,
                               limit_s=seconds, kind="experiment", run="flood"))
    wall = time.monotonic() - t0
    stop.set()
    await asyncio.gather(*tasks)
    log_lines = sum(1 for _ in log.open("rb")) - 2
    return {"status": res.status, "wall_s": wall, "log_lines_per_s": log_lines / wall,
            "log_mb_per_s": log.stat().st_size / wall / 2**20,
            "event_lines_per_s": lines / wall, "event_mb_per_s": chars / wall / 2**20,
            "engine_rss_mb": rss0 / 2**20, "engine_peak_rss_mb": peak / 2**20}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--flood-s", type=float, default=3.0)
    args = ap.parse_args()
    modes = ["none"]
    level, detail = probe_isolation(settings("auto").sandbox)
    if level == "bwrap":
        modes.append("bwrap")
    print(f"isolation available: {level} ({detail})")
    with tempfile.TemporaryDirectory(prefix="aisci-bench-") as tmp:
        idea = Path(tmp) / "idea"
        idea.mkdir()
        for mode in modes:
            spawn, first = await start_latency(mode, args.runs, idea)
            print(f"[{mode}] request->child started: p50 {pct(spawn, .5) * 1e3:.1f} ms, "
                  f"p95 {pct(spawn, .95) * 1e3:.1f} ms; request->first output line "
                  f"(python -S): p50 {pct(first, .5) * 1e3:.1f} ms, p95 "
                  f"{pct(first, .95) * 1e3:.1f} ms (n={len(spawn)}, mean spawn "
                  f"{statistics.mean(spawn) * 1e3:.1f} ms)")
        for mode in modes:
            r = await flood(mode, args.flood_s, idea)
            print(f"[{mode}] flood {r['wall_s']:.1f} s ({r['status']}): log "
                  f"{r['log_lines_per_s']:,.0f} lines/s {r['log_mb_per_s']:.0f} MB/s; "
                  f"event stream {r['event_lines_per_s']:,.0f} lines/s "
                  f"{r['event_mb_per_s']:.1f} MB/s; engine RSS {r['engine_rss_mb']:.0f} MB "
                  f"-> peak {r['engine_peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
