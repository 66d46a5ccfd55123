"""The key footer: the focused pane's keys, drawn as one line of text.

Textual's Footer rebuilds one widget per key at every focus change (each pane has its own
keys): a dozen widgets mounted and styled, several layout passes, two thirds of the work
of a key press that switches panes. Its removed keys also stayed alive (their data
binding's watcher is dropped only when ``compact`` changes, which it never does), so the
heap and every full garbage collection grew with the session's age. This footer is one
widget of fixed size: a change of keys is one repaint of one line. A click on a key
presses it, as on Textual's.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


class KeyFooter(Widget):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-footer--key", "key-footer--description", "key-footer--palette"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .key-footer--palette { color: $foreground 20%; }
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hits: list[tuple[int, int, str, bool]] = []
        """(first column, end column, key, enabled) of each key drawn."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[Any]) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh()  # one line, fixed size: a repaint, no layout

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-footer--key")
        text_style = self.get_component_rich_style("key-footer--description")
        app = self.app
        active = self.screen.active_bindings
        out = Text(no_wrap=True, overflow="crop", end="")
        hits: list[tuple[int, int, str, bool]] = []
        seen: set[str] = set()
        for _node, binding, enabled, _tooltip in active.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)  # one entry per action, as Textual's footer
            start = out.cell_len
            dim = Style() if enabled else Style(dim=True)
            out.append(f" {app.get_key_display(binding)} ", key_style + dim)
            if binding.description:
                out.append(f"{binding.description} ", text_style + dim)
            hits.append((start, out.cell_len, binding.key, enabled))
        palette = active.get(app.COMMAND_PALETTE_BINDING) if app.ENABLE_COMMAND_PALETTE \
            else None
        if palette is not None:
            _node, binding, enabled, _tooltip = palette
            right = Text(no_wrap=True, end="")
            right.append("▏", self.get_component_rich_style("key-footer--palette"))
            right.append(f"{app.get_key_display(binding)} ", key_style)
            right.append(binding.description, text_style)
            room = self.size.width - right.cell_len - 1  # the palette key always shows,
            if out.cell_len > room:  # at the right edge, over the last keys if need be
                out.truncate(max(0, room))
                hits = [(a, min(b, room), k, e) for a, b, k, e in hits if a < room]
            out.append(" " * max(1, self.size.width - out.cell_len - right.cell_len))
            hits.append((out.cell_len + 1, out.cell_len + right.cell_len, binding.key, enabled))
            out.append_text(right)
        self._hits = hits
        return out

    def on_click(self, event: events.Click) -> None:
        for start, end, key, enabled in self._hits:
            if start <= event.x < end:
                if enabled:
                    self.app.simulate_key(key)
                else:
                    self.app.bell()
                return
