"""The app under test for the flood / bytes benchmarks: the real aisci-tui app and
Engine (on its own thread, as aisci-tui runs it) on a scratch lab with one idea; after
start-up the engine's executor runs an
experiment that prints ``RATE`` lines/s for ``SECONDS`` seconds. Run by the benchmarks
inside a pty; not useful on its own."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aisci.engine.config import load_config
from aisci.engine.engine import Engine
from aisci.engine.lab import layout
from aisci.engine.lab.store import LabStore
from aisci.engine.run.executor import RunSpec
from aisci.tui.app import AisciApp
from aisci.tui.engine_thread import EngineThread
from aisci.tui.images import choose_protocol
from PIL import Image, ImageDraw

FLOOD = """
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
block = 1000
line = "step {:>9} train_loss 0.123456 val_loss 0.234567 lr 0.001\\n"
t0 = time.monotonic(); i = 0
while time.monotonic() - t0 < seconds:
    sys.stdout.write("".join(line.format(i + k) for k in range(block)))
    i += block
    ahead = i / rate - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
sys.stdout.flush()
print("FLOOD-DONE", i, "lines", flush=True)
"""


def build_lab(lab: Path) -> None:
    store = LabStore(lab)
    idea = store.add_idea("flood_test", "grokking",
                          {"Title": "Flood test", "Experiment": "Print a lot of lines fast.",
                           "Interestingness": 5, "Feasibility": 5, "Novelty": 5},
                          status="vetoed")
    d = layout.idea_dir(lab, idea, "flood_test")
    (d / "logs").mkdir(parents=True)
    img = Image.new("RGB", (640, 400), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k in range(0, 640, 4):
        draw.line([(k, 380 - (k * k) % 360), (k + 4, 380 - ((k + 4) * (k + 4)) % 360)],
                  fill=(31, 119, 180), width=2)
    img.save(d / "val_loss.png")
    store.close()


async def start_flood(engine: Engine, rate: int, seconds: float) -> None:
    await asyncio.sleep(1.5)
    idea = engine.store.list_ideas()[0]
    d = layout.idea_dir(engine.lab, idea.id, idea.name)
    spec = RunSpec(argv=[sys.executable, "-c", FLOOD, str(rate), str(seconds)], cwd=d,
                   log_path=d / "logs" / "run_1.log", limit_s=600, kind="experiment",
                   run="run_1", idea_id=idea.id)
    assert engine.ctx is not None
    await engine.ctx.executor.run(spec)


def main() -> None:
    lab, protocol, rate, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \
        float(sys.argv[4])
    build_lab(lab)
    images = choose_protocol(protocol)
    settings = load_config(lab, {"sandbox.mode": "none"}).settings
    # as aisci-tui runs it: the engine on its own thread and loop, the app on this one
    runner = EngineThread(Engine(lab, settings, headless=False))
    runner.launch()
    if rate > 0:  # 0: the TUI idles (no run)
        asyncio.run_coroutine_threadsafe(start_flood(runner.engine, rate, seconds),
                                         runner._loop)
    AisciApp(runner, images=images).run()
    runner.request_stop("benchmark over")
    runner.finished.wait(60)


if __name__ == "__main__":
    main()
