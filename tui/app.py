"""The aisci Textual app: it draws at once, then opens the lab and builds its workbench.

This module is light on purpose (Textual and a few small modules): ``aisci-tui`` draws
its first frame (:class:`~aisci.tui.screens.boot.BootScreen`: the status bar and the
pane bar) before the engine, the panes and the lab are loaded. An *opener* then runs on
a thread: it imports the engine, opens the lab (attaching to its running engine, or
starting one) and hands the engine port back; the app builds its
:class:`~aisci.tui.workbench.Workbench` (the main screen, the bridge, every command)
and switches to it. Given an engine port directly (the tests, the benchmarks), the app
builds the workbench at once.

The app is the mediator: the panes' requests (``IdeaTable.ApproveRequested`` ...) and
the bridge's ``Alert`` / ``BudgetHit`` / ``EngineLifecycle`` reach it by name
(``on_idea_table_approve_requested`` ...) and go to the workbench.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisci.engine.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    AisciError,
    environment_error,
    exit_code,
    internal_error_line,
    user_message,
)
from aisci.tui.commands import AisciCommands
from aisci.tui.heap_freeze import CHECK_S, HEAP
from aisci.tui.images import ImageSupport, choose_protocol, probe_in_app
from aisci.tui.screens.boot import BootScreen
from aisci.tui.screens.chrome import PANES
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:  # loaded after the first frame (see the module docstring)
    from aisci.engine import events as ev
    from aisci.tui import bridge as br
    from aisci.tui.engine_port import EnginePort
    from aisci.tui.screens.main import MainScreen
    from aisci.tui.widgets.ideas.idea_table import IdeaTable
    from aisci.tui.widgets.processes.process_table import ProcessTable
    from aisci.tui.workbench import Workbench


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
EXIT_OPEN_FAILED = "open-failed"
"""the lab could not be opened (:attr:`AisciApp.open_error` says why)."""

Opened = tuple["EnginePort", str | None]
"""What an opener returns: the engine port and the start notice (the demo's), if any."""


def failure_line(exc: Exception, *, lab: Path | None = None,
                 context: str = "aisci-tui") -> tuple[str, int]:
    """What ``aisci-tui`` says (one line, after its name) and its exit code when it ends
    on ``exc``: aisci's own errors as they are, a setting the engine rejects, a fault of
    the machine (a full disk, a damaged lab database); anything else is a bug: one line
    naming the file that holds its traceback."""
    if isinstance(exc, AisciError):
        return user_message(exc), exit_code(exc)
    if isinstance(exc, ValueError):  # a setting the engine rejects
        return str(exc), EXIT_USAGE
    known = environment_error(exc, lab=lab, then="start aisci-tui again")
    if known is not None:
        return user_message(known), exit_code(known)
    return internal_error_line(exc, context), EXIT_FAILED


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

    def __init__(self, engine: EnginePort | None = None, *, images: ImageSupport,
                 opener: Callable[[], Opened] | None = None, lab: Path | None = None,
                 demo_note: str | None = None, start_engine: bool = True,
                 model_label: str | None = None, start_notice: str | None = None) -> None:
        """Either ``engine`` (the workbench is built now) or ``opener`` and ``lab`` (it
        is built once the opener, run on a thread after the first frame, returns)."""
        super().__init__()
        if (engine is None) == (opener is None):
            raise ValueError("AisciApp needs an engine or an opener")
        self.images = images
        self._opener = opener
        self._options: dict[str, Any] = {
            "demo_note": demo_note, "start_engine": start_engine, "model_label": model_label,
            "start_notice": start_notice}
        self.workbench: Workbench | None = None
        self._opened_event = threading.Event()
        self._opening = False
        self.open_error: str | None = None
        """Why the opener failed (one line), when the app ends with EXIT_OPEN_FAILED, and
        the exit code that says so."""
        self.open_error_code = 0
        self._lab = lab or Path.cwd()
        """The lab being opened (the boot screen names it)."""
        if engine is not None:
            self._build_workbench(engine, start_notice)

    def wait_opened(self, timeout: float) -> None:
        """After the app ended: wait until an opener that had started has returned (what
        it started is then known to the launcher, :mod:`aisci.tui.detach`)."""
        if self._opening:
            self._opened_event.wait(timeout)

    # -- the workbench -------------------------------------------------------------------
    def _build_workbench(self, engine: EnginePort, start_notice: str | None) -> Workbench:
        # deferred: heavy (the engine's modules and every pane, about 1 s), loaded after
        # the first frame; the opener's thread has usually imported it already
        from aisci.tui.workbench import Workbench

        options = dict(self._options, start_notice=start_notice)
        self.workbench = Workbench(self, engine, images=self.images, **options)
        return self.workbench

    @property
    def engine(self) -> EnginePort:
        return self._wb().engine

    @property
    def main(self) -> MainScreen:
        return self._wb().main

    @property
    def read_only(self) -> str | None:
        return self._wb().read_only if self.workbench is not None else None

    def _wb(self) -> Workbench:
        if self.workbench is None:
            raise RuntimeError("the lab is still opening")
        return self.workbench

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette entries, less its "Quit" (it would skip the question
        asked when experiments run; aisci's Quit is in the palette) and "Keys" (internal
        widget names; the Help screen lists every key)."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    def get_default_screen(self) -> Screen[Any]:
        if self.workbench is not None:
            return self.workbench.main
        return BootScreen(self._lab, self._options["demo_note"])

    async def on_mount(self) -> None:
        if self.workbench is not None:
            self.workbench.mounted()
            self._freeze_when_drawn()
        else:  # after the first frame: the opener imports the engine and opens the lab
            self.call_after_refresh(self._open)
        if self.images.pending:  # after the first frame: the probe may wait on the terminal
            self.call_after_refresh(self._probe_images)

    @work(thread=True, exclusive=True, group="open-lab", exit_on_error=False)
    def _open(self) -> None:
        assert self._opener is not None
        self._opening = True
        try:
            try:
                engine, notice = self._opener()
                # deferred: heavy; imported here, on this thread, not on the UI's
                import aisci.tui.workbench  # noqa: F401
            finally:
                self._opened_event.set()
        except Exception as exc:  # every failure is one line (and the app ends)
            self.call_from_thread(self._open_failed,
                                  *failure_line(exc, context="aisci-tui opening the lab"))
            return
        self.call_from_thread(self._opened, engine, notice)

    def _opened(self, engine: EnginePort, notice: str | None) -> None:
        wanted = engine.settings.tui.image_protocol  # the lab's (--image-protocol sets it)
        if wanted != self.images.requested:
            self.images = choose_protocol(wanted, defer=True)
            if self.images.pending:
                self._probe_images()
        workbench = self._build_workbench(engine, notice)
        # over the boot screen (switching would leave the stack empty for a moment, and
        # widgets that ask for the current screen as they mount would find none)
        self.push_screen(workbench.main)
        workbench.mounted()
        self._freeze_when_drawn()  # what the opener loaded lives as long as the app

    def _open_failed(self, message: str, code: int) -> None:
        self.open_error, self.open_error_code = message, code
        self.exit(EXIT_OPEN_FAILED)

    @work(thread=True, exclusive=True, group="image-probe", exit_on_error=False)
    def _probe_images(self) -> None:
        support = probe_in_app(self._driver, self.images.requested)
        self.call_from_thread(self._images_known, support)

    def _images_known(self, support: ImageSupport) -> None:
        self.images = support
        if self.workbench is not None:
            self.workbench.images_known(support)

    def _freeze_when_drawn(self) -> None:
        """What the opener loaded lives as long as the app: frozen after the first frame,
        and again after later imports (:mod:`aisci.tui.heap_freeze`)."""
        if not self.is_headless:  # tests run many apps in one process: nothing frozen
            self.call_after_refresh(HEAP.freeze)
            self.set_interval(CHECK_S, HEAP.check)

    def set_theme_name(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
        else:
            self.notify(f"theme {name!r} not found; themes: {', '.join(self.available_themes)}",
                        severity="warning")

    def key_names(self, keys: str) -> str:
        """``question_mark,f1`` as a user reads it: ``? / F1``."""
        return " / ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(",")
                          if k.strip())

    # -- the panes' requests and the bridge's messages (by name: see the docstring) ------
    def on_budget_hit(self, msg: br.BudgetHit) -> None:
        if self.workbench is not None:
            self.workbench.budget_hit(msg)

    def on_alert(self, msg: br.Alert) -> None:
        self.notify(msg.text, title=msg.title, severity=msg.severity, timeout=msg.timeout)

    def on_engine_lifecycle(self, msg: br.EngineLifecycle) -> None:
        if self.workbench is not None:
            self.workbench.engine_lifecycle(msg)

    def on_idea_table_approve_requested(self, msg: IdeaTable.ApproveRequested) -> None:
        self._wb().approve(msg.idea_id)

    def on_idea_table_veto_requested(self, msg: IdeaTable.VetoRequested) -> None:
        self._wb().veto(msg.idea_id)

    def on_idea_table_edit_requested(self, msg: IdeaTable.EditRequested) -> None:
        self._wb().edit(msg.idea_id)

    def on_idea_table_generate_requested(self, _msg: IdeaTable.GenerateRequested) -> None:
        self.action_generate()

    def on_process_table_kill_requested(self, msg: ProcessTable.KillRequested) -> None:
        self._wb().kill(msg.idea_id, msg.run)

    def on_process_table_extend_requested(self, msg: ProcessTable.ExtendRequested) -> None:
        self._wb().extend(msg.idea_id, msg.run)

    def on_process_table_pause_requested(self, msg: ProcessTable.PauseRequested) -> None:
        self._wb().pause(msg.idea_id, msg.run, msg.resume)

    # -- actions (keys, the palette) ---------------------------------------------------------
    def action_pane(self, key: str) -> None:
        if self.workbench is not None:
            self.workbench.main.show_pane(key)

    def action_help(self) -> None:
        if self.workbench is not None:
            self.workbench.help()

    def action_quit_app(self) -> None:
        if self.workbench is None:  # still opening: what it starts is stopped at once
            self.exit(EXIT_STOPPED)
        else:
            self.workbench.quit()

    def action_detach(self) -> None:
        if self.workbench is not None:
            self.workbench.detach()

    def action_stop_engine(self) -> None:
        self._wb().stop_engine()

    def action_generate(self) -> None:
        self._wb().generate()

    def action_approve_selected(self) -> None:
        self._wb().approve_selected()

    def action_veto_selected(self) -> None:
        self._wb().veto_selected()

    def action_edit_selected(self) -> None:
        self._wb().edit_selected()

    def action_kill_selected(self) -> None:
        self._wb().kill_selected()

    def action_extend_selected(self) -> None:
        self._wb().extend_selected_by()

    def action_pause_selected(self) -> None:
        self._wb().pause_selected()

    def action_toggle_follow(self) -> None:
        self._wb().toggle_follow()

    def action_toggle_split(self) -> None:
        self._wb().toggle_split()

    def idea_command(self, command: Callable[..., None], *args: Any) -> None:
        self._wb().idea_command(command, *args)

    def selected_process_label(self) -> str | None:
        return self._wb().selected_process_label()

    def extend_selected(self, seconds: float) -> None:
        self._wb().extend_selected(seconds)

    def ask_budget(self, scope: str, event: ev.BudgetReached | None) -> None:
        self._wb().ask_budget(scope, event)

    def command(self, command: Callable[..., object], *args: Any, done: str = "",
                refused: str = "") -> None:
        self._wb().command(command, *args, done=done, refused=refused)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            text = user_message(err) if isinstance(err, AisciError) else \
                internal_error_line(err, f"aisci-tui worker {event.worker.name}")  # a bug
            self.notify(f"{event.worker.name}: {text}", title="Error", severity="error",
                        timeout=15)

    @work(exclusive=True, group="shutdown")
    async def shutdown(self, how: str = EXIT_STOPPED) -> None:
        """End the UI. ``stopped``: the engine stops too; ``detached``: it carries on in
        this process without the UI; ``left``/``reattach``/``restart``: an attached viewer
        goes (the engine is another process)."""
        if self.workbench is not None:
            await self.workbench.close(how)
        self.exit(how)
