"""A DataTable that keeps its drawn rows when it is shown again at the same size."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.geometry import Size
from textual.widgets import DataTable


class SteadyTable(DataTable[Any]):
    """Textual sends a Resize to every widget that becomes visible, and DataTable's own
    handler then drops every row and cell it has drawn: showing the ideas pane again
    re-rendered all of its cells (7-19 ms of a key press on the demo lab). Here a Resize
    to the size already drawn stops before that handler (``prevent_default``: base
    classes' handlers do not run); a new size still invalidates as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drawn_at: tuple[Size, Size] | None = None

    def on_resize(self, event: events.Resize) -> None:
        sizes = (event.size, event.container_size)
        if sizes == self._drawn_at:
            event.prevent_default()
        self._drawn_at = sizes
