"""The training-log pane: which run is shown, a one-line header, search box, the view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aisci.tui.widgets.log.log_view import LogView
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static


class LogPane(Vertical):
    """Shows the log of one (idea, run); only that run's output is ever rendered."""

    BINDINGS = [
        Binding("slash", "open_search", "Search", id="log-open-search"),
        Binding("escape", "close_search", "Close search", show=False, id="log-close-search"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idea_id: int | None = None
        self.run: str | None = None
        self._header_text = "no run selected"

    def compose(self) -> ComposeResult:
        yield Static("no run selected", id="log-header", classes="pane-header", markup=False)
        yield Input(placeholder="search the log (enter: find, n/N: next/previous)",
                    id="log-search")
        yield LogView(id="log-view")

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.watch(self.view, "follow", lambda _v: self._update_header(), init=False)
        self.watch(self.view, "wrap", lambda _v: self._update_header(), init=False)

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def show_run(self, idea_id: int | None, run: str | None, path: Path | None) -> None:
        """Show ``path`` as the log of (idea_id, run)."""
        self.idea_id, self.run = idea_id, run
        self.view.show_file(path)
        self._update_header()

    def output_arrived(self, idea_id: int | None, run: str) -> None:
        """Batched output for (idea_id, run) arrived; only the visible run cares."""
        if idea_id == self.idea_id and run == self.run:
            self.view.poke()

    def _update_header(self) -> None:
        view = self.view
        if self.run is None:
            text = "no run selected — pick an idea and a run"
        else:
            follow = "following" if view.follow else "paused (f: follow)"
            wrap = "wrapped (w: cut)" if view.wrap else "cut (w: wrap, ←/→: scroll)"
            where = f"idea {self.idea_id}" if self.idea_id is not None else "lab"
            text = (f"{where} · {self.run} · {view.line_count:,} lines · {follow}"
                    f" · {wrap}"
                    + (f" · search: {view.search_text}" if view.search_text else ""))
        header = self.query_one("#log-header", Static)
        if text != self._header_text:
            self._header_text = text
            # one line of fixed size: a new text needs no layout pass of the screen
            header.update(text, layout=False)

    @on(LogView.Scanned)
    def _on_scanned(self) -> None:
        self._update_header()

    def action_open_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    def action_close_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = False
        self.view.search_text = ""
        self.view.focus()
        self._update_header()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        self.view.search_text = event.value.strip()
        self.view.action_search_next()
        self.view.focus()
        self._update_header()
