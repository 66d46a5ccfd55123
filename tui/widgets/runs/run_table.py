"""The runs of the selected idea: status, attempt, key metrics vs baseline, time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisci.tui.lab_data import (
    RunSummary,
    fmt_duration,
    guess_lower_is_better,
    metric_delta,
    run_status_label,
)
from aisci.tui.widgets.steady_table import SteadyTable
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

#: Metrics shown as columns (the first ones of the baseline); the rest in the detail.
KEY_METRICS = 2
_STATUS_STYLE = {"ok": "green", "running": "bold cyan", "failed": "bold red",
                 "timeout": "bold red", "killed": "red", "interrupted": "yellow",
                 "warnings": "yellow"}


class RunTable(SteadyTable):
    """One row per run label (newest attempt)."""

    @dataclass
    class RunSelected(Message):
        idea_id: int
        run: str
        log_path: Path | None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.idea_id: int | None = None
        self.runs: list[RunSummary] = []
        self._signature: tuple[object, ...] = ()

    def show(self, idea_id: int, runs: list[RunSummary]) -> None:
        baseline = next((r.metrics for r in runs if r.run == "run_0"), {})
        if not baseline:
            baseline = next((r.metrics for r in runs if r.metrics), {})
        keys = list(baseline)[:KEY_METRICS]
        rows = {r.run: self._cells(r, keys, baseline) for r in runs}
        layout = (idea_id, tuple(keys), tuple(rows))
        if layout == self._signature:
            # same runs and columns: update changed cells in place (no cursor jump)
            self.runs = runs
            for label, cells in rows.items():
                for col, value in zip(self._columns(keys), cells, strict=True):
                    self.update_cell(label, col, value, update_width=True)
            return
        before = {r.run for r in self.runs} if idea_id == self.idea_id else set()
        keep = self.selected_run if idea_id == self.idea_id else None
        self._signature = layout
        self.idea_id, self.runs = idea_id, runs
        self.clear(columns=True)
        for col, label in zip(self._columns(keys), ["Run", "Try", "Status", "Time / limit",
                                                    *keys], strict=True):
            self.add_column(label, key=col)
        for label, cells in rows.items():
            self.add_row(*cells, key=label)
        # a run that just started wins (follow the experiment); else keep the user's
        # choice; else the running run; else the newest
        running = [r.run for r in runs if r.status == "running"]
        fresh = [r for r in running if r not in before] if before else []
        want = (fresh[0] if fresh else keep) or (running[0] if running else
                                                  runs[-1].run if runs else None)
        for i, r in enumerate(runs):
            if r.run == want:
                self.move_cursor(row=i)

    @staticmethod
    def _columns(keys: list[str]) -> list[str]:
        # time before the metrics: a metric with its change is wide, and the time must
        # stay visible in an 80-column terminal
        return ["run", "attempt", "status", "time", *[f"m:{k}" for k in keys]]

    @staticmethod
    def _cells(r: RunSummary, keys: list[str], baseline: dict[str, float]) -> list[object]:
        status = run_status_label(r)
        limit = f" / {fmt_duration(r.limit_s)}" if r.limit_s else ""
        cells: list[object] = [r.run, Text(str(r.attempt), justify="right"),
                               Text(status, style=_STATUS_STYLE.get(status, "")),
                               f"{fmt_duration(r.elapsed_s)}{limit}"]
        for k in keys:
            v = r.metrics.get(k)
            cells.append("—" if v is None else metric_delta(
                k, v, {} if r.run == "run_0" else baseline, guess_lower_is_better(k)))
        return cells

    @property
    def selected_run(self) -> str | None:
        if not self.row_count:
            return None
        return self.runs[self.cursor_row].run if self.cursor_row < len(self.runs) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if self.idea_id is None or event.cursor_row >= len(self.runs):
            return
        r = self.runs[event.cursor_row]
        self.post_message(self.RunSelected(self.idea_id, r.run, r.log_path))
