"""The workbench's chrome: the pane list, the status bar and the narrow terminal's pane
bar. Light on purpose (Textual and Rich only): the app draws them in its first frame,
before the engine and the panes are loaded (:mod:`aisci.tui.screens.boot`)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

#: (key, title) of every pane, in key order (1-7).
PANES = (("ideas", "Ideas"), ("runs", "Runs & diffs"), ("review", "Review"),
         ("log", "Training log"), ("plots", "Plots & paper"), ("processes", "Processes"),
         ("activity", "Activity & cost"))
# In a wide terminal the two groups sit side by side: the log (left) next to the plots
# (right) is the view to watch a run in.
LEFT = ("ideas", "runs", "review", "log")
RIGHT = ("plots", "processes", "activity")
#: Pane names short enough for an 80-column pane bar.
SHORT_TITLES = ("Ideas", "Runs", "Review", "Log", "Plots", "Processes", "Cost")
StatusPart = tuple[str, str]
"""One item of the status bar: (long text, short text for a narrow terminal)."""


def fit_status(parts: list[StatusPart], width: int) -> str:
    """The status line for ``width`` columns: every part in full when it fits, else the
    short forms, cut with an ellipsis only when even those do not fit."""
    for texts in ([long for long, _ in parts], [short for _, short in parts]):
        line = " │ ".join(t for t in texts if t)
        if cell_len(line) <= width:
            return line
    return line if width < 2 else line[:width - 1] + "…"


class StatusBar(Static):
    """The top line; picks the long or the short form of its parts to fit its width."""

    def __init__(self, parts: list[StatusPart], **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.parts = parts

    def set_parts(self, parts: list[StatusPart]) -> None:
        self.parts = parts
        self.on_resize()

    def on_resize(self) -> None:
        # one line of fixed size: a new text needs no layout pass
        self.update(fit_status(self.parts, max(1, self.size.width)), layout=False)


def pane_bar_text(active: str) -> Text:
    """The narrow terminal's one tab bar: every pane with its key, the shown one marked."""
    out = Text()
    for i, ((key, _title), short) in enumerate(zip(PANES, SHORT_TITLES, strict=True)):
        if i:
            out.append(" ")
        out.append(f" {i + 1} {short} ", style="reverse bold" if key == active else "")
    return out
