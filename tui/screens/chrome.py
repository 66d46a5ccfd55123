"""The workbench's chrome: the pane list, the status bar, the pane bars and the groups
of panes they switch. Light on purpose (Textual and Rich only): the app draws them in its
first frame, before the engine and the panes are loaded (:mod:`aisci.tui.screens.boot`)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

#: (key, title) of every pane, in key order (1-7).
PANES = (("ideas", "Ideas"), ("runs", "Runs & diffs"), ("review", "Review"),
         ("log", "Training log"), ("plots", "Plots & paper"), ("processes", "Processes"),
         ("activity", "Activity & cost"))
# In a wide terminal the two groups sit side by side: the log (left) next to the plots
# (right) is the view to watch a run in.
LEFT = ("ideas", "runs", "review", "log")
RIGHT = ("plots", "processes", "activity")
ALL = LEFT + RIGHT
#: Pane names short enough for an 80-column pane bar.
SHORT_TITLES = ("Ideas", "Runs", "Review", "Log", "Plots", "Processes", "Cost")
#: Pane names in a wide terminal's bar over each group.
TAB_TITLES = ("Ideas", "Runs & diffs", "Review", "Log", "Plots & paper", "Processes",
              "Activity & cost")
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


def _labels(keys: tuple[str, ...], titles: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, label) of the panes ``keys``, each label with the pane's key number."""
    number = {key: i + 1 for i, (key, _) in enumerate(PANES)}
    title = dict(zip(ALL, titles, strict=True))
    return [(key, f" {number[key]} {title[key]} ") for key in keys]


def pane_bar_text(active: str, keys: tuple[str, ...] = ALL,
                  titles: tuple[str, ...] = SHORT_TITLES) -> Text:
    """A bar of panes with their keys, the shown one marked."""
    out = Text()
    for i, (key, label) in enumerate(_labels(keys, titles)):
        if i:
            out.append(" ")
        out.append(label, style="reverse bold" if key == active else "")
    return out


class PaneBar(Static):
    """One line naming panes with their keys, the shown one marked; a click on a name
    shows that pane. The narrow terminal's one bar (every pane) and, in a wide one, the
    bar over each group. A new pane changes its text, never its size: no layout pass."""

    @dataclass
    class Chosen(Message):
        """A pane's name was clicked."""

        key: str

    def __init__(self, active: str, keys: tuple[str, ...] = ALL,
                 titles: tuple[str, ...] = SHORT_TITLES, **kwargs: object) -> None:
        super().__init__(pane_bar_text(active, keys, titles), markup=False,
                         **kwargs)  # type: ignore[arg-type]
        self.keys = keys
        self.titles = titles
        self.active = active

    def show(self, key: str) -> None:
        if key != self.active:
            self.active = key
            self.update(pane_bar_text(key, self.keys, self.titles), layout=False)

    def key_at(self, x: int) -> str | None:
        """The pane whose name is at column ``x``."""
        start = 0
        for key, label in _labels(self.keys, self.titles):
            end = start + cell_len(label)
            if start <= x < end:
                return key
            start = end + 1
        return None

    def on_click(self, event: events.Click) -> None:
        key = self.key_at(event.x)
        if key is not None:
            self.post_message(self.Chosen(key))


class PaneGroup(Vertical):
    """A group of panes under a :class:`PaneBar`, one pane shown at a time.

    Lighter than Textual's TabbedContent on purpose (measured in a 160x48 terminal during
    a log flood): a key press here changes the ``display`` of two widgets and one line of
    text, where TabbedContent re-styled its tab widgets (about 5 ms per press) and drew
    four nested frames around the pane on every switch.

    ``panes`` maps each pane's key to the id of the widget that is that pane; the group
    holds the bar and those widgets."""

    def __init__(self, panes: dict[str, str], *children: Widget, id: str) -> None:
        super().__init__(*children, id=id)
        self.panes = panes

    @property
    def active(self) -> str:
        """The pane shown: the one its bar marks."""
        return self.query_one(PaneBar).active

    def on_mount(self) -> None:
        for key, widget_id in self.panes.items():
            self.query_one(f"#{widget_id}").display = key == self.active

    def show(self, key: str) -> None:
        if key == self.active:
            return
        self.query_one(f"#{self.panes[self.active]}").display = False
        self.query_one(f"#{self.panes[key]}").display = True
        self.query_one(PaneBar).show(key)
