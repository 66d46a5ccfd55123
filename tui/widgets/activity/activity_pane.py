"""What every idea is doing now, the focused idea's LLM stream, and spend vs budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aisci.engine import events as ev
from aisci.tui.bridge import StageLine
from aisci.tui.lab_data import LabReader, Spend
from aisci.tui.widgets.activity.llm_stream import LLMStream
from aisci.tui.widgets.steady_table import SteadyTable
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static


def render_cost(spend: Spend, lab_budget: float | None, idea_budget: float | None) -> Table:
    spent = spend.total
    table = Table(box=None, padding=(0, 1), title_justify="left")
    # labels never wrap ("stage experiment" on two lines read as two rows)
    table.add_column("Spend", style="bold", no_wrap=True, overflow="ellipsis")
    table.add_column("$", justify="right", no_wrap=True)
    table.add_column("Budget", justify="right", no_wrap=True)
    pct = ""
    if lab_budget:
        pct = f"{lab_budget:.2f} ({spent / lab_budget:.0%})"
    table.add_row(Text("lab total", style="bold"), f"{spent:.4f}", pct or "none",
                  style="bold red" if lab_budget and spent >= lab_budget else "")
    for stage, usd in sorted(spend.by_stage.items(), key=lambda kv: -kv[1]):
        table.add_row(f"stage {stage}", f"{usd:.4f}", "")
    for idea, usd in sorted(spend.by_idea.items(), key=lambda kv: -kv[1]):
        if idea is None:
            continue
        over = idea_budget is not None and usd >= idea_budget
        table.add_row(f"idea {idea}", f"{usd:.4f}",
                      f"{idea_budget:.2f}" if idea_budget else "",
                      style="bold red" if over else "")
    if spend.unpriced_calls:
        table.add_row(Text(f"{spend.unpriced_calls} calls without a price", style="yellow"),
                      "", "")
    return table


#: Longest "Now" text; longer progress or failure messages are cut with an ellipsis so the
#: column fits the pane (the idea's detail and the logs have the whole text).
NOW_WIDTH = 56


def now_text(state: str, text: str) -> str | Text:
    """A stage state as the "Now" column shows it, at most NOW_WIDTH cells."""
    value = _NOW[state](text) if state in _NOW else f"{state} {text}".strip()
    plain = value.plain if isinstance(value, Text) else value
    plain = " ".join(plain.split())  # one line
    if len(plain) > NOW_WIDTH:
        plain = plain[:NOW_WIDTH - 1] + "…"
    return Text(plain, style=value.style) if isinstance(value, Text) else plain


#: How each stage state reads in the "Now" column.
_NOW: dict[str, Callable[[str], str | Text]] = {
    "started": lambda _text: "started",
    "done": lambda text: f"done {text}".strip(),
    "failed": lambda text: Text(f"failed: {text}", style="red"),
    "paused": lambda text: Text(f"paused: {text}", style="yellow"),
    "progress": lambda text: text,
}


class ActivityPane(Vertical):
    def __init__(self, reader: LabReader, budgets: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reader = reader
        self.budgets = budgets
        self._progress: dict[int | None, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("activity", classes="pane-header")
        with Vertical(id="activity-top"):
            yield SteadyTable(id="now-table", cursor_type="row")
            yield Static("", id="cost")
        yield LLMStream(id="llm-stream")

    def on_mount(self) -> None:
        table = self.query_one("#now-table", DataTable)
        table.add_column("Idea", key="idea")
        table.add_column("Stage", key="stage")
        table.add_column("Now", key="now")
        # start from the persisted stage states; events keep it current afterwards
        for idea_id, stage, state, reason in self.reader.stages_now():
            table.add_row(str(idea_id), stage, now_text(state, reason) if reason else state,
                          key=str(idea_id))
        self.refresh_cost()

    def stage_lines(self, lines: tuple[StageLine, ...]) -> None:
        table = self.query_one("#now-table", DataTable)
        for line in lines:
            now = now_text(line.state, line.text)
            key = str(line.idea_id)
            label = "lab" if line.idea_id is None else str(line.idea_id)
            if key in table.rows:
                table.update_cell(key, "stage", line.stage, update_width=True)
                table.update_cell(key, "now", now, update_width=True)
            else:
                table.add_row(label, line.stage, now, key=key)

    def llm(self, chunks: tuple[tuple[ev.LLMStreamed, str], ...],
            calls: tuple[ev.Event, ...]) -> None:
        self.query_one(LLMStream).feed(chunks, calls)

    def set_focus_idea(self, idea_id: int | None) -> None:
        self.query_one(LLMStream).set_focus_idea(idea_id)

    def refresh_cost(self) -> None:
        self.query_one("#cost", Static).update(
            render_cost(self.reader.spend(), self.budgets.lab_usd, self.budgets.idea_usd))
