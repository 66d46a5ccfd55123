"""The command palette: every action, worded for what is selected right now."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from aisci.tui.screens.chrome import PANES
from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:  # the app imports this module; lab_data is loaded after the first frame
    from aisci.tui.app import AisciApp
    from aisci.tui.lab_data import IdeaSummary


Command = tuple[str, Callable[[], object], str]
#: Stage states in which an idea's pipeline is moving (it can be paused).
_ACTIVE = frozenset({"pending", "running", "waiting"})
#: Stage states a stage can be retried or skipped from.
_STOPPED = frozenset({"failed", "paused", "waiting", "pending"})


def idea_commands(app: AisciApp, idea: str, s: IdeaSummary) -> list[Command]:
    """The commands that apply to the selected idea in its current status and stage: no
    "Approve" for an approved idea, no "Resume" for one that is not paused, the
    literature choices only when its novelty check found the literature down."""
    engine = app.engine
    out: list[Command] = []
    if s.status != "approved":
        out.append((f"Approve idea {idea}", app.action_approve_selected,
                    "start its experiments"))
    if s.status != "vetoed":
        out.append((f"Veto idea {idea}", app.action_veto_selected, "asks for a reason"))
    out.append((f"Edit idea {idea}", app.action_edit_selected, "title, plan and scores"))
    if s.status == "vetoed":
        return out
    if s.stage and s.stage_state in _ACTIVE:
        out.append((f"Pause idea {idea}", partial(app.idea_command, engine.pause_idea),
                    "at its next safe point"))
    if s.stage_state == "paused":
        out.append((f"Resume idea {idea}", partial(app.idea_command, engine.resume_idea), ""))
    if s.stage and s.stage_state in _STOPPED and s.stage != "approval":
        out += [(f"Retry stage {s.stage} of idea {idea}",
                 partial(app.idea_command, engine.retry_stage, s.stage), ""),
                (f"Skip stage {s.stage} of idea {idea}",
                 partial(app.idea_command, engine.skip_stage, s.stage), "")]
    if s.verdict == "lit. down":
        out += [(f"Literature down for {idea}: skip the novelty check",
                 partial(app.idea_command, engine.literature_decision, "skip"), ""),
                (f"Literature down for {idea}: retry the search",
                 partial(app.idea_command, engine.literature_decision, "retry"), "")]
    return out


class AisciCommands(Provider):
    """Commands for the selected idea / process, panes, themes and the lab."""

    def _commands(self) -> list[Command]:
        app = cast("AisciApp", self.app)
        out: list[Command] = []
        if app.workbench is None:  # the lab is still opening
            return [("Quit", app.action_quit_app, "")]
        idea = app.main.selected_idea_label()
        summary = app.main.selected_summary()
        if idea and summary is not None and not app.read_only:
            out += idea_commands(app, idea, summary)
        if not app.read_only:
            out.append(("Generate more ideas", app.action_generate, "ask for N new ideas"))
        proc = app.selected_process_label()
        if proc and not app.read_only:
            out += [
                (f"Kill {proc}", app.action_kill_selected, "asks for confirmation"),
                (f"Extend {proc} by 15 min", partial(app.extend_selected, 15 * 60), ""),
                (f"Extend {proc} by 60 min", partial(app.extend_selected, 60 * 60), ""),
                (f"Extend {proc} by …", app.action_extend_selected, "choose minutes"),
                (f"Pause / resume {proc}", app.action_pause_selected, "SIGSTOP / SIGCONT"),
            ]
        for key, title in PANES:
            out.append((f"Show pane: {title}", partial(app.action_pane, key), ""))
        for name in ("aisci-dark", "aisci-light"):
            out.append((f"Theme: {name}", partial(app.set_theme_name, name), ""))
        out += [
            ("Toggle log follow mode", app.action_toggle_follow, "training log"),
            ("Toggle unified / split diff", app.action_toggle_split, "runs pane"),
            *([] if app.read_only else
              [("Raise the lab budget", partial(app.ask_budget, "lab", None), "dollars")]),
            ("Help: keys and panes", app.action_help, ""),
            *([] if app.read_only else [
                ("Detach: close the UI, leave the engine running", app.action_detach,
                 "reattach with aisci-tui --lab"),
                ("Stop the engine", app.action_stop_engine, "its runs stop, resumable")]),
            ("Quit", app.action_quit_app, "asks when experiments run"),
        ]
        return out

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text or None)
