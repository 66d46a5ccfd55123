"""The app's engine side: the engine port, the main screen, the bridge, and every command.

:class:`aisci.tui.app.AisciApp` draws its first frame without any of this (it loads the
engine and the panes on a thread, then builds a :class:`Workbench`); the app forwards
the panes' requests (``IdeaTable.ApproveRequested`` ...) and its actions here, and this
turns them into engine commands, asking first in a dialog where needed. The
:mod:`bridge` posts batched engine events to the :class:`MainScreen`, which routes them
to the panes; its ``Alert`` and ``BudgetHit`` messages bubble up to the app, which hands
them here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aisci.engine import events as ev
from aisci.engine.errors import AisciError
from aisci.engine.run.sandbox import isolation_warning
from aisci.tui import bridge as br
from aisci.tui.app import (
    EXIT_DETACHED,
    EXIT_LEFT,
    EXIT_REATTACH,
    EXIT_RESTART,
    EXIT_STOPPED,
    AisciApp,
)
from aisci.tui.engine_port import EnginePort
from aisci.tui.images import ImageSupport
from aisci.tui.lab_data import LabReader
from aisci.tui.screens.chrome import StatusPart
from aisci.tui.screens.dialogs import ChoiceDialog, ConfirmDialog, NumberDialog, ReasonDialog
from aisci.tui.screens.edit_idea import EditIdeaScreen
from aisci.tui.screens.help import HelpScreen
from aisci.tui.screens.main import MainScreen
from aisci.tui.themes import load_themes
from aisci.tui.widgets.activity.activity_pane import ActivityPane
from aisci.tui.widgets.ideas.idea_table import IdeaTable
from aisci.tui.widgets.log.log_pane import LogPane
from aisci.tui.widgets.media.media_pane import MediaPane
from aisci.tui.widgets.processes.process_table import ProcessTable
from aisci.tui.widgets.review.scorecard import Scorecard
from aisci.tui.widgets.runs.runs_pane import RunsPane
from textual.binding import Binding

DEMO_BANNER = "DEMO · model is SCRIPTED (recorded answers, no API calls)"
"""The status bar's first part while the model is the demo's scripted one."""

#: Where each binding works, as the help screen names it (the panes' own titles).
HELP_PLACES = {"AisciApp": "Everywhere", "IdeaTable": "Ideas", "RunsPane": "Runs & diffs",
               "Scorecard": "Review", "LogPane": "Training log", "LogView": "Training log",
               "MediaPane": "Plots & paper", "ProcessTable": "Processes"}


class Workbench:
    """The engine port and the main screen of one app, and what the app asks of them."""

    def __init__(self, app: AisciApp, engine: EnginePort, *, images: ImageSupport,
                 demo_note: str | None, start_engine: bool, model_label: str | None,
                 start_notice: str | None) -> None:
        self.app = app
        self.engine = engine
        self.settings = engine.settings
        self.lab = engine.lab
        self.demo_note = demo_note or (DEMO_BANNER if start_notice else None)
        self.start_notice = start_notice
        self.start_engine = start_engine
        self.model_label = model_label or self.settings.models.default
        self.read_only: str | None = engine.read_only
        """Why the lab is only viewed (commands disabled), or None."""
        self.main = MainScreen(LabReader(engine.lab, engine.store), self.settings, images,
                               self.status_text(images))
        self.bridge = br.EngineBridge(engine.bus, self.main)
        self.engine_started = False
        self.stop_source = ""
        """Who asked the engine to stop (an attached viewer then says so, not "gone")."""

    def status_text(self, images: ImageSupport) -> list[StatusPart]:
        """The status bar's parts, each with a short form for a narrow terminal."""
        parts: list[StatusPart] = [
            (f"aisci · lab {self.lab.name}", f"lab {self.lab.name}"),
            (f"model {self.model_label}", self.model_label),
            (f"images {images.protocol}" + ("…" if images.pending else ""), ""),
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

    def mounted(self) -> None:
        """The main screen is up: the lab's look, the engine's events, the engine."""
        app = self.app
        themes, problems = load_themes(self.lab)
        for theme in themes:
            app.register_theme(theme)
        app.set_theme_name(self.settings.tui.theme)
        if self.settings.tui.keys:
            app.set_keymap(dict(self.settings.tui.keys))
        for problem in problems:
            app.notify(problem, title="Theme not loaded", severity="warning", timeout=10)
        # failures on record are shown in the activity pane, not toasted again at launch
        self.bridge.known_failures(self.main.reader.failed_stages())
        self.bridge.start()
        if self.read_only:
            app.notify(f"{self.read_only}. Opened as a viewer: approving, running and "
                       "every other command are disabled.", title="Read-only lab",
                       severity="warning", timeout=15)
        if self.start_notice:
            app.notify(self.start_notice, title="Scripted model", timeout=20)
        if self.start_engine:
            app.run_worker(self._start_engine(), name="engine-start", exit_on_error=False)

    async def _start_engine(self) -> None:
        await self.engine.start()
        self.engine_started = True
        # after the screen's own first load (it may not be mounted yet)
        self.main.call_later(self.main.reload_ideas)

    def images_known(self, support: ImageSupport) -> None:
        self.main.set_images(support, self.status_text(support))

    # -- bridge messages the screen leaves to the app -------------------------------------
    def budget_hit(self, msg: br.BudgetHit) -> None:
        self.ask_budget(msg.event.scope, msg.event)

    # -- idea commands ----------------------------------------------------------------------
    def writable(self, what: str) -> bool:
        """False (and says why, once per attempt) when the lab is only viewed."""
        if self.read_only:
            self.app.notify(f"{what} is disabled: {self.read_only}", title="Read-only lab",
                            severity="warning", timeout=6)
            return False
        return True

    def idea_command(self, command: Callable[..., None], *args: Any) -> None:
        """Run an engine command on the selected idea (pause, resume, retry, skip, ...)."""
        idea = self.main.selected_idea
        if idea is not None and self.writable(command.__name__.replace("_", " ")):
            words = " ".join([command.__name__.replace("_", " "), *map(str, args)])
            self.command(command, idea, *args, done=f"idea {idea}: {words}")

    def approve(self, idea_id: int) -> None:
        if self.writable("approving"):
            self.command(self.engine.approve, idea_id, done=f"idea {idea_id} approved")

    def veto(self, idea_id: int) -> None:
        if not self.writable("vetoing"):
            return

        def vetoed(reason: str | None) -> None:
            if reason:
                self.command(self.engine.veto, idea_id, reason, done=f"idea {idea_id} vetoed")

        self.app.push_screen(ReasonDialog(
            f"Veto idea #{idea_id}: why? (fed back to ideation)",
            "e.g. already done by X; not feasible on one GPU"), vetoed)

    def edit(self, idea_id: int) -> None:
        if not self.writable("editing an idea"):
            return
        idea = self.main.reader.idea(idea_id)
        if idea is None:
            return

        def edited(fields: dict[str, Any] | None) -> None:
            if fields:
                self.command(self.engine.edit_idea, idea_id, fields,
                             done=f"idea {idea_id} edited")

        self.app.push_screen(EditIdeaScreen(idea.id, {"Name": idea.name, **idea.data}),
                             edited)

    def generate(self) -> None:
        if not self.writable("generating ideas"):
            return

        def chosen(n: float | None) -> None:
            if n:
                self.command(self.engine.generate_ideas, int(n),
                             done=f"generating {int(n)} more ideas")

        self.app.push_screen(NumberDialog("How many more ideas?", 5, 1, 500), chosen)

    def approve_selected(self) -> None:
        self.main.query_one(IdeaTable).action_approve()

    def veto_selected(self) -> None:
        self.main.query_one(IdeaTable).action_veto()

    def edit_selected(self) -> None:
        self.main.query_one(IdeaTable).action_edit()

    # -- process commands -------------------------------------------------------------------
    def selected_process_label(self) -> str | None:
        row = self.main.selected_process()
        return None if row is None else f"{row.run} of idea {row.idea_id}"

    def kill(self, idea_id: int | None, run: str) -> None:
        if not self.writable("killing a run"):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.command(self.engine.kill_run, idea_id, run,
                             done=f"killing {run} of idea {idea_id}",
                             refused=f"{run} of idea {idea_id} is not running")

        self.app.push_screen(ConfirmDialog(
            f"Kill {run} of idea {idea_id} and its whole process tree?", yes="Kill"),
            confirmed)

    def extend(self, idea_id: int | None, run: str) -> None:
        if not self.writable("extending a run"):
            return

        def chosen(minutes: float | None) -> None:
            if minutes:
                self.extend_run(idea_id, run, minutes * 60)

        self.app.push_screen(NumberDialog(f"Extend {run} of idea {idea_id} by minutes:",
                                          15, 1, 24 * 60), chosen)

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> None:
        self.command(self.engine.extend_run, idea_id, run, seconds,
                     done=f"{run} of idea {idea_id}: +{seconds / 60:g} min")

    def pause(self, idea_id: int | None, run: str, resume: bool) -> None:
        if not self.writable("pausing a run"):
            return
        command = self.engine.resume_run if resume else self.engine.pause_run
        done = "resumed" if resume else "paused"
        self.command(command, idea_id, run, done=f"{run} of idea {idea_id} {done}")

    def kill_selected(self) -> None:
        self.main.query_one(ProcessTable).action_kill()

    def extend_selected_by(self) -> None:
        self.main.query_one(ProcessTable).action_extend()

    def pause_selected(self) -> None:
        self.main.query_one(ProcessTable).action_pause()

    def extend_selected(self, seconds: float) -> None:
        row = self.main.selected_process()
        if row is not None:
            self.extend_run(row.idea_id, row.run, seconds)

    # -- budget -----------------------------------------------------------------------------
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

        self.app.push_screen(NumberDialog(title, round(suggestion, 2), 0, 1e6, " dollars"),
                             chosen)

    # -- calling the engine -----------------------------------------------------------------
    def command(self, command: Callable[..., object], *args: Any, done: str = "",
                refused: str = "") -> None:
        """Run ``command(*args)`` (an :class:`EnginePort` method) on a worker; errors land
        in one place (the app's worker handler). ``done`` is shown after it, ``refused``
        instead when it returns False."""
        self.app.run_worker(self._command(command, args, done, refused),
                            name=f"command:{command.__name__}", group="commands",
                            exit_on_error=False)

    async def _command(self, command: Callable[..., object], args: tuple[Any, ...], done: str,
                       refused: str) -> object:
        if self.engine.blocking_commands:  # an engine in another process: wait off the loop
            result = await asyncio.to_thread(command, *args)
        else:
            result = command(*args)
        if refused and result is False:
            self.app.notify(refused, severity="warning")
        elif done:
            self.app.notify(done, timeout=3)
        return result

    # -- follow / split / help / quit -------------------------------------------------------
    def toggle_follow(self) -> None:
        self.main.query_one(LogPane).view.action_toggle_follow()

    def toggle_split(self) -> None:
        self.main.query_one(RunsPane).action_toggle_split()

    def help(self) -> None:
        rows: list[tuple[str, str, str, str]] = []
        seen: set[str] = set()
        keymap = dict(self.settings.tui.keys)
        log_view = type(self.main.query_one(LogPane).view)
        for cls in (type(self.app), IdeaTable, RunsPane, Scorecard, LogPane, log_view,
                    MediaPane, ProcessTable):
            for b in cls.BINDINGS:
                if not isinstance(b, Binding) or (b.id or b.key) in seen:
                    continue
                seen.add(b.id or b.key)
                keys = keymap.get(b.id, b.key) if b.id else b.key
                place = HELP_PLACES.get(cls.__name__, "Everywhere")
                rows.append((place, self.app.key_names(keys), b.description, b.id or ""))
        self.app.push_screen(HelpScreen(rows))

    def running_processes(self) -> int:
        procs = self.main.process_count()
        if self.engine_started:
            try:
                procs = max(procs, len(self.engine.processes()))
            except RuntimeError:
                pass
        return procs

    def engine_busy(self) -> bool:
        """Whether stages are still at work (besides waiting for a human)."""
        if not self.engine_started:
            return False
        return any(state == "running" for _, _, state, _ in self.main.reader.stages_now())

    def quit(self) -> None:
        """Quit. An attached viewer just leaves (the engine runs on). With experiments
        running here: stop everything, leave it running in the background, or cancel."""
        app = self.app
        if self.engine.attached_to is not None or self.read_only:
            app.shutdown(EXIT_LEFT)
            return
        n = self.running_processes()
        if n == 0 and not self.engine_busy():
            app.shutdown(EXIT_STOPPED)
            return

        def chosen(answer: str | None) -> None:
            if answer == "stop":
                app.shutdown(EXIT_STOPPED)
            elif answer == "leave":
                app.shutdown(EXIT_DETACHED)

        work = f"{n} experiment process(es) running" if n else "The batch is still working"
        app.push_screen(ChoiceDialog(
            f"{work}. Stop everything (runs are stopped and resume from their last finished "
            "step next time), or leave the engine running in the background (reattach with "
            f"`aisci-tui --lab {self.lab}`)?",
            [("stop", "Stop everything", "s"), ("leave", "Leave it running", "l"),
             ("cancel", "Cancel", "escape")]), chosen)

    def detach(self) -> None:
        """Close the UI and leave the engine running (an attached viewer just leaves)."""
        leaving = self.read_only or self.engine.attached_to is not None
        self.app.shutdown(EXIT_LEFT if leaving else EXIT_DETACHED)

    def stop_engine(self) -> None:
        """Ask the engine to stop (from an attached viewer too): its runs stop cleanly."""
        if not self.writable("stopping the engine"):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.command(self.engine.request_stop, "a viewer", done="engine stopping")

        self.app.push_screen(ConfirmDialog(
            "Stop the engine? Running experiments are stopped and resume from their last "
            "finished step next time.", yes="Stop"), confirmed)

    def engine_lifecycle(self, msg: br.EngineLifecycle) -> None:
        app = self.app
        e = msg.event
        if isinstance(e, ev.EngineStopRequested):
            self.stop_source = e.source
            if self.engine.attached_to is None:  # our own engine: stop it and quit
                app.notify(f"stop requested by {e.source}", timeout=3)
                app.shutdown(EXIT_STOPPED)
            return
        if e.alive:  # this viewer was dropped (it fell behind): attach again
            app.shutdown(EXIT_REATTACH)
            return
        why = (f"The engine (pid {self.engine.attached_to}) stopped, as {self.stop_source} "
               "asked" if self.stop_source else e.reason)

        def chosen(yes: bool | None) -> None:
            app.shutdown(EXIT_RESTART if yes else EXIT_LEFT)

        app.push_screen(ConfirmDialog(
            f"{why}. Start the engine again in this terminal? It resumes the batch where "
            "it stopped.", yes="Start it", no="Quit"), chosen)

    async def close(self, how: str) -> None:
        """The UI ends ``how`` (see the app's exit results): the engine stops with it when
        asked to, or when this viewer's engine is another process's to keep."""
        await self.bridge.stop()
        leaving = self.engine.attached_to is not None or bool(self.read_only)
        if (how == EXIT_STOPPED or leaving) and (self.engine_started or self.start_engine):
            try:
                await self.engine.stop()
            except (RuntimeError, AisciError) as exc:
                self.app.log.error(f"engine stop: {exc}")
