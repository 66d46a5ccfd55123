"""Help: the panes and every key binding with its remappable id."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Paragraphs are single lines: the help box wraps them to its width (hard line breaks
# would break sentences in a narrow terminal).
INTRO = ("[b]aisci[/b] runs the AI Scientist loop: ideas → novelty → your approval → "
         "experiments → plots → paper → review. Keys work in the pane they are listed "
         "for; ctrl+p opens the command palette with every action that applies now.\n\n"
         "Remap a key in aisci.toml with its id from the last column, e.g.\n"
         "  \\[tui.keys]\n"
         '  approve-idea = "A"\n')


def bindings_table(rows: list[tuple[str, str, str, str]]) -> Table:
    table = Table(box=None, padding=(0, 1))
    table.add_column("Where", style="dim")
    table.add_column("Key", style="bold")
    table.add_column("Action")
    table.add_column("Id (for tui.keys)", style="dim")
    for row in rows:
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96; max-width: 98%; height: 90%;
        border: thick $accent; background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help-close")]

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def on_mount(self) -> None:
        # toasts sit above every screen: clear them so they do not cover the help
        self.app.clear_notifications()

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text.from_markup(INTRO))
            yield Static(bindings_table(self.rows))

    def action_close(self) -> None:
        self.dismiss(None)
