"""The app's first frame: the workbench's chrome (status bar, pane bar, footer) and a line
saying the lab is opening, drawn before the engine and the panes are loaded. Light on
purpose: Textual and the chrome only."""

from __future__ import annotations

from pathlib import Path

from aisci.tui.screens.chrome import PaneBar, StatusBar, StatusPart
from aisci.tui.widgets.footer.key_footer import KeyFooter
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static


class BootScreen(Screen[None]):
    def __init__(self, lab: Path, demo_note: str | None = None) -> None:
        super().__init__()
        parts: list[StatusPart] = [(f"aisci · lab {lab.name}", f"lab {lab.name}"),
                                   ("opening the lab…", "opening…")]
        if demo_note:
            parts.insert(0, (demo_note, "DEMO (scripted)"))
        self.parts = parts
        self.lab = lab

    def compose(self) -> ComposeResult:
        yield StatusBar(self.parts, id="status-bar")
        yield PaneBar("ideas", id="pane-bar")
        yield Static(f"Opening {self.lab} …", id="boot-note", markup=False)
        yield KeyFooter()
