"""The code diff of one run against the previous one, unified or side by side.

Diffs come from the idea's git repository: every run is tagged ``run_<i>`` and the
template import is tagged ``base`` (the engine's workspace contract), so the diff of
run i is ``git diff run_{i-1} run_i`` with ``base`` standing in for run_0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
from aisci.engine.lab.workspace import IdeaWorkspace, WorkspaceError
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

MAX_DIFF_CHARS = 200_000


def previous_ref(run: str) -> str | None:
    if not run.startswith("run_") or not run[4:].isdigit():
        return None
    i = int(run[4:])
    if i == 0:
        return None
    return "base" if i == 1 else f"run_{i - 1}"


def git_diff(idea_dir: Path, run: str) -> str:
    """``git diff <previous> <run>`` in the idea's repository ('' when not available),
    through the engine's workspace (its git directory and pinned git configuration)."""
    prev = previous_ref(run)
    if prev is None:
        return ""
    try:
        ws = IdeaWorkspace.open(idea_dir)
        tags = ws.tags()
        if run not in tags:
            return ""
        if prev not in tags:
            prev = "base" if "base" in tags else f"{run}~1"
        return str(ws.git.diff("--no-ext-diff", "--no-textconv", prev, run, "--", ":/",
                               ":(exclude)run_*", ":(exclude)logs"))[:MAX_DIFF_CHARS]
    except WorkspaceError:
        return ""
    except git.GitError as exc:
        return f"# git diff failed: {str(exc).splitlines()[0] if str(exc) else exc}"


def split_diff(diff: str) -> Table:
    """A two-column (old | new) rendering of a unified diff."""
    table = Table.grid(expand=True, padding=(0, 1))
    table.add_column(ratio=1)
    table.add_column(ratio=1)
    old: list[Text] = []
    new: list[Text] = []

    def flush() -> None:
        for i in range(max(len(old), len(new))):
            table.add_row(old[i] if i < len(old) else Text(""),
                          new[i] if i < len(new) else Text(""))
        old.clear()
        new.clear()

    for line in diff.splitlines():
        if line.startswith(("diff --git", "index ")):
            continue
        if line.startswith(("---", "+++")):
            flush()
            if line.startswith("+++"):
                table.add_row(Text(line[4:], style="bold"), Text(""))
            continue
        if line.startswith("@@"):
            flush()
            table.add_row(Text(line, style="cyan"), Text(line, style="cyan"))
        elif line.startswith("-"):
            old.append(Text(line[1:], style="red"))
        elif line.startswith("+"):
            new.append(Text(line[1:], style="green"))
        else:
            flush()
            table.add_row(Text(line[1:], style="dim"), Text(line[1:], style="dim"))
    flush()
    return table


class DiffView(VerticalScroll):
    """Shows one run's diff; ``split`` toggles side by side."""

    split: reactive[bool] = reactive(False)
    """Side by side (True) or unified (False)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._diff = ""
        self._title = ""

    def compose(self) -> ComposeResult:
        yield Static("select a run to see its code change", id="diff-body")

    def show(self, title: str, diff: str) -> None:
        if (title, diff) == (self._title, self._diff):
            return
        self._title, self._diff = title, diff
        self._paint()

    def watch_split(self) -> None:
        self._paint()

    def _paint(self) -> None:
        body: RenderableType
        if not self._diff:
            body = Text(f"{self._title}: no code change recorded" if self._title
                        else "select a run to see its code change", style="dim")
        elif self.split:
            body = Group(Text(self._title, style="bold"), split_diff(self._diff))
        else:
            body = Group(Text(self._title, style="bold"),
                         Syntax(self._diff, "diff", theme="ansi_dark", word_wrap=False,
                                background_color="default"))
        if self.is_mounted:
            self.query_one("#diff-body", Static).update(body)
