"""Edit an idea's fields in a form validated with the engine's idea schema."""

from __future__ import annotations

from typing import Any

from aisci.engine.errors import user_message
from aisci.engine.lab.idea_schema import IdeaError, validate_idea
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

EDITABLE = ("Title", "Experiment", "Interestingness", "Feasibility", "Novelty")
_SCORES = ("Interestingness", "Feasibility", "Novelty")


class EditIdeaScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the changed fields (validated), or None when cancelled."""

    DEFAULT_CSS = """
    EditIdeaScreen { align: center middle; }
    EditIdeaScreen > VerticalScroll { width: 90; max-width: 98%; height: 90%;
        border: thick $accent; background: $panel; padding: 0 1; }
    EditIdeaScreen TextArea { height: 8; }
    EditIdeaScreen .scores { height: auto; }
    EditIdeaScreen .scores Input { width: 1fr; }
    EditIdeaScreen #edit-error { color: $error; height: auto; }
    EditIdeaScreen .buttons { height: auto; align-horizontal: right; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="edit-cancel"),
                Binding("ctrl+s", "save", "Save", id="edit-save")]

    def __init__(self, idea_id: int, data: dict[str, Any]) -> None:
        super().__init__()
        self.idea_id = idea_id
        self.data = dict(data)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(f"Edit idea #{self.idea_id} ({self.data.get('Name', '')})")
            yield Label("Title")
            yield Input(str(self.data.get("Title", "")), id="f-Title")
            yield Label("Experiment")
            yield TextArea(str(self.data.get("Experiment", "")), id="f-Experiment",
                           soft_wrap=True)
            yield Label("Interestingness / Feasibility / Novelty (1-10)")
            with Horizontal(classes="scores"):
                for key in _SCORES:
                    yield Input(str(self.data.get(key, "")), id=f"f-{key}", type="integer")
            yield Static("", id="edit-error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save (ctrl+s)", id="save", variant="primary")

    def on_mount(self) -> None:
        self.call_after_refresh(self.query_one("#f-Title", Input).focus)

    def collect(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "Title": self.query_one("#f-Title", Input).value.strip(),
            "Experiment": self.query_one("#f-Experiment", TextArea).text.strip(),
        }
        for key in _SCORES:
            raw = self.query_one(f"#f-{key}", Input).value.strip()
            fields[key] = int(raw) if raw.lstrip("-").isdigit() else raw
        return fields

    def action_save(self) -> None:
        fields = self.collect()
        try:
            validate_idea({**self.data, **fields}, where=f"idea #{self.idea_id}")
        except IdeaError as exc:
            self.query_one("#edit-error", Static).update(user_message(exc))
            return
        changed = {k: v for k, v in fields.items() if self.data.get(k) != v}
        self.dismiss(changed)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
