"""Runs and diffs: the selected idea's runs on top, the selected run's diff below."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aisci.tui.lab_data import LabReader
from aisci.tui.widgets.runs.diff_view import DiffView, git_diff, previous_ref
from aisci.tui.widgets.runs.run_table import RunTable
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

clock = time.time
"""Wall clock; tests freeze it for deterministic snapshots."""


class RunsPane(Vertical):
    BINDINGS = [Binding("s", "toggle_split", "Split diff", id="diff-split")]

    def __init__(self, reader: LabReader, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reader = reader
        self.idea_id: int | None = None

    def compose(self) -> ComposeResult:
        yield Static("runs", id="runs-header", classes="pane-header", markup=False)
        yield RunTable(id="run-table")
        yield DiffView(id="diff-view")

    def show_idea(self, idea_id: int | None) -> None:
        self.idea_id = idea_id
        self.reload()

    def reload(self) -> None:
        if self.idea_id is None:
            return
        idea = self.reader.idea(self.idea_id)
        if idea is None:
            return
        runs = self.reader.runs(idea, clock())
        self.query_one(RunTable).show(idea.id, runs)
        self.query_one("#runs-header", Static).update(
            f"runs of #{idea.id} {idea.name} · {len(runs)} runs · s: unified/split")

    @on(RunTable.RunSelected)
    def _run_selected(self, event: RunTable.RunSelected) -> None:
        idea = self.reader.idea(event.idea_id)
        if idea is None:
            return
        self._load_diff(self.reader.folder(idea), event.run)

    @work(thread=True, exclusive=True, group="diff")
    def _load_diff(self, repo: Path, run: str) -> None:
        diff = git_diff(repo, run)
        prev = previous_ref(run)
        if prev:
            title = f"{run} vs {prev}"
        elif run == "run_0":
            title = "run_0 (the unmodified template)"
        else:
            title = f"{run} (not an experiment run: no code diff)"
        self.app.call_from_thread(self.query_one(DiffView).show, title, diff)

    def action_toggle_split(self) -> None:
        view = self.query_one(DiffView)
        view.split = not view.split
