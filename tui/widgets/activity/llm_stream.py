"""The streaming output of the LLM call for the focused idea, in a bounded buffer.

A plain Static showing the tail of a bounded character buffer, updated at most once
per bridge flush (not a ``Log``: in textual 8.2.8 ``Log(max_lines=N)`` stops repainting
once it prunes).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from aisci.engine import events as ev
from rich.text import Text
from textual.widgets import Static

MAX_CHARS = 6000


_FENCE = re.compile(r"^\s*(```|~~~)[\w+.-]*\s*$")


def visible_lines(body: str, rows: int) -> list[str]:
    """The last ``rows`` lines of ``body`` worth showing: code-fence lines and trailing
    blank lines dropped."""
    lines = [line for line in body.splitlines() if not _FENCE.match(line)]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-rows:]


class LLMStream(Static):
    DEFAULT_CSS = "LLMStream { height: 1fr; overflow-y: hidden; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.focus_idea: int | None = None
        self._chunks: deque[str] = deque()
        self._chars = 0
        self._call: str | None = None
        self._head = "LLM: idle"

    def set_focus_idea(self, idea_id: int | None) -> None:
        if idea_id != self.focus_idea:
            self.focus_idea = idea_id
            self._reset(None, f"LLM for idea {idea_id}: waiting for a call")

    def _reset(self, call_id: str | None, head: str) -> None:
        self._call, self._head = call_id, head
        self._chunks.clear()
        self._chars = 0

    def _wanted(self, idea_id: int | None) -> bool:
        return self.focus_idea is None or idea_id == self.focus_idea

    def feed(self, chunks: tuple[tuple[ev.LLMStreamed, str], ...],
             calls: tuple[ev.Event, ...]) -> None:
        changed = False
        for c in calls:
            if isinstance(c, ev.LLMCallStarted) and self._wanted(c.idea_id):
                self._reset(c.call_id, f"{c.stage} · idea {c.idea_id} · {c.model} · streaming")
                changed = True
            elif isinstance(c, ev.LLMCallFinished) and c.call_id == self._call:
                cost = "" if c.cost_usd is None else f" · ${c.cost_usd:.4f}"
                state = f"error: {c.error}" if c.error else "done"
                self._head = (f"{c.stage} · idea {c.idea_id} · {c.model} · {state} · "
                              f"{c.input_tokens}+{c.output_tokens} tok{cost}")
                changed = True
            elif isinstance(c, ev.LLMRetry) and (c.call_id == self._call
                                                 or self._wanted(c.idea_id)):
                # Waits are shown even before a call streamed anything (a rate-limit storm
                # is otherwise minutes of a silent pane).
                self._call = c.call_id
                self._head = f"waiting: {c.summary}"
                changed = True
        for first, text in chunks:
            if not self._wanted(first.idea_id):
                continue
            if first.call_id != self._call:
                self._reset(first.call_id, f"{first.stage} · idea {first.idea_id} · streaming")
            self._chunks.append(text)
            self._chars += len(text)
            while self._chars > MAX_CHARS and len(self._chunks) > 1:
                self._chars -= len(self._chunks.popleft())
            changed = True
        if changed:
            self._repaint()

    def _repaint(self) -> None:
        body = "".join(self._chunks)[-MAX_CHARS:]
        # show the end of the stream: the last lines that fit, without the markdown
        # fences around code (a panel showing only "```" says nothing)
        lines = visible_lines(body, max(1, self.size.height - 1 or 20))
        out = Text(self._head + "\n", style="bold")
        out.append("\n".join(lines))
        self.update(out)
