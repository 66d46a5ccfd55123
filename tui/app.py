"""The aisci Textual app: panes around one in-process engine.

The app is the mediator: panes post typed requests (``IdeaTable.ApproveRequested``,
``ProcessTable.KillRequested`` ...) that the app turns into engine commands, and the
:mod:`bridge` posts batched engine events that the app routes to the one pane that
cares. Fast-changing state (log lines, process stats, LLM text) lives in the panes,
never on the App or Screen, so it never causes a full-screen repaint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.run.sandbox import isolation_warning
from aisci.tui import bridge as br
from aisci.tui.commands import AisciCommands
from aisci.tui.engine_port import invoke, lab_of
from aisci.tui.images import ImageSupport
from aisci.tui.lab_data import current_stage, idea_dir, summarize
from aisci.tui.screens.dialogs import ConfirmDialog, NumberDialog, ReasonDialog
from aisci.tui.screens.edit_idea import EditIdeaScreen
from aisci.tui.screens.help import HelpScreen
from aisci.tui.themes import load_themes
from aisci.tui.widgets.activity.activity_pane import ActivityPane
from aisci.tui.widgets.ideas.idea_detail import IdeaDetail
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaPane
from aisci.tui.widgets.processes.process_table import ProcessTable
from aisci.tui.widgets.review.scorecard import Scorecard
from aisci.tui.widgets.runs.run_table import RunTable
from aisci.tui.widgets.runs.runs_pane import RunsPane
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

clock = time.time
"""Wall clock; tests freeze it for deterministic snapshots."""

# In a wide terminal the two groups sit side by side: the log (left) next to the plots
# (right) is the view to watch a run in.
LEFT = ("ideas", "runs", "review", "log")
RIGHT = ("plots", "processes", "activity")
#: Pane names short enough for an 80-column pane bar.
SHORT_TITLES = ("Ideas", "Runs", "Review", "Log", "Plots", "Processes", "Cost")


class AisciApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "aisci"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]
    AUTO_FOCUS = "#idea-table"
    COMMANDS = App.COMMANDS | {AisciCommands}
    PANES = (("ideas", "Ideas"), ("runs", "Runs & diffs"), ("review", "Review"),
             ("log", "Training log"), ("plots", "Plots & paper"), ("processes", "Processes"),
             ("activity", "Activity & cost"))
    BINDINGS = [
        *[Binding(str(i + 1), f"pane('{key}')", title, show=False, id=f"pane-{key}")
          for i, (key, title) in enumerate(PANES)],
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True, id="quit-ctrl-c"),
    ]

    def __init__(self, engine: Any, *, images: ImageSupport, demo_note: str | None = None,
                 start_engine: bool = True, model_label: str | None = None,
                 start_notice: str | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.store = engine.store
        self.settings = engine.settings
        self.lab: Path = lab_of(engine)
        self.images = images
        self.demo_note = demo_note
        self.start_notice = start_notice
        self.start_engine = start_engine
        self.model_label = model_label or self.settings.models.default
        self.bridge = br.EngineBridge(engine.bus, self)
        self.selected_idea: int | None = None
        self._engine_started = False

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), id="status-bar", markup=False)
        yield Static("  ".join(f"{i + 1} {t}" for i, t in enumerate(SHORT_TITLES)),
                     id="pane-bar", markup=False)
        with Horizontal(id="panes"):
            with TabbedContent(id="left-tabs"):
                with TabPane("1 Ideas", id="ideas"), Vertical():
                    yield IdeaTable(id="idea-table")
                    yield IdeaDetail(id="idea-detail")
                with TabPane("2 Runs & diffs", id="runs"):
                    yield RunsPane(self.lab, self.store, id="runs-pane")
                with TabPane("3 Review", id="review"):
                    yield Scorecard(id="scorecard")
                with TabPane("4 Log", id="log"):
                    yield LogPane(id="log-pane")
            with TabbedContent(id="right-tabs"):
                with TabPane("5 Plots & paper", id="plots"):
                    yield MediaPane(self.images, id="media-pane")
                with TabPane("6 Processes", id="processes"):
                    yield ProcessTable(self.settings.experiment.stall_after_s,
                                       id="process-table")
                with TabPane("7 Activity & cost", id="activity"):
                    yield ActivityPane(self.store, self.settings.budget, id="activity-pane")
        yield Footer()

    def pane(self, selector: Any, expect_type: Any = None) -> Any:
        """A widget of the main screen (``query_one`` on the app would search the modal
        on top of the stack)."""
        if expect_type is not None:
            return self.screen_stack[0].query_one(selector, expect_type)
        return self.screen_stack[0].query_one(selector)

    def _status_text(self) -> str:
        parts = [f"aisci · lab {self.lab.name}", f"model {self.model_label}",
                 f"images {self.images.protocol}"]
        if self.demo_note:
            parts.insert(0, self.demo_note)
        warning = isolation_warning(self.settings.sandbox)
        if warning:
            parts.insert(0, f"⚠ {warning}")
        return " │ ".join(parts)

    async def on_mount(self) -> None:
        for theme in load_themes(self.lab):
            self.register_theme(theme)
        self.set_theme_name(self.settings.tui.theme)
        if self.settings.tui.keys:
            self.set_keymap(dict(self.settings.tui.keys))
        self.bridge.start()
        self.reload_ideas()
        self._load_running()
        self.call_after_refresh(self._initial_focus)
        if self.start_notice:
            self.notify(self.start_notice, title="Scripted model", timeout=20)
        if self.start_engine:
            self.run_worker(self._start_engine(), name="engine-start", exit_on_error=False)

    def _initial_focus(self) -> None:
        # only when the user has not already moved (focusing a widget in a hidden tab
        # would switch the tab back)
        if self.focused is None:
            self.pane(IdeaTable).focus()

    async def _start_engine(self) -> None:
        await self.engine.start()
        self._engine_started = True
        self.reload_ideas()

    def set_theme_name(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
        else:
            self.notify(f"theme {name!r} not found; themes: {', '.join(self.available_themes)}",
                        severity="warning")

    # -- panes and selection ---------------------------------------------------------------
    def action_pane(self, key: str) -> None:
        group = "left-tabs" if key in LEFT else "right-tabs"
        self.pane(f"#{group}", TabbedContent).active = key
        self.pane("#panes").set_class(group == "right-tabs", "-right")
        focus = {"ideas": IdeaTable, "runs": RunTable, "review": Scorecard, "log": "#log-view",
                 "plots": MediaPane, "processes": ProcessTable}.get(key)
        if focus is not None:
            self.pane(focus).focus()  # type: ignore[arg-type]

    def reload_ideas(self, ids: frozenset[int] | None = None) -> None:
        table = self.pane(IdeaTable)
        spend = self.store.spend_by("idea_id")
        ideas = self.store.list_ideas() if ids is None else [
            i for i in (self.store.get_idea(n) for n in sorted(ids)) if i is not None]
        for idea in ideas:
            table.upsert(summarize(self.lab, self.store, idea, spend.get(idea.id, 0.0)))
        if self.selected_idea is None and table.row_count:
            table.move_cursor(row=0)
            first = table.selected_idea
            if first is not None:
                self.select_idea(first)
        elif self.selected_idea is not None and (ids is None or self.selected_idea in ids):
            self._refresh_selected_detail()

    def _load_running(self) -> None:
        procs = self.pane(ProcessTable)
        for row in self.store.running_runs():
            procs.add_existing(row.idea_id, row.run, row.limit_s or 0.0, row.isolation or "?",
                               row.started_at or clock())

    @on(IdeaTable.Highlighted)
    def _idea_highlighted(self, event: IdeaTable.Highlighted) -> None:
        if event.idea_id != self.selected_idea:
            self.select_idea(event.idea_id)

    def select_idea(self, idea_id: int) -> None:
        self.selected_idea = idea_id
        self._refresh_selected_detail()
        idea = self.store.get_idea(idea_id)
        directory = idea_dir(self.lab, idea) if idea else None
        self.pane(RunsPane).show_idea(idea_id)
        self.pane(MediaPane).show_idea(directory)
        self.pane(ActivityPane).set_focus_idea(idea_id)
        self._show_default_run(idea_id)

    def _refresh_selected_detail(self) -> None:
        if self.selected_idea is None:
            return
        idea = self.store.get_idea(self.selected_idea)
        self.pane(IdeaDetail).show(
            idea, self.store.idea_history(self.selected_idea) if idea else [],
            current_stage(self.store.stages(idea.id)) if idea else ("", ""))
        self.pane(Scorecard).show_dir(idea_dir(self.lab, idea) if idea else None)

    def _show_default_run(self, idea_id: int) -> None:
        """With no runs there is no log; otherwise the run table's cursor picks the run
        (the running one, else the newest) and its RunSelected message shows it."""
        if not self.pane(RunTable).runs:
            self.pane(LogPane).show_run(idea_id, None, None)

    @on(RunTable.RunSelected)
    def _run_selected(self, event: RunTable.RunSelected) -> None:
        self.pane(LogPane).show_run(event.idea_id, event.run, event.log_path)

    def selected_idea_label(self) -> str | None:
        if self.selected_idea is None:
            return None
        s = self.pane(IdeaTable).summary(self.selected_idea)
        return f"#{self.selected_idea} {s.name}" if s else f"#{self.selected_idea}"

    def selected_stage(self) -> str | None:
        """The selected idea's current stage (for retry / skip)."""
        if self.selected_idea is None:
            return None
        s = self.pane(IdeaTable).summary(self.selected_idea)
        return s.stage if s and s.stage else None

    def idea_command(self, name: str, *args: Any) -> None:
        """Run an engine command on the selected idea (pause, resume, retry, skip, ...)."""
        if self.selected_idea is not None:
            self.command(name, self.selected_idea, *args,
                         done=f"idea {self.selected_idea}: {name.replace('_', ' ')} {' '.join(map(str, args))}".strip())

    def selected_process_label(self) -> str | None:
        row = self.pane(ProcessTable).selected()
        return None if row is None else f"{row.run} of idea {row.idea_id}"

    # -- bridge messages ---------------------------------------------------------------------
    @on(br.IdeasChanged)
    def _ideas_changed(self, msg: br.IdeasChanged) -> None:
        self.reload_ideas(msg.idea_ids)
        if self.selected_idea in msg.idea_ids:
            self.pane(RunsPane).reload()

    @on(br.StageActivity)
    def _stage_activity(self, msg: br.StageActivity) -> None:
        self.pane(ActivityPane).stage_events(msg.events)
        for e in msg.events:
            if isinstance(e, ev.StageFailed):
                self.notify(f"idea {e.idea_id}: {e.stage} failed: {e.reason}",
                            title="Stage failed", severity="error", timeout=10)
            elif isinstance(e, ev.StageFinished) and e.stage in ("write", "improve"):
                self.notify(f"idea {e.idea_id}: paper ready {e.summary}".strip(),
                            title="Paper finished", timeout=8)
            elif isinstance(e, ev.StagePaused) and e.stage != "approval":
                self.notify(f"idea {e.idea_id}: {e.stage} paused: {e.reason}",
                            severity="warning", timeout=8)
            if (isinstance(e, ev.StageFinished) and e.idea_id == self.selected_idea
                    and e.stage in ("plot", "write", "improve", "review", "integrity")):
                self.pane(MediaPane).rescan()
                self._refresh_selected_detail()

    @on(br.RunsChanged)
    def _runs_changed(self, msg: br.RunsChanged) -> None:
        procs = self.pane(ProcessTable)
        for e in msg.events:
            if isinstance(e, ev.RunStarted):
                procs.started(e)
                if e.idea_id == self.selected_idea:
                    log = self.pane(LogPane)
                    if log.view.follow or log.run is None:
                        path = Path(e.log_path) if e.log_path else None
                        log.show_run(e.idea_id, e.run, path)
            elif isinstance(e, ev.RunFinished):
                procs.finished(e.idea_id, e.run)
            elif isinstance(e, ev.RunControl):
                procs.control(e)
        if self.selected_idea in msg.idea_ids:
            self.pane(RunsPane).reload()

    @on(br.RunOutputBatch)
    def _run_output(self, msg: br.RunOutputBatch) -> None:
        log = self.pane(LogPane)
        for idea_id, run in msg.lines:
            log.output_arrived(idea_id, run)

    @on(br.ProcessStatsBatch)
    def _process_stats(self, msg: br.ProcessStatsBatch) -> None:
        procs = self.pane(ProcessTable)
        for s in msg.stats:
            procs.stats(s)
        for st in msg.stalled:
            procs.stalled(st)
            self.notify(f"idea {st.idea_id} {st.run}: no output for {st.silent_for_s:.0f}s",
                        title="Run stalled", severity="warning")

    @on(br.LLMText)
    def _llm_text(self, msg: br.LLMText) -> None:
        self.pane(ActivityPane).llm(msg.chunks, msg.calls)

    @on(br.CostChanged)
    def _cost(self, msg: br.CostChanged) -> None:
        self.pane(ActivityPane).refresh_cost()
        if msg.event.idea_id is not None:
            self.reload_ideas(frozenset({msg.event.idea_id}))

    @on(br.BudgetHit)
    def _budget(self, msg: br.BudgetHit) -> None:
        e = msg.event
        self.ask_budget(e.scope, e)

    @on(br.EngineNotice)
    def _notice(self, msg: br.EngineNotice) -> None:
        for e in msg.events:
            if isinstance(e, ev.Notice):
                sev = {"error": "error", "warning": "warning"}.get(e.level, "information")
                self.notify(e.message, severity=sev)  # type: ignore[arg-type]
            elif isinstance(e, ev.LiteratureStatus) and e.breaker == "open":
                self.notify(f"literature source {e.source} unavailable ({e.detail})",
                            severity="warning")

    # -- idea commands -----------------------------------------------------------------------
    @on(IdeaTable.ApproveRequested)
    def _approve(self, msg: IdeaTable.ApproveRequested) -> None:
        self.command("approve", msg.idea_id, done=f"idea {msg.idea_id} approved")

    @on(IdeaTable.VetoRequested)
    def _veto(self, msg: IdeaTable.VetoRequested) -> None:
        def vetoed(reason: str | None) -> None:
            if reason:
                self.command("veto", msg.idea_id, reason, done=f"idea {msg.idea_id} vetoed")

        self.push_screen(ReasonDialog(f"Veto idea #{msg.idea_id}: why? (fed back to ideation)",
                                      "e.g. already done by X; not feasible on one GPU"),
                         vetoed)

    @on(IdeaTable.EditRequested)
    def _edit(self, msg: IdeaTable.EditRequested) -> None:
        idea = self.store.get_idea(msg.idea_id)
        if idea is None:
            return

        def edited(fields: dict[str, Any] | None) -> None:
            if fields:
                self.command("edit_idea", msg.idea_id, fields, done=f"idea {msg.idea_id} edited")

        self.push_screen(EditIdeaScreen(idea.id, {"Name": idea.name, **idea.data}), edited)

    @on(IdeaTable.GenerateRequested)
    def _generate(self) -> None:
        self.action_generate()

    def action_generate(self) -> None:
        def chosen(n: float | None) -> None:
            if n:
                self.command("generate_ideas", int(n), done=f"generating {int(n)} more ideas")

        self.push_screen(NumberDialog("How many more ideas?", 5, 1, 500), chosen)

    def action_approve_selected(self) -> None:
        self.pane(IdeaTable).action_approve()

    def action_veto_selected(self) -> None:
        self.pane(IdeaTable).action_veto()

    def action_edit_selected(self) -> None:
        self.pane(IdeaTable).action_edit()

    # -- process commands -------------------------------------------------------------------------
    @on(ProcessTable.KillRequested)
    def _kill(self, msg: ProcessTable.KillRequested) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.command("kill_run", msg.idea_id, msg.run,
                             done=f"killing {msg.run} of idea {msg.idea_id}")

        self.push_screen(ConfirmDialog(
            f"Kill {msg.run} of idea {msg.idea_id} and its whole process tree?",
            yes="Kill"), confirmed)

    @on(ProcessTable.ExtendRequested)
    def _extend(self, msg: ProcessTable.ExtendRequested) -> None:
        def chosen(minutes: float | None) -> None:
            if minutes:
                self._extend_run(msg.idea_id, msg.run, minutes * 60)

        self.push_screen(NumberDialog(f"Extend {msg.run} of idea {msg.idea_id} by minutes:",
                                      15, 1, 24 * 60), chosen)

    def _extend_run(self, idea_id: int | None, run: str, seconds: float) -> None:
        self.command("extend_run", idea_id, run, seconds,
                     done=f"{run} of idea {idea_id}: +{seconds / 60:g} min")

    @on(ProcessTable.PauseRequested)
    def _pause(self, msg: ProcessTable.PauseRequested) -> None:
        name = "resume_run" if msg.resume else "pause_run"
        self.command(name, msg.idea_id, msg.run,
                     done=f"{msg.run} of idea {msg.idea_id} {'resumed' if msg.resume else 'paused'}")

    def action_kill_selected(self) -> None:
        self.pane(ProcessTable).action_kill()

    def action_extend_selected(self) -> None:
        self.pane(ProcessTable).action_extend()

    def action_pause_selected(self) -> None:
        self.pane(ProcessTable).action_pause()

    def extend_selected(self, seconds: float) -> None:
        row = self.pane(ProcessTable).selected()
        if row is not None:
            self._extend_run(row.idea_id, row.run, seconds)

    # -- budget ---------------------------------------------------------------------------------
    def ask_budget(self, scope: str, event: ev.BudgetReached | None) -> None:
        current = getattr(self.settings.budget, f"{scope}_usd", None) or 0.0
        if event is not None:
            title = (f"Budget reached: {scope} spent ${event.spent_usd:.2f} of "
                     f"${event.budget_usd:.2f}. The pipeline is paused. New {scope} budget ($):")
        else:
            title = f"New {scope} budget in dollars (now {current:.2f}):"
        suggestion = max(current * 2, (event.spent_usd if event else 0.0) + 1.0, 1.0)

        def chosen(usd: float | None) -> None:
            if usd is not None:
                self.command("raise_budget", scope, usd, done=f"{scope} budget now ${usd:.2f}")
                self.pane(ActivityPane).refresh_cost()

        self.push_screen(NumberDialog(title, round(suggestion, 2), 0, 1e6, " dollars"), chosen)

    # -- calling the engine -----------------------------------------------------------------------
    def command(self, name: str, *args: Any, done: str = "") -> None:
        """Run an engine command on a worker; errors land in one place (below)."""
        self.run_worker(self._command(name, args, done), name=f"command:{name}",
                        group="commands", exit_on_error=False)

    async def _command(self, name: str, args: tuple[Any, ...], done: str) -> Any:
        result = await invoke(self.engine, name, *args)
        if name == "kill_run" and result is False:
            self.notify(f"{args[1]} of idea {args[0]} is not running", severity="warning")
        elif done:
            self.notify(done, timeout=3)
        return result

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"{event.worker.name}: {err}", title="Error", severity="error",
                        timeout=15)

    # -- follow / split / help / quit --------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.pane(LogPane).view.action_toggle_follow()

    def action_toggle_split(self) -> None:
        self.pane(RunsPane).action_toggle_split()

    def action_help(self) -> None:
        rows: list[tuple[str, str, str, str]] = []
        seen: set[str] = set()
        for cls in (AisciApp, IdeaTable, RunsPane, LogPane, type(self.pane(LogPane).view),
                    MediaPane, ProcessTable):
            for b in cls.BINDINGS:
                if not isinstance(b, Binding) or b.id in seen:
                    continue
                seen.add(b.id or b.key)
                rows.append((cls.__name__.removesuffix("App") or "App", b.key, b.description,
                             b.id or ""))
        self.push_screen(HelpScreen(rows))

    def running_processes(self) -> int:
        procs = len(self.pane(ProcessTable).rows_by_key)
        if self._engine_started and hasattr(self.engine, "processes"):
            try:
                procs = max(procs, len(self.engine.processes()))
            except RuntimeError:
                pass
        return procs

    def action_quit_app(self) -> None:
        n = self.running_processes()
        if n == 0:
            self.shutdown()
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.shutdown()

        self.push_screen(ConfirmDialog(
            f"{n} experiment process(es) running. Quit anyway? They are stopped and "
            "resumed from the last finished step next time.", yes="Quit"), confirmed)

    @work(exclusive=True, group="shutdown")
    async def shutdown(self) -> None:
        await self.bridge.stop()
        if self._engine_started or self.start_engine:
            try:
                await self.engine.stop()
            except RuntimeError as exc:
                self.log.error(f"engine stop: {exc}")
        self.exit()
