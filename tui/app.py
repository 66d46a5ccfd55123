"""The aisci Textual app: the main screen's panes around one in-process engine.

The app owns the engine (through :class:`EnginePort`) and is the mediator: panes post
typed requests (``IdeaTable.ApproveRequested``, ``ProcessTable.KillRequested`` ...) that
the app turns into engine commands, asking first in a dialog where needed. The
:mod:`bridge` posts batched engine events to the :class:`MainScreen`, which routes them
to the panes; its ``Alert`` and ``BudgetHit`` messages bubble up to the app.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.errors import AisciError, save_traceback, user_message
from aisci.engine.run.sandbox import isolation_warning
from aisci.tui import bridge as br
from aisci.tui.commands import AisciCommands
from aisci.tui.engine_port import EnginePort
from aisci.tui.images import ImageSupport, probe_in_app
from aisci.tui.lab_data import LabReader
from aisci.tui.screens.dialogs import ChoiceDialog, ConfirmDialog, NumberDialog, ReasonDialog
from aisci.tui.screens.edit_idea import EditIdeaScreen
from aisci.tui.screens.help import HelpScreen
from aisci.tui.screens.main import PANES, MainScreen, StatusPart
from aisci.tui.themes import load_themes
from aisci.tui.widgets.activity.activity_pane import ActivityPane
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaPane
from aisci.tui.widgets.processes.process_table import ProcessTable
from aisci.tui.widgets.review.scorecard import Scorecard
from aisci.tui.widgets.runs.runs_pane import RunsPane
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

#: Where each binding works, as the help screen names it (the panes' own titles).
HELP_PLACES = {"AisciApp": "Everywhere", "IdeaTable": "Ideas", "RunsPane": "Runs & diffs",
               "Scorecard": "Review", "LogPane": "Training log", "LogView": "Training log",
               "MediaPane": "Plots & paper", "ProcessTable": "Processes"}


EXIT_STOPPED = "stopped"
"""The app's exit results: the engine stopped with the UI; """
EXIT_DETACHED = "detached"
"""the UI closed and the in-process engine carries on without it;"""
EXIT_LEFT = "left"
"""an attached (or read-only) viewer left; the engine, if any, runs in another process;"""
EXIT_REATTACH = "reattach"
"""the viewer was dropped by a live engine and attaches again;"""
EXIT_RESTART = "restart"
"""the attached engine died and the user asked to start it here."""


class AisciApp(App[str]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "aisci"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]
    AUTO_FOCUS = "#idea-table"
    COMMANDS = App.COMMANDS | {AisciCommands}
    BINDINGS = [
        *[Binding(str(i + 1), f"pane('{key}')", title, show=False, id=f"pane-{key}")
          for i, (key, title) in enumerate(PANES)],
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("d", "detach", "Detach", id="detach"),
        Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True, id="quit-ctrl-c"),
    ]

    def __init__(self, engine: EnginePort, *, images: ImageSupport,
                 demo_note: str | None = None, start_engine: bool = True,
                 model_label: str | None = None, start_notice: str | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.settings = engine.settings
        self.lab = engine.lab
        self.images = images
        self.demo_note = demo_note
        self.start_notice = start_notice
        self.start_engine = start_engine
        self.model_label = model_label or self.settings.models.default
        self.read_only: str | None = engine.read_only
        """Why the lab is only viewed (commands disabled), or None."""
        self.main = MainScreen(LabReader(engine.lab, engine.store), self.settings, images,
                               self._status_text())
        self.bridge = br.EngineBridge(engine.bus, self.main)
        self._engine_started = False
        self._stop_source = ""
        """Who asked the engine to stop (an attached viewer then says so, not "gone")."""

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette entries, less its "Quit" (it would skip the question
        asked when experiments run; aisci's Quit is in the palette) and "Keys" (internal
        widget names; the Help screen lists every key)."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    def get_default_screen(self) -> Screen[None]:
        return self.main

    def _status_text(self) -> list[StatusPart]:
        """The status bar's parts, each with a short form for a narrow terminal."""
        parts: list[StatusPart] = [
            (f"aisci · lab {self.lab.name}", f"lab {self.lab.name}"),
            (f"model {self.model_label}", self.model_label),
            (f"images {self.images.protocol}" + ("…" if self.images.pending else ""), ""),
        ]
        if self.demo_note:
            parts.insert(0, (self.demo_note, "DEMO (scripted)"))
        if self.engine.attached_to is not None:
            parts.insert(0, (f"attached to engine {self.engine.attached_to}",
                             f"engine {self.engine.attached_to}"))
        if self.read_only:
            parts.insert(0, ("READ-ONLY viewer: commands disabled", "READ-ONLY"))
        warning = isolation_warning(self.settings.sandbox)
        if warning:
            parts.insert(0, (f"⚠ {warning}", "⚠ " + warning.split(":")[0].split(";")[0]))
        return parts

    async def on_mount(self) -> None:
        themes, problems = load_themes(self.lab)
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            self.notify(problem, title="Theme not loaded", severity="warning", timeout=10)
        self.set_theme_name(self.settings.tui.theme)
        if self.settings.tui.keys:
            self.set_keymap(dict(self.settings.tui.keys))
        # failures on record are shown in the activity pane, not toasted again at launch
        self.bridge.known_failures(self.main.reader.failed_stages())
        self.bridge.start()
        if self.read_only:
            self.notify(f"{self.read_only}. Opened as a viewer: approving, running and "
                        "every other command are disabled.", title="Read-only lab",
                        severity="warning", timeout=15)
        if self.start_notice:
            self.notify(self.start_notice, title="Scripted model", timeout=20)
        if self.start_engine:
            self.run_worker(self._start_engine(), name="engine-start", exit_on_error=False)
        if not self.is_headless:  # tests run many apps in one process: nothing frozen
            self.call_after_refresh(self._freeze_startup_heap)
        if self.images.pending:  # after the first frame: the probe may wait on the terminal
            self.call_after_refresh(self._probe_images)

    @work(thread=True, exclusive=True, group="image-probe", exit_on_error=False)
    def _probe_images(self) -> None:
        support = probe_in_app(self._driver, self.images.requested)
        self.call_from_thread(self._images_known, support)

    def _images_known(self, support: ImageSupport) -> None:
        self.images = support
        self.main.set_images(support, self._status_text())

    @staticmethod
    def _freeze_startup_heap() -> None:
        """Everything built up to the first frame (modules, settings, the engine, the
        screen's widgets) lives as long as the app. Moved out of the collector's reach,
        it is no longer walked by every full collection: those paused the UI for 100 ms
        and more at each one, a cost that grew with everything ever loaded. Later garbage
        (widgets a footer rebuild drops, per-frame caches) is collected as before."""
        gc.collect()
        gc.freeze()

    async def _start_engine(self) -> None:
        await self.engine.start()
        self._engine_started = True
        # after the screen's own first load (it may not be mounted yet)
        self.main.call_later(self.main.reload_ideas)

    def set_theme_name(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
        else:
            self.notify(f"theme {name!r} not found; themes: {', '.join(self.available_themes)}",
                        severity="warning")

    # -- panes and selection ---------------------------------------------------------------
    def action_pane(self, key: str) -> None:
        self.main.show_pane(key)

    def idea_command(self, command: Callable[..., None], *args: Any) -> None:
        """Run an engine command on the selected idea (pause, resume, retry, skip, ...)."""
        idea = self.main.selected_idea
        if idea is not None and self.writable(command.__name__.replace("_", " ")):
            words = " ".join([command.__name__.replace("_", " "), *map(str, args)])
            self.command(command, idea, *args, done=f"idea {idea}: {words}")

    def selected_process_label(self) -> str | None:
        row = self.main.selected_process()
        return None if row is None else f"{row.run} of idea {row.idea_id}"

    # -- bridge messages the screen leaves to the app --------------------------------------
    @on(br.BudgetHit)
    def _budget(self, msg: br.BudgetHit) -> None:
        e = msg.event
        self.ask_budget(e.scope, e)

    @on(br.Alert)
    def _alert(self, msg: br.Alert) -> None:
        self.notify(msg.text, title=msg.title, severity=msg.severity, timeout=msg.timeout)

    # -- idea commands -----------------------------------------------------------------------
    def writable(self, what: str) -> bool:
        """False (and says why, once per attempt) when the lab is only viewed."""
        if self.read_only:
            self.notify(f"{what} is disabled: {self.read_only}", title="Read-only lab",
                        severity="warning", timeout=6)
            return False
        return True

    @on(IdeaTable.ApproveRequested)
    def _approve(self, msg: IdeaTable.ApproveRequested) -> None:
        if not self.writable("approving"):
            return
        self.command(self.engine.approve, msg.idea_id, done=f"idea {msg.idea_id} approved")

    @on(IdeaTable.VetoRequested)
    def _veto(self, msg: IdeaTable.VetoRequested) -> None:
        if not self.writable("vetoing"):
            return

        def vetoed(reason: str | None) -> None:
            if reason:
                self.command(self.engine.veto, msg.idea_id, reason,
                             done=f"idea {msg.idea_id} vetoed")

        self.push_screen(ReasonDialog(f"Veto idea #{msg.idea_id}: why? (fed back to ideation)",
                                      "e.g. already done by X; not feasible on one GPU"),
                         vetoed)

    @on(IdeaTable.EditRequested)
    def _edit(self, msg: IdeaTable.EditRequested) -> None:
        if not self.writable("editing an idea"):
            return
        idea = self.main.reader.idea(msg.idea_id)
        if idea is None:
            return

        def edited(fields: dict[str, Any] | None) -> None:
            if fields:
                self.command(self.engine.edit_idea, msg.idea_id, fields,
                             done=f"idea {msg.idea_id} edited")

        self.push_screen(EditIdeaScreen(idea.id, {"Name": idea.name, **idea.data}), edited)

    @on(IdeaTable.GenerateRequested)
    def _generate(self) -> None:
        self.action_generate()

    def action_generate(self) -> None:
        if not self.writable("generating ideas"):
            return

        def chosen(n: float | None) -> None:
            if n:
                self.command(self.engine.generate_ideas, int(n),
                             done=f"generating {int(n)} more ideas")

        self.push_screen(NumberDialog("How many more ideas?", 5, 1, 500), chosen)

    def action_approve_selected(self) -> None:
        self.main.query_one(IdeaTable).action_approve()

    def action_veto_selected(self) -> None:
        self.main.query_one(IdeaTable).action_veto()

    def action_edit_selected(self) -> None:
        self.main.query_one(IdeaTable).action_edit()

    # -- process commands -------------------------------------------------------------------------
    @on(ProcessTable.KillRequested)
    def _kill(self, msg: ProcessTable.KillRequested) -> None:
        if not self.writable("killing a run"):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.command(self.engine.kill_run, msg.idea_id, msg.run,
                             done=f"killing {msg.run} of idea {msg.idea_id}",
                             refused=f"{msg.run} of idea {msg.idea_id} is not running")

        self.push_screen(ConfirmDialog(
            f"Kill {msg.run} of idea {msg.idea_id} and its whole process tree?",
            yes="Kill"), confirmed)

    @on(ProcessTable.ExtendRequested)
    def _extend(self, msg: ProcessTable.ExtendRequested) -> None:
        if not self.writable("extending a run"):
            return

        def chosen(minutes: float | None) -> None:
            if minutes:
                self._extend_run(msg.idea_id, msg.run, minutes * 60)

        self.push_screen(NumberDialog(f"Extend {msg.run} of idea {msg.idea_id} by minutes:",
                                      15, 1, 24 * 60), chosen)

    def _extend_run(self, idea_id: int | None, run: str, seconds: float) -> None:
        self.command(self.engine.extend_run, idea_id, run, seconds,
                     done=f"{run} of idea {idea_id}: +{seconds / 60:g} min")

    @on(ProcessTable.PauseRequested)
    def _pause(self, msg: ProcessTable.PauseRequested) -> None:
        if not self.writable("pausing a run"):
            return
        command = self.engine.resume_run if msg.resume else self.engine.pause_run
        done = "resumed" if msg.resume else "paused"
        self.command(command, msg.idea_id, msg.run, done=f"{msg.run} of idea {msg.idea_id} {done}")

    def action_kill_selected(self) -> None:
        self.main.query_one(ProcessTable).action_kill()

    def action_extend_selected(self) -> None:
        self.main.query_one(ProcessTable).action_extend()

    def action_pause_selected(self) -> None:
        self.main.query_one(ProcessTable).action_pause()

    def extend_selected(self, seconds: float) -> None:
        row = self.main.selected_process()
        if row is not None:
            self._extend_run(row.idea_id, row.run, seconds)

    # -- budget ---------------------------------------------------------------------------------
    def ask_budget(self, scope: str, event: ev.BudgetReached | None) -> None:
        if not self.writable("changing the budget"):
            return
        current = getattr(self.settings.budget, f"{scope}_usd", None) or 0.0
        if event is not None:
            title = (f"Budget reached: {scope} spent ${event.spent_usd:.2f} of "
                     f"${event.budget_usd:.2f}. The pipeline is paused. New {scope} budget ($):")
        else:
            title = f"New {scope} budget in dollars (now {current:.2f}):"
        suggestion = max(current * 2, (event.spent_usd if event else 0.0) + 1.0, 1.0)

        def chosen(usd: float | None) -> None:
            if usd is not None:
                self.command(self.engine.raise_budget, scope, usd,
                             done=f"{scope} budget now ${usd:.2f}")
                self.main.query_one(ActivityPane).refresh_cost()

        self.push_screen(NumberDialog(title, round(suggestion, 2), 0, 1e6, " dollars"), chosen)

    # -- calling the engine -----------------------------------------------------------------------
    def command(self, command: Callable[..., object], *args: Any, done: str = "",
                refused: str = "") -> None:
        """Run ``command(*args)`` (an :class:`EnginePort` method) on a worker; errors land
        in one place (below). ``done`` is shown after it, ``refused`` instead when it
        returns False."""
        self.run_worker(self._command(command, args, done, refused),
                        name=f"command:{command.__name__}", group="commands",
                        exit_on_error=False)

    async def _command(self, command: Callable[..., object], args: tuple[Any, ...], done: str,
                       refused: str) -> object:
        if self.engine.blocking_commands:  # an engine in another process: wait off the loop
            result = await asyncio.to_thread(command, *args)
        else:
            result = command(*args)
        if refused and result is False:
            self.notify(refused, severity="warning")
        elif done:
            self.notify(done, timeout=3)
        return result

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            text = user_message(err)
            if not isinstance(err, AisciError):  # a bug: its traceback goes to a file
                where = save_traceback(err, f"aisci-tui worker {event.worker.name}")
                text = f"internal error: {text} ({where})"
            self.notify(f"{event.worker.name}: {text}", title="Error", severity="error",
                        timeout=15)

    # -- follow / split / help / quit --------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.main.query_one(LogPane).view.action_toggle_follow()

    def action_toggle_split(self) -> None:
        self.main.query_one(RunsPane).action_toggle_split()

    def action_help(self) -> None:
        rows: list[tuple[str, str, str, str]] = []
        seen: set[str] = set()
        keymap = dict(self.settings.tui.keys)
        log_view = type(self.main.query_one(LogPane).view)
        for cls in (AisciApp, IdeaTable, RunsPane, Scorecard, LogPane, log_view, MediaPane,
                    ProcessTable):
            for b in cls.BINDINGS:
                if not isinstance(b, Binding) or (b.id or b.key) in seen:
                    continue
                seen.add(b.id or b.key)
                keys = keymap.get(b.id, b.key) if b.id else b.key
                rows.append((HELP_PLACES[cls.__name__], self.key_names(keys), b.description,
                             b.id or ""))
        self.push_screen(HelpScreen(rows))

    def key_names(self, keys: str) -> str:
        """``question_mark,f1`` as a user reads it: ``? / F1``."""
        return " / ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(",")
                          if k.strip())

    def running_processes(self) -> int:
        procs = self.main.process_count()
        if self._engine_started:
            try:
                procs = max(procs, len(self.engine.processes()))
            except RuntimeError:
                pass
        return procs

    def action_quit_app(self) -> None:
        """Quit. An attached viewer just leaves (the engine runs on). With experiments
        running here: stop everything, leave it running in the background, or cancel."""
        if self.engine.attached_to is not None or self.read_only:
            self.shutdown(EXIT_LEFT)
            return
        n = self.running_processes()
        if n == 0 and not self.engine_busy():
            self.shutdown(EXIT_STOPPED)
            return

        def chosen(answer: str | None) -> None:
            if answer == "stop":
                self.shutdown(EXIT_STOPPED)
            elif answer == "leave":
                self.shutdown(EXIT_DETACHED)

        work = f"{n} experiment process(es) running" if n else "The batch is still working"
        self.push_screen(ChoiceDialog(
            f"{work}. Stop everything (runs are stopped and resume from their last finished "
            "step next time), or leave the engine running in the background (reattach with "
            f"`aisci-tui --lab {self.lab}`)?",
            [("stop", "Stop everything", "s"), ("leave", "Leave it running", "l"),
             ("cancel", "Cancel", "escape")]), chosen)

    def action_detach(self) -> None:
        """Close the UI and leave the engine running (an attached viewer just leaves)."""
        if self.read_only:
            self.shutdown(EXIT_LEFT)
        else:
            self.shutdown(EXIT_LEFT if self.engine.attached_to is not None else EXIT_DETACHED)

    def action_stop_engine(self) -> None:
        """Ask the engine to stop (from an attached viewer too): its runs stop cleanly."""
        if not self.writable("stopping the engine"):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.command(self.engine.request_stop, "a viewer", done="engine stopping")

        self.push_screen(ConfirmDialog(
            "Stop the engine? Running experiments are stopped and resume from their last "
            "finished step next time.", yes="Stop"), confirmed)

    def engine_busy(self) -> bool:
        """Whether stages are still at work (besides waiting for a human)."""
        if not self._engine_started:
            return False
        return any(state == "running" for _, _, state, _ in self.main.reader.stages_now())

    @on(br.EngineLifecycle)
    def _engine_lifecycle(self, msg: br.EngineLifecycle) -> None:
        e = msg.event
        if isinstance(e, ev.EngineStopRequested):
            self._stop_source = e.source
            if self.engine.attached_to is None:  # our own engine: stop it and quit
                self.notify(f"stop requested by {e.source}", timeout=3)
                self.shutdown(EXIT_STOPPED)
            return
        if e.alive:  # this viewer was dropped (it fell behind): attach again
            self.shutdown(EXIT_REATTACH)
            return
        why = (f"The engine (pid {self.engine.attached_to}) stopped, as {self._stop_source} "
               "asked" if self._stop_source else e.reason)

        def chosen(yes: bool | None) -> None:
            self.shutdown(EXIT_RESTART if yes else EXIT_LEFT)

        self.push_screen(ConfirmDialog(
            f"{why}. Start the engine again in this terminal? It resumes the batch where "
            "it stopped.", yes="Start it", no="Quit"), chosen)

    @work(exclusive=True, group="shutdown")
    async def shutdown(self, how: str = "stopped") -> None:
        """End the UI. ``stopped``: the engine stops too; ``detached``: it carries on in
        this process without the UI; ``left``/``reattach``/``restart``: an attached viewer
        goes (the engine is another process)."""
        await self.bridge.stop()
        leaving = self.engine.attached_to is not None or bool(self.read_only)
        if (how == EXIT_STOPPED or leaving) and (self._engine_started or self.start_engine):
            try:
                await self.engine.stop()
            except (RuntimeError, AisciError) as exc:
                self.log.error(f"engine stop: {exc}")
        self.exit(how)
