"""The workbench: status bar, pane bar, the two groups of tabbed panes and the footer.

The screen keeps the selected idea and routes the bridge's messages to the panes that
show them, by message type. Engine commands and dialogs are the App's: the panes'
requests (``IdeaTable.ApproveRequested`` ...) and the bridge's ``Alert`` and
``BudgetHit`` bubble up to it. Fast-changing state (log lines, process stats, LLM text)
lives in the panes, never on the Screen, so it never causes a full-screen repaint.
"""

from __future__ import annotations

import time
from pathlib import Path

from aisci.engine.config import Settings
from aisci.tui import bridge as br
from aisci.tui.images import ImageSupport
from aisci.tui.lab_data import IdeaSummary, LabReader
from aisci.tui.screens.chrome import (
    LEFT,
    RIGHT,
    TAB_TITLES,
    PaneBar,
    PaneGroup,
    StatusBar,
    StatusPart,
)
from aisci.tui.widgets.activity.activity_pane import ActivityPane
from aisci.tui.widgets.footer.key_footer import KeyFooter
from aisci.tui.widgets.ideas.idea_detail import IdeaDetail
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaPane
from aisci.tui.widgets.processes.process_table import ProcessRow, ProcessTable
from aisci.tui.widgets.review.scorecard import Scorecard
from aisci.tui.widgets.runs.run_table import RunTable
from aisci.tui.widgets.runs.runs_pane import RunsPane
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

clock = time.time
"""Wall clock; tests freeze it for deterministic snapshots."""

#: The widget that is each pane (shown and hidden by its group).
_PANE = {"ideas": "ideas-pane", "runs": "runs-pane", "review": "scorecard", "log": "log-pane",
         "plots": "media-pane", "processes": "process-table", "activity": "activity-pane"}
#: The widget a pane key focuses.
_FOCUS = {"ideas": "#idea-table", "runs": "#run-table", "review": "#scorecard",
          "log": "#log-view", "plots": "#media-pane", "processes": "#process-table",
          "activity": "#now-table"}


class MainScreen(Screen[None]):
    def __init__(self, reader: LabReader, settings: Settings, images: ImageSupport,
                 status: list[StatusPart]) -> None:
        super().__init__()
        self.reader = reader
        self.settings = settings
        self.images = images
        self.status = status
        self.selected_idea: int | None = None
        self._group = "left-tabs"
        """The group of panes shown in a narrow terminal."""

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(self.status, id="status-bar")
        yield PaneBar("ideas", id="pane-bar")
        with Horizontal(id="panes"):
            with PaneGroup({k: _PANE[k] for k in LEFT}, id="left-tabs"):
                yield PaneBar(LEFT[0], LEFT, TAB_TITLES, classes="group-bar")
                with Vertical(id="ideas-pane"):
                    yield IdeaTable(id="idea-table")
                    yield IdeaDetail(id="idea-detail")
                yield RunsPane(self.reader, id="runs-pane")
                yield Scorecard(id="scorecard")
                yield LogPane(id="log-pane")
            with PaneGroup({k: _PANE[k] for k in RIGHT}, id="right-tabs"):
                yield PaneBar(RIGHT[0], RIGHT, TAB_TITLES, classes="group-bar")
                yield MediaPane(self.images, id="media-pane")
                yield ProcessTable(self.settings.experiment.stall_after_s, id="process-table")
                yield ActivityPane(self.reader, self.settings.budget, id="activity-pane")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.reload_ideas()
        self._load_running()
        self.call_after_refresh(self._initial_focus)

    def set_images(self, images: ImageSupport, status: list[StatusPart]) -> None:
        """The image protocol became known after the first frame."""
        self.images = images
        self.status = status
        self.query_one(StatusBar).set_parts(status)
        self.query_one(MediaPane).set_images(images)

    def _initial_focus(self) -> None:
        # only when the user has not already moved (the idea table may be in a hidden
        # pane by now)
        if self.focused is None:
            self.query_one(IdeaTable).focus()

    def _load_running(self) -> None:
        procs = self.query_one(ProcessTable)
        for row in self.reader.running_runs():
            procs.add_existing(row.idea_id, row.run, row.limit_s or 0.0, row.isolation or "?",
                               row.started_at or clock(), row.log_path or "")

    def show_pane(self, key: str) -> None:
        group = "left-tabs" if key in LEFT else "right-tabs"
        self.query_one(f"#{group}", PaneGroup).show(key)
        self._group = group
        self._show_group()
        self.query_one("#pane-bar", PaneBar).show(key)
        focus = _FOCUS.get(key)
        if focus is not None:
            self.query_one(focus).focus()

    @on(PaneBar.Chosen)
    def _pane_clicked(self, event: PaneBar.Chosen) -> None:
        self.show_pane(event.key)

    def _show_group(self) -> None:
        """A narrow terminal shows one group of panes: the one of the last pane chosen.

        Set as each group's own ``display``, not as a CSS class on their container: a
        class change re-applies the stylesheet to every widget below it (tens of ms per
        key press); ``display`` only hides or shows. A wide terminal shows both groups
        (the inline values are dropped and the stylesheet decides)."""
        narrow = not self.has_class("-wide")
        for group in ("left-tabs", "right-tabs"):
            styles = self.query_one(f"#{group}").styles
            if not narrow:
                styles.clear_rule("display")
            else:
                styles.display = "block" if group == self._group else "none"

    def on_resize(self) -> None:
        # after Screen's own handler has set the breakpoint classes (-narrow / -wide)
        self.call_next(self._show_group)

    # -- selection ------------------------------------------------------------------------
    def reload_ideas(self, ids: frozenset[int] | None = None) -> None:
        table = self.query_one(IdeaTable)
        for summary in self.reader.summaries(ids):
            table.upsert(summary)
        if self.selected_idea is None and table.row_count:
            table.move_cursor(row=0)
            first = table.selected_idea
            if first is not None:
                self.select_idea(first)
        elif self.selected_idea is not None and (ids is None or self.selected_idea in ids):
            self._refresh_selected_detail()

    @on(IdeaTable.Highlighted)
    def _idea_highlighted(self, event: IdeaTable.Highlighted) -> None:
        if event.idea_id != self.selected_idea:
            self.select_idea(event.idea_id)

    def select_idea(self, idea_id: int) -> None:
        self.selected_idea = idea_id
        self._refresh_selected_detail()
        idea = self.reader.idea(idea_id)
        self.query_one(RunsPane).show_idea(idea_id)
        self.query_one(MediaPane).show_idea(self.reader.folder(idea) if idea else None)
        self.query_one(ActivityPane).set_focus_idea(idea_id)
        self._show_default_run(idea_id)

    def _refresh_selected_detail(self) -> None:
        if self.selected_idea is None:
            return
        idea = self.reader.idea(self.selected_idea)
        self.query_one(IdeaDetail).show(
            idea, self.reader.history(idea.id) if idea else [],
            self.reader.stage(idea.id) if idea else ("", ""))
        self.query_one(Scorecard).show_dir(self.reader.folder(idea) if idea else None)

    def _show_default_run(self, idea_id: int) -> None:
        """With no runs there is no log; otherwise the run table's cursor picks the run
        (the running one, else the newest) and its RunSelected message shows it."""
        if not self.query_one(RunTable).runs:
            self.query_one(LogPane).show_run(idea_id, None, None)

    @on(RunTable.RunSelected)
    def _run_selected(self, event: RunTable.RunSelected) -> None:
        self.query_one(LogPane).show_run(event.idea_id, event.run, event.log_path)

    @on(ProcessTable.LogRequested)
    def _process_log(self, event: ProcessTable.LogRequested) -> None:
        """A running process's log, whichever idea is selected (a lab-level run too)."""
        if not event.log_path:
            self.notify(f"{event.run}: its log is not known yet", severity="warning")
            return
        self.query_one(LogPane).show_run(event.idea_id, event.run, Path(event.log_path))
        self.show_pane("log")

    def selected_idea_label(self) -> str | None:
        if self.selected_idea is None:
            return None
        s = self.query_one(IdeaTable).summary(self.selected_idea)
        return f"#{self.selected_idea} {s.name}" if s else f"#{self.selected_idea}"

    def selected_summary(self) -> IdeaSummary | None:
        """The selected idea's table row (status, stage, state, novelty verdict)."""
        if self.selected_idea is None:
            return None
        return self.query_one(IdeaTable).summary(self.selected_idea)

    def selected_stage(self) -> str | None:
        """The selected idea's current stage (for retry / skip)."""
        if self.selected_idea is None:
            return None
        s = self.query_one(IdeaTable).summary(self.selected_idea)
        return s.stage if s and s.stage else None

    def selected_process(self) -> ProcessRow | None:
        return self.query_one(ProcessTable).selected()

    def process_count(self) -> int:
        return len(self.query_one(ProcessTable).rows_by_key)

    # -- bridge messages ------------------------------------------------------------------
    @on(br.IdeasChanged)
    def _ideas_changed(self, msg: br.IdeasChanged) -> None:
        self.reload_ideas(msg.idea_ids)
        if self.selected_idea in msg.idea_ids:
            self.query_one(RunsPane).reload()

    @on(br.StageActivity)
    def _stage_activity(self, msg: br.StageActivity) -> None:
        self.query_one(ActivityPane).stage_lines(msg.lines)

    @on(br.OutputsChanged)
    def _outputs_changed(self, msg: br.OutputsChanged) -> None:
        if self.selected_idea in msg.idea_ids:
            self.query_one(MediaPane).rescan()
            self._refresh_selected_detail()

    @on(br.RunStarted)
    def _run_started(self, msg: br.RunStarted) -> None:
        e = msg.event
        self.query_one(ProcessTable).started(e)
        if e.idea_id == self.selected_idea:
            log = self.query_one(LogPane)
            if log.view.follow or log.run is None:
                log.show_run(e.idea_id, e.run, Path(e.log_path) if e.log_path else None)

    @on(br.RunEnded)
    def _run_ended(self, msg: br.RunEnded) -> None:
        self.query_one(ProcessTable).finished(msg.event.idea_id, msg.event.run)

    @on(br.RunControlled)
    def _run_controlled(self, msg: br.RunControlled) -> None:
        self.query_one(ProcessTable).control(msg.event)

    @on(br.RunsChanged)
    def _runs_changed(self, msg: br.RunsChanged) -> None:
        if self.selected_idea in msg.idea_ids:
            self.query_one(RunsPane).reload()

    @on(br.RunOutputBatch)
    def _run_output(self, msg: br.RunOutputBatch) -> None:
        log = self.query_one(LogPane)
        for idea_id, run in msg.lines:
            log.output_arrived(idea_id, run)

    @on(br.ProcessStatsBatch)
    def _process_stats(self, msg: br.ProcessStatsBatch) -> None:
        procs = self.query_one(ProcessTable)
        for s in msg.stats:
            procs.stats(s)
        for st in msg.stalled:
            procs.stalled(st)

    @on(br.LLMText)
    def _llm_text(self, msg: br.LLMText) -> None:
        self.query_one(ActivityPane).llm(msg.chunks, msg.calls)

    @on(br.CostChanged)
    def _cost(self, msg: br.CostChanged) -> None:
        self.query_one(ActivityPane).refresh_cost()
        if msg.event.idea_id is not None:
            self.reload_ideas(frozenset({msg.event.idea_id}))
