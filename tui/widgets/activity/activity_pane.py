"""What every idea is doing now, the focused idea's LLM stream, and spend vs budget."""

from __future__ import annotations

from typing import Any

from aisci.engine import events as ev
from aisci.engine.lab.store import LabStore
from aisci.tui.lab_data import current_stage
from aisci.tui.widgets.activity.llm_stream import LLMStream
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static


def render_cost(store: LabStore, lab_budget: float | None, idea_budget: float | None) -> Table:
    spent = store.spend()
    by_stage = store.spend_by("stage")
    by_idea = store.spend_by("idea_id")
    table = Table(box=None, padding=(0, 1), title_justify="left")
    table.add_column("Spend", style="bold")
    table.add_column("$", justify="right")
    table.add_column("Budget", justify="right")
    pct = ""
    if lab_budget:
        pct = f"{lab_budget:.2f} ({spent / lab_budget:.0%})"
    table.add_row(Text("lab total", style="bold"), f"{spent:.4f}", pct or "none",
                  style="bold red" if lab_budget and spent >= lab_budget else "")
    for stage, usd in sorted(by_stage.items(), key=lambda kv: -kv[1]):
        table.add_row(f"stage {stage}", f"{usd:.4f}", "")
    for idea, usd in sorted(by_idea.items(), key=lambda kv: -kv[1]):
        if idea is None:
            continue
        over = idea_budget is not None and usd >= idea_budget
        table.add_row(f"idea {idea}", f"{usd:.4f}",
                      f"{idea_budget:.2f}" if idea_budget else "",
                      style="bold red" if over else "")
    unknown = store.unknown_cost_calls()
    if unknown:
        table.add_row(Text(f"{unknown} calls without a price", style="yellow"), "", "")
    return table


class ActivityPane(Vertical):
    def __init__(self, store: LabStore, budgets: Any, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.store = store
        self.budgets = budgets
        self._progress: dict[int | None, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("activity", classes="pane-header")
        with Horizontal(id="activity-top"):
            yield DataTable(id="now-table", cursor_type="row")
            yield Static("", id="cost")
        yield LLMStream(id="llm-stream")

    def on_mount(self) -> None:
        table = self.query_one("#now-table", DataTable)
        table.add_column("Idea", key="idea")
        table.add_column("Stage", key="stage")
        table.add_column("Now", key="now")
        # start from the persisted stage states; events keep it current afterwards
        for idea in self.store.list_ideas():
            stage, state = current_stage(self.store.stages(idea.id))
            if stage:
                table.add_row(str(idea.id), stage, state, key=str(idea.id))
        self.refresh_cost()

    def stage_events(self, events: tuple[ev.Event, ...]) -> None:
        table = self.query_one("#now-table", DataTable)
        for e in events:
            idea = getattr(e, "idea_id", None)
            stage = getattr(e, "stage", "")
            if isinstance(e, ev.StageStarted):
                now = "started"
            elif isinstance(e, ev.StageFinished):
                now = f"done {e.summary}".strip()
            elif isinstance(e, ev.StageFailed):
                now = Text(f"failed: {e.reason}", style="red")
            elif isinstance(e, ev.StagePaused):
                now = Text(f"paused: {e.reason}", style="yellow")
            elif isinstance(e, ev.StageProgress):
                now = e.message
            else:
                continue
            key = str(idea)
            label = "lab" if idea is None else str(idea)
            if key in table.rows:
                table.update_cell(key, "stage", stage, update_width=True)
                table.update_cell(key, "now", now, update_width=True)
            else:
                table.add_row(label, stage, now, key=key)

    def llm(self, chunks: tuple[tuple[ev.LLMStreamed, str], ...],
            calls: tuple[ev.Event, ...]) -> None:
        self.query_one(LLMStream).feed(chunks, calls)

    def set_focus_idea(self, idea_id: int | None) -> None:
        self.query_one(LLMStream).set_focus_idea(idea_id)

    def refresh_cost(self) -> None:
        self.query_one("#cost", Static).update(
            render_cost(self.store, self.budgets.lab_usd, self.budgets.idea_usd))
