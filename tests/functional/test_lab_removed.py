"""A lab deleted under a running engine (``rm -rf`` of a lab whose engine runs detached):
the engine notices, says why, stops, and leaves no experiment behind."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from aisci.engine import engine as engine_mod
from aisci.engine.config import load_config
from aisci.engine.engine import Engine
from aisci.engine.events import Event, Notice
from support.slow_lab import make_slow_lab


def is_gone(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_an_engine_whose_lab_goes_away_stops_and_ends_its_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(engine_mod, "LAB_CHECK_S", 0.2)
    lab = tmp_path / "lab"
    make_slow_lab(lab)
    engine = Engine(lab, load_config(lab).settings, headless=True)
    notices: list[str] = []

    def keep(e: Event) -> None:
        if isinstance(e, Notice):
            notices.append(e.message)

    engine.bus.add_sink(keep)
    await engine.start()
    try:
        pid = 0
        for _ in range(300):
            await asyncio.sleep(0.1)
            pid = next((p.pid for p in engine.processes() if p.pid), 0)
            if pid:
                break
        assert pid, "the long baseline run did not start"
        if how == "removed":
            await asyncio.to_thread(shutil.rmtree, lab)
        else:  # moved away and a new folder of the same name made in its place
            os.rename(lab, tmp_path / "old-lab")
            lab.mkdir()
        await asyncio.wait_for(engine.stop_requested.wait(), 5)
        assert any(f"was {how} while the engine ran" in n for n in notices), notices
    finally:
        await engine.stop()
    assert is_gone(pid), "the experiment outlived its engine"
