"""The TUI answers at once (issue 18): a growing log costs no layout pass of the screen,
a narrow terminal switches pane groups without restyling them, and the terminal's
graphics are probed after the first frame (the status bar shows the protocol once
known). Timings are in benchmarks/bench_tui_latency.py, not here.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.tui import images
from aisci.tui.app import AisciApp
from aisci.tui.screens.chrome import StatusBar
from aisci.tui.screens.help import HelpScreen
from aisci.tui.widgets.footer.key_footer import KeyFooter
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaPane
from support.tui_lab import StoreEngine, build_lab
from textual.screen import Screen
from textual.widget import Widget


def make_app(tmp_path: Path, support: images.ImageSupport | None = None,
             **lab_kwargs: Any) -> tuple[AisciApp, StoreEngine]:
    lab = tmp_path / "lab"
    store = build_lab(lab, **lab_kwargs)
    engine = StoreEngine(lab, store, None)
    return AisciApp(engine, images=support or images.choose_protocol("none")), engine


async def test_a_growing_log_asks_for_no_layout_pass(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    layouts: list[int] = []
    real = Screen._refresh_layout

    def counted(self: Screen[Any], *args: Any, **kwargs: Any) -> None:
        layouts.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    app, engine = make_app(tmp_path, log_lines=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await pilot.pause(0.5)
        pane = app.query_one(LogPane)
        assert pane.run == "run_2" and pane.view.line_count == 50
        log = tmp_path / "lab" / "ideas" / "1-adaptive_weight_decay" / "logs" / "run_2.log"
        layouts.clear()
        seen_counts = set()
        for chunk in range(20):  # the log grows between scans, 20 times
            with open(log, "a") as fh:
                fh.writelines(f"step {chunk} line {i}\n" for i in range(200))
            engine.bus.publish(ev.RunOutput(idea_id=1, run="run_2", lines=("x",)))
            for _ in range(30):  # a scan runs on a thread at most every 0.1 s
                await pilot.pause(0.05)
                if pane.view.line_count == 50 + 200 * (chunk + 1):
                    break
            seen_counts.add(pane.view.line_count)
        view = pane.view
        assert view.line_count == 50 + 20 * 200
        assert len(seen_counts) >= 10  # it really was re-scanned many times
        await pilot.pause(0.2)
        # following: the newest line is in view, the scrollbar knows the new length
        assert view.scroll_offset.y == view.line_count - view.scrollable_content_region.height
        assert view.virtual_size.height == view.line_count
        assert f"{view.line_count:,} lines" in pane.query_one("#log-header").render().plain
        # the scrollbar appearing may ask for one; a pass per scan would be >= 10
        assert len(layouts) <= 3, f"{len(layouts)} layout passes for 20 scans"


async def test_narrow_pane_groups_survive_resizing(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("6")
        left, right = app.query_one("#left-tabs"), app.query_one("#right-tabs")
        assert right.display and not left.display
        await pilot.resize_terminal(170, 48)
        await pilot.pause(0.2)
        assert app.screen.has_class("-wide")
        assert left.display and right.display
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert right.display and not left.display  # the group chosen last
        await pilot.press("2")
        assert left.display and not right.display


async def test_switching_panes_leaves_no_widget_behind(tmp_path: Path) -> None:
    """A key press that moves the focus changes the footer's keys: one repaint, and no
    widget built and dropped (Textual's footer rebuilt a dozen per press and leaked
    them, so every full garbage collection grew slower as the session aged)."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        gc.collect()
        before = {id(o) for o in gc.get_objects() if isinstance(o, Widget)}
        footer = app.query_one(KeyFooter)
        for _ in range(6):
            await pilot.press("6")
            await pilot.pause(0.02)
            assert "Kill" in footer.render().plain
            await pilot.press("4")
            await pilot.pause(0.02)
            assert "Follow" in footer.render().plain
        await pilot.pause(0.3)
        gc.collect()
        # (other tests' apps may still be alive in this process: only new widgets count)
        new = [o for o in gc.get_objects() if isinstance(o, Widget) and id(o) not in before]
        assert [w for w in new if not w.is_attached] == []


async def test_a_click_on_a_footer_key_presses_it(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        footer = app.query_one(KeyFooter)
        text = footer.render().plain
        assert "^p palette" in text and text.rstrip().endswith("palette")
        await pilot.click(KeyFooter, offset=(text.index("Help") - 1, 0))
        await pilot.pause(0.2)
        assert isinstance(app.screen, HelpScreen)


def test_deferred_protocol_touches_nothing_until_the_app_probes() -> None:
    none = images.deferred_protocol("none")
    assert none.protocol == "none" and not none.pending
    for requested in ("auto", "sixel", "kitty", "halfcell"):
        support = images.deferred_protocol(requested)
        assert support.pending and support.requested == requested
        assert support.widget_class is None
        assert images.choose_protocol(requested, defer=True) == support
    with pytest.raises(ValueError, match="expected one of"):
        images.deferred_protocol("iterm")


async def test_the_protocol_is_shown_once_probed_after_the_first_frame(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, images.deferred_protocol("auto"))
    first: list[str] = []
    async with app.run_test(size=(170, 48)) as pilot:
        first.append(" ".join(app.query_one(StatusBar).parts[-1]))
        for _ in range(50):
            await pilot.pause(0.1)
            if not app.images.pending:
                break
        assert not app.images.pending
        # a test's stdin is no terminal: textual-image queries nothing and picks its
        # text fallback, which the status bar and the plots pane now use
        proto = app.images.protocol
        assert proto in ("unicode", "halfcell", "sixel", "kitty")
        await pilot.pause(0.2)
        assert f"images {proto}" in app.query_one(StatusBar).render().plain
        media = app.query_one(MediaPane)
        assert media.images == app.images
        assert isinstance(media.query_one("#media-image"), app.images.widget_class)
    assert first == [f"images {images.PENDING}… "]


class _Driver:
    """The parts of Textual's Linux driver the probe pauses: an input thread polling its
    stop event every 10 ms, and the thread target to start it again."""

    def __init__(self) -> None:
        self.exit_event = threading.Event()
        self.started = 0
        self._key_thread = threading.Thread(target=self._run_input_thread)
        self._key_thread.start()

    def _run_input_thread(self) -> None:
        self.started += 1
        while not self.exit_event.wait(0.01):
            pass


def test_the_input_thread_is_paused_for_the_probe_and_started_again() -> None:
    driver = _Driver()
    first = driver._key_thread
    with images._input_paused(driver) as paused:
        assert paused and not first.is_alive()
    assert driver._key_thread is not first and driver._key_thread.is_alive()
    assert driver._key_thread.name == "textual-input" and driver.started == 2
    driver.exit_event.set()
    driver._key_thread.join(2)
    with images._input_paused(object()) as paused:  # no input thread: nothing paused
        assert not paused


def test_answers_the_probe_gave_up_on_are_dropped_and_typed_keys_kept() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"\x1b[?62;4;22c6\x1b_Gi=1;OK\x1b\\q\x1b[6;20;10t")
        text = images._read_for(r, 0.1)
        assert images._late_answers_dropped(text) == "6q"
        assert images._read_for(r, 0.05) == ""  # nothing more: waits, then stops
    finally:
        os.close(r)
        os.close(w)

    class Driver:
        def __init__(self) -> None:
            self.got: list[Any] = []

        def process_message(self, message: Any) -> None:
            self.got.append(message)

    driver = Driver()
    images._deliver_keys(driver, "6q")
    assert [e.key for e in driver.got] == ["6", "q"]


async def test_a_table_shown_again_keeps_its_drawn_rows(tmp_path: Path) -> None:
    """Textual sends a Resize to a widget that becomes visible; at the same size the
    table's drawn rows stay valid (only a new size invalidates them)."""
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.query_one(IdeaTable)
        drawn = table._update_count
        for key in "2121":
            await pilot.press(key)
            await pilot.pause(0.1)
        assert table._update_count == drawn
        await pilot.resize_terminal(150, 44)
        await pilot.pause(0.2)
        assert table._update_count > drawn
