"""The engine side of bench_attach.py: a real Engine serving a scratch lab (one idea) on
its control socket, headless. Prints ENGINE-READY once it serves; on a line on stdin its
executor runs an experiment printing RATE lines/s for SECONDS seconds, then it prints
FLOOD-END; on a second line it stops. Not useful on its own."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aisci.engine.config import load_config
from aisci.engine.engine import Engine
from aisci.engine.lab import layout
from aisci.engine.run.executor import RunSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_flood_app import FLOOD, build_lab


async def main(lab: Path, rate: int, seconds: float) -> None:
    build_lab(lab)
    engine = Engine(lab, load_config(lab, {"sandbox.mode": "none"}).settings, headless=False)
    await engine.start()
    print("ENGINE-READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    idea = engine.store.list_ideas()[0]
    d = layout.idea_dir(lab, idea.id, idea.name)
    spec = RunSpec(argv=[sys.executable, "-c", FLOOD, str(rate), str(seconds)], cwd=d,
                   log_path=d / "logs" / "run_1.log", limit_s=600, kind="experiment",
                   run="run_1", idea_id=idea.id)
    assert engine.executor is not None
    await engine.executor.run(spec)
    print("FLOOD-END", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
