"""Small modal dialogs: confirm, veto reason, number input, budget raise.

Each dialog dismisses with its typed result (or None when cancelled); the caller passes
a callback to ``push_screen``.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class _Dialog(ModalScreen[Any]):
    DEFAULT_CSS = """
    _Dialog, ConfirmDialog, ReasonDialog, NumberDialog { align: center middle; }
    .dialog { width: 64; max-width: 95%; height: auto; border: thick $accent;
              background: $panel; padding: 1 2; }
    .dialog .buttons { height: auto; align-horizontal: right; margin-top: 1; }
    .dialog Button { margin-left: 1; }
    .dialog .error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def on_mount(self) -> None:
        inputs = self.query(Input)
        if inputs:
            self.call_after_refresh(inputs.first().focus)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(_Dialog):
    """Yes/no question; dismisses with True or False."""

    BINDINGS = [Binding("y", "yes", "Yes", id="dialog-yes"),
                Binding("n,escape", "no", "No", id="dialog-no")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.call_after_refresh(self.query_one("#no", Button).focus)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ChoiceDialog(_Dialog):
    """A question with several answers; dismisses with the chosen answer's id (None on
    escape). ``choices``: (id, label, key) in button order; the key answers it too."""

    DEFAULT_CSS = "ChoiceDialog { align: center middle; }"

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, markup=False)
            with Horizontal(classes="buttons"):
                for cid, label, key in self.choices:
                    shown = "esc" if key == "escape" else key
                    yield Button(f"{label} ({shown})", id=f"choice-{cid}")

    def on_mount(self) -> None:
        self.call_after_refresh(self.query(Button).last().focus)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("choice-") or None)

    def on_key(self, event: Any) -> None:
        for cid, _label, key in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(cid)
                return


class ReasonDialog(_Dialog):
    """Asks for a non-empty reason (e.g. why an idea is vetoed)."""

    def __init__(self, title: str, placeholder: str = "reason") -> None:
        super().__init__()
        self.title_text, self.placeholder = title, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            yield Input(placeholder=self.placeholder, id="reason")
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#error", Static).update("a reason is required")
            return
        self.dismiss(reason)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class NumberDialog(_Dialog):
    """Asks for a number within [low, high]; dismisses with a float."""

    def __init__(self, title: str, default: float, low: float, high: float,
                 unit: str = "") -> None:
        super().__init__()
        self.title_text, self.default, self.low, self.high, self.unit = (
            title, default, low, high, unit)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            yield Input(value=f"{self.default:g}", id="number", type="number")
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        raw = self.query_one("#number", Input).value.strip()
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not (self.low <= value <= self.high):
            self.query_one("#error", Static).update(
                f"expected a number from {self.low:g} to {self.high:g}{self.unit}")
            return
        self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
