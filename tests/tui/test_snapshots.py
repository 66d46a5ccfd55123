"""SVG snapshots of every pane at 80x24 and 160x48 (pytest-textual-snapshot).

Deterministic by construction: a fixed lab (tests/support/tui_lab.py), frozen clocks,
animations and cursor blink off, images as half-cells (no terminal probing), and the
workers awaited before the screenshot. Regenerate with ``--snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aisci.tui.app import AisciApp
from aisci.tui.images import choose_protocol
from support.tui_lab import StoreEngine, build_lab, frozen_clock

PANES = ["1", "2", "3", "4", "5", "6", "7"]


def make(tmp_path: Path, monkeypatch: Any) -> AisciApp:
    frozen_clock(monkeypatch)
    lab = tmp_path / "lab"
    store = build_lab(lab, log_lines=300)
    app = AisciApp(StoreEngine(lab, store), images=choose_protocol("halfcell"))
    app.animation_level = "none"
    return app


async def settle(pilot: Any) -> None:
    app = pilot.app
    for widget in app.screen.query("Input"):
        widget.cursor_blink = False
    await pilot.pause(0.4)  # log scan tick, diff and figure workers
    # every finite worker (the file watcher runs until the app exits)
    finite = [w for w in app.workers if w.group not in ("media-watch", "engine-start")]
    if finite:  # an empty list would mean "all workers"
        await app.workers.wait_for_complete(finite)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("pane", PANES)
def test_pane_snapshot(pane: str, size: tuple[int, int], tmp_path: Path, monkeypatch: Any,
                       snap_compare: Any) -> None:
    app = make(tmp_path, monkeypatch)
    assert snap_compare(app, press=[pane], terminal_size=size, run_before=settle)
