"""A Line-API log view over a file: only visible lines are read and rendered.

Long lines either wrap (the default: a training line keeps its validation numbers in a
half-screen pane) or are cut at the pane's edge and scrolled sideways; ``w`` toggles.
Either way a frame reads and lays out at most one screenful of lines, never the log: the
vertical position stays a line number, and at the end of the log the wrapped rows are
laid out from the last line upwards so the newest output is always in view.

The view keeps no lines in memory beyond :class:`LineIndex`'s bounded cache. New output
is picked up by re-scanning the file on a worker thread, at most every
``SCAN_INTERVAL_S`` (``FLOOD_SCAN_INTERVAL_S`` while the log keeps growing) and only
when poked (by batched run-output events) or on a slow poll, so a run printing 100k
lines/s costs a few scans and repaints per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aisci.tui.widgets.log.line_index import LineIndex
from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

SCAN_INTERVAL_S = 0.1
FLOOD_SCAN_INTERVAL_S = 0.3
"""While every scan finds new lines (a run flooding its log), the view rescans and
repaints at most this often: a log moving faster than anyone reads costs the UI little,
and key presses keep the event loop."""
FLOOD_AFTER_SCANS = 3
POLL_INTERVAL_S = 1.0


class LogView(ScrollView, can_focus=True):
    """Shows one log file; follows its end while ``follow`` is on."""

    DEFAULT_CSS = """
    LogView { background: $surface; overflow-x: hidden; }
    LogView.-nowrap { overflow-x: auto; }
    LogView > .logview--match { background: $warning 40%; }
    """
    COMPONENT_CLASSES = {"logview--match"}
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="log-follow"),
        Binding("w", "toggle_wrap", "Wrap", id="log-wrap"),
        Binding("end,G", "scroll_end_follow", "End", show=False, id="log-end"),
        Binding("home", "scroll_home", "Top", show=False, id="log-home"),
        Binding("n", "search_next", "Next match", show=False, id="log-search-next"),
        Binding("N", "search_previous", "Previous match", show=False,
                id="log-search-previous"),
    ]

    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view as output arrives."""
    search_text: reactive[str] = reactive("")
    """Text highlighted in the view and used by next/previous match."""
    wrap: reactive[bool] = reactive(True)
    """Wrap long lines (True) or cut them at the edge and scroll sideways (False)."""

    @dataclass
    class Scanned(Message):
        """The file was re-indexed (posted at most every SCAN_INTERVAL_S)."""

        log: LogView
        line_count: int

        @property
        def control(self) -> LogView:
            return self.log

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.index: LineIndex | None = None
        self._dirty = False
        self._scanning = False
        self._since_poll = 0.0
        self._since_scan = 0.0
        self._changed_streak = 0  # consecutive scans that found new lines
        self._last_match: int | None = None
        self._widest = 0  # widest line rendered so far (no-wrap: the horizontal extent)
        self._generation = 0  # bumped when the file's lines change
        self._rows_key: tuple[object, ...] | None = None
        self._rows: list[Strip] = []

    def on_mount(self) -> None:
        self.set_interval(SCAN_INTERVAL_S, self._tick)
        self.call_after_refresh(self._warm_up)

    @work(thread=True, group="log-warm-up", exit_on_error=False)
    def _warm_up(self) -> None:
        LineIndex.warm_up()

    # -- which file ----------------------------------------------------------------
    def show_file(self, path: Path | None) -> None:
        """Switch to ``path`` (None shows nothing). The previous index is dropped."""
        if path is not None and self.index is not None and self.index.path == Path(path):
            return
        self.index = LineIndex(path) if path is not None else None
        self._changed_streak = 0  # a new file is shown at once
        self._since_scan = FLOOD_SCAN_INTERVAL_S
        self._last_match = None
        self._widest = 0
        self._generation += 1
        self._set_virtual_size()
        self.scroll_to(0, 0, animate=False)
        self.follow = True
        self._dirty = True
        self.refresh()

    def poke(self) -> None:
        """New output may be in the file: rescan soon (coalesced)."""
        self._dirty = True

    @property
    def line_count(self) -> int:
        return self.index.line_count if self.index else 0

    # -- scanning on a thread -----------------------------------------------------------
    def _tick(self) -> None:
        self._since_poll += SCAN_INTERVAL_S
        self._since_scan += SCAN_INTERVAL_S
        if self._since_poll >= POLL_INTERVAL_S:
            self._since_poll = 0.0
            self._dirty = True
        flooding = self._changed_streak >= FLOOD_AFTER_SCANS
        if flooding and self._since_scan + 1e-6 < FLOOD_SCAN_INTERVAL_S:
            return
        if self._dirty and not self._scanning and self.index is not None:
            self._since_scan = 0.0
            self._dirty = False
            self._scanning = True
            self._scan(self.index)

    @work(thread=True, group="log-scan")
    def _scan(self, index: LineIndex) -> None:
        try:
            changed = index.scan()
        finally:
            self.app.call_from_thread(self._scanned, index, changed)

    def _scanned(self, index: LineIndex, changed: bool) -> None:
        self._scanning = False
        self._changed_streak = self._changed_streak + 1 if changed else 0
        if index is not self.index or not changed:
            return
        self._generation += 1
        self._set_virtual_size()
        if self.follow:
            self._to_end()
        self.refresh()
        self.post_message(self.Scanned(self, index.line_count))

    # -- rendering ------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        if self.wrap:
            rows = self._wrapped_rows()
            return rows[y] if y < len(rows) else Strip.blank(self.size.width, self.rich_style)
        line_no = int(self.scroll_offset.y) + y
        if self.index is None or line_no >= self.index.line_count:
            return Strip.blank(self.size.width, self.rich_style)
        # read the whole visible window at once; later lines then come from the cache
        lines = self.index.get_lines(line_no, max(1, self.size.height - y))
        base = self.rich_style or Style()
        full = self._strip(lines[0] if lines else "", base,
                           base + self.get_component_rich_style("logview--match"))
        if full.cell_length > self._widest:
            self._widest = full.cell_length
            self.call_later(self._set_virtual_size)
        x = int(self.scroll_offset.x)
        return full.crop_extend(x, x + self.size.width, base)

    def _wrapped_rows(self) -> list[Strip]:
        """The screen's rows in wrap mode, laid out once per frame (cached on what they
        depend on): from the top line down, or at the end of the log from the last line
        up. Reads at most one screenful of lines whatever the log's size."""
        width, height = max(1, self.size.width), max(0, self.size.height)
        if self.index is None or height == 0:
            return []
        count = self.index.line_count
        top = int(self.scroll_offset.y)
        at_end = self.follow or top >= self.max_scroll_y
        key = (id(self.index), self._generation, count, width, height,
               None if at_end else top, self.search_text)
        if key == self._rows_key:
            return self._rows
        base = self.rich_style or Style()  # walks the ancestors: once per frame
        match_style = base + self.get_component_rich_style("logview--match")
        first = max(0, count - height) if at_end else top
        rows: list[Strip] = []
        for text in self.index.get_lines(first, height):
            full = self._strip(text, base, match_style)
            length = full.cell_length
            if length <= width:
                rows.append(full.crop_extend(0, width, base))
            else:
                cuts = [*range(width, length, width), length]
                rows += [part.crop_extend(0, width, base) for part in full.divide(cuts)]
            if not at_end and len(rows) >= height:
                break
        self._rows = rows[-height:] if at_end else rows[:height]
        self._rows_key = key
        return self._rows

    def _strip(self, text: str, base: Style, match_style: Style) -> Strip:
        """``text`` as one uncut strip, with search matches highlighted."""
        needle = self.search_text
        segments: list[Segment] = []
        if needle:
            low, n, pos = text.lower(), needle.lower(), 0
            while True:
                hit = low.find(n, pos)
                if hit < 0:
                    break
                segments.append(Segment(text[pos:hit], base))
                segments.append(Segment(text[hit:hit + len(n)], match_style))
                pos = hit + len(n)
            segments.append(Segment(text[pos:], base))
        else:
            segments.append(Segment(text, base))
        return Strip(segments)

    def _set_virtual_size(self) -> None:
        width = self.size.width if self.wrap else max(self.size.width, self._widest)
        size = Size(width, self.line_count)
        if size == self.virtual_size:
            return
        # Not ``self.virtual_size = size``: that reactive asks for a layout pass of the
        # whole screen, at every scan while a run prints. A ScrollView's place on screen
        # does not depend on its virtual size; only its scrollbars do, and showing or
        # hiding one still asks for a layout (show_*_scrollbar are layout reactives).
        self.set_reactive(ScrollView.virtual_size, size)
        self._scroll_update(size)
        self.refresh()

    def on_resize(self) -> None:
        self._set_virtual_size()
        if self.follow:
            self._to_end()

    def _to_end(self) -> None:
        # virtual_size was just set, so the new maximum is known: jump there directly
        self.scroll_y = max(0, self.line_count - self.scrollable_content_region.height)

    # -- follow and search ----------------------------------------------------------
    def watch_follow(self, follow: bool) -> None:
        self.set_class(follow, "-following")
        if follow and self.index is not None:
            self._to_end()

    def watch_search_text(self) -> None:
        self._last_match = None
        self.refresh()

    def watch_wrap(self, wrap: bool) -> None:
        self.set_class(not wrap, "-nowrap")
        if wrap:
            self.scroll_to(x=0, animate=False)
        self._set_virtual_size()
        self.refresh()

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_scroll_end_follow(self) -> None:
        self.follow = True

    def action_scroll_home(self) -> None:
        self.follow = False
        self.scroll_home(animate=False)

    def on_mouse_scroll_up(self, event: object) -> None:
        # scrolling back through history means the user wants to read: stop following
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_search_next(self) -> None:
        self._search(backwards=False)

    def action_search_previous(self) -> None:
        self._search(backwards=True)

    def _search(self, *, backwards: bool) -> None:
        if self.index is None or not self.search_text:
            return
        start = self._last_match if self._last_match is not None else int(self.scroll_offset.y)
        start = start - 1 if backwards else start + (1 if self._last_match is not None else 0)
        self._find(self.index, self.search_text, max(0, start), backwards)

    @work(thread=True, exclusive=True, group="log-find")
    def _find(self, index: LineIndex, needle: str, start: int, backwards: bool) -> None:
        line = index.find(needle, start, backwards=backwards)
        if line is None:  # wrap around, like a pager
            line = index.find(needle, index.line_count if backwards else 0,
                              backwards=backwards)
        self.app.call_from_thread(self._found, index, line)

    def _found(self, index: LineIndex, line: int | None) -> None:
        if index is not self.index:
            return
        if line is None:
            self.notify(f"{self.search_text!r} not found", severity="warning", timeout=2)
            return
        self._last_match = line
        self.follow = False
        self.scroll_to(y=max(0, line - self.size.height // 2), animate=False)
