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

from typing import Any, NamedTuple

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


class _Entry(NamedTuple):
    """One key as the footer draws it."""

    text: Text
    key: str
    """The key a click presses ("" for the "…" that stands for dropped keys)."""
    enabled: bool
    everywhere: bool
    """An app key (help, quit, detach): kept when the pane's keys do not fit."""


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
        palette = active.get(app.COMMAND_PALETTE_BINDING) if app.ENABLE_COMMAND_PALETTE \
            else None
        right = Text(no_wrap=True, end="")
        if palette is not None:
            right.append("▏", self.get_component_rich_style("key-footer--palette"))
            right.append(f"{app.get_key_display(palette[1])} ", key_style)
            right.append(palette[1].description, text_style)
        # The pane's keys, then the app's (help, quit, detach). When they do not all fit,
        # the pane's last keys give way, whole, to the app's: these work everywhere.
        entries: list[_Entry] = []
        seen: set[str] = set()
        for node, binding, enabled, _tooltip in active.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)  # one entry per action, as Textual's footer
            dim = Style() if enabled else Style(dim=True)
            text = Text(no_wrap=True, end="")
            text.append(f" {app.get_key_display(binding)} ", key_style + dim)
            if binding.description:
                text.append(f"{binding.description} ", text_style + dim)
            entries.append(_Entry(text, binding.key, enabled, everywhere=node is app))
        room = self.size.width - (right.cell_len + 1 if right else 0)
        if sum(e.text.cell_len for e in entries) > room:
            more = _Entry(Text(" … ", text_style), "", False, everywhere=False)
            budget = room - more.text.cell_len - sum(
                e.text.cell_len for e in entries if e.everywhere)
            kept: list[_Entry] = []
            full = False  # once a pane key is dropped, so are the later ones (their order)
            for e in entries:
                if not e.everywhere:
                    if full or e.text.cell_len > budget:
                        full = True
                        continue
                    budget -= e.text.cell_len
                kept.append(e)
            first_app = next((i for i, e in enumerate(kept) if e.everywhere), len(kept))
            kept.insert(first_app, more)
            entries = kept
        out = Text(no_wrap=True, overflow="crop", end="")
        hits: list[tuple[int, int, str, bool]] = []
        for e in entries:
            start = out.cell_len
            out.append_text(e.text)
            if e.key:
                hits.append((start, out.cell_len, e.key, e.enabled))
        if out.cell_len > room:  # not even the app's keys fit: crop at the edge
            out.truncate(max(0, room))
            hits = [(a, min(b, room), k, e) for a, b, k, e in hits if a < room]
        if palette is not None:  # the palette key always shows, at the right edge
            out.append(" " * max(1, self.size.width - out.cell_len - right.cell_len))
            hits.append((out.cell_len + 1, out.cell_len + right.cell_len, palette[1].key,
                         palette[2]))
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
