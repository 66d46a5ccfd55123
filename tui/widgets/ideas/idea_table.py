"""The idea archive table: scores, novelty verdict, status/stage, review, cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aisci.tui.lab_data import IdeaSummary
from aisci.tui.widgets.steady_table import SteadyTable
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

COLUMNS = (("id", "ID"), ("name", "Name"), ("ifn", "I/F/N"), ("verdict", "Novelty"),
           ("status", "Status"), ("stage", "Stage"), ("overall", "Score"),
           ("cost", "$"))

_STATUS_STYLE = {"approved": "bold green", "vetoed": "red", "edited": "yellow",
                 "checked": "cyan", "proposed": ""}
_STATE_STYLE = {"running": "bold cyan", "failed": "bold red", "paused": "yellow",
                "done": "green", "waiting": "magenta", "vetoed": "dim"}
# One glyph per stage state keeps every column visible in half of a 160-column screen;
# the detail panel below spells the state out.
_STATE_GLYPH = {"running": "▶", "failed": "✗", "paused": "‖", "done": "✓", "waiting": "?",
                "skipped": "–"}
NAME_WIDTH = 18
"""Longer names are cut with an ellipsis (the detail panel has the full name)."""


class IdeaTable(SteadyTable):
    """One row per idea; posts typed requests that the screen turns into engine calls."""

    BINDINGS = [
        Binding("a", "approve", "Approve", id="approve-idea"),
        Binding("v", "veto", "Veto", id="veto-idea"),
        Binding("e", "edit", "Edit", id="edit-idea"),
        Binding("g", "generate", "More ideas", id="generate-ideas"),
    ]

    @dataclass
    class Highlighted(Message):
        idea_id: int

    @dataclass
    class ApproveRequested(Message):
        idea_id: int

    @dataclass
    class VetoRequested(Message):
        idea_id: int

    @dataclass
    class EditRequested(Message):
        idea_id: int

    class GenerateRequested(Message):
        pass

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[int, IdeaSummary] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_idea(self) -> int | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def upsert(self, s: IdeaSummary) -> None:
        """Add or refresh one idea's row (only changed cells are repainted)."""
        cells = self._cells(s)
        key = str(s.id)
        if s.id in self._rows:
            for (col, _), value in zip(COLUMNS, cells, strict=True):
                self.update_cell(key, col, value, update_width=True)
        else:
            self.add_row(*cells, key=key)
        self._rows[s.id] = s

    def summary(self, idea_id: int) -> IdeaSummary | None:
        return self._rows.get(idea_id)

    @staticmethod
    def _cells(s: IdeaSummary) -> tuple[object, ...]:
        state = _STATE_GLYPH.get(s.stage_state, s.stage_state)
        stage = Text(f"{s.stage} {state}".strip() or "—",
                     style=_STATE_STYLE.get(s.stage_state, ""))
        name = s.name if len(s.name) <= NAME_WIDTH else s.name[:NAME_WIDTH - 1] + "…"
        return (Text(str(s.id), justify="right"), name,
                f"{s.interestingness}/{s.feasibility}/{s.novelty_score}", s.verdict,
                Text(s.status, style=_STATUS_STYLE.get(s.status, "")), stage,
                Text(s.overall or "—", justify="right"),
                Text(f"{s.cost_usd:.2f}", justify="right"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.post_message(self.Highlighted(int(event.row_key.value)))

    def _request(self, message_type: Callable[[int], Message]) -> None:
        idea = self.selected_idea
        if idea is None:
            self.notify("no idea selected", severity="warning")
            return
        self.post_message(message_type(idea))

    def action_approve(self) -> None:
        self._request(self.ApproveRequested)

    def action_veto(self) -> None:
        self._request(self.VetoRequested)

    def action_edit(self) -> None:
        self._request(self.EditRequested)

    def action_generate(self) -> None:
        self.post_message(self.GenerateRequested())
