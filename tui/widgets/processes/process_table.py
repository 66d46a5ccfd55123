"""Every running experiment / plot / compile, live, with kill / extend / pause.

Rows come from ``RunStarted`` (limit, isolation), are updated in place by the newest
``ProcessStats`` per run and ``RunStalled``, and leave on ``RunFinished``. Rows near
their time limit or silent for too long are highlighted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aisci.engine import events as ev
from aisci.tui.lab_data import fmt_duration
from aisci.tui.widgets.steady_table import SteadyTable
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

clock = time.time
"""Wall clock; tests freeze it for deterministic snapshots."""
TICK_S = 1.0
"""Elapsed times advance this often between the engine's stats samples."""

#: State comes right after the run: it is what the pane is for (paused / stalled / near
#: limit), so it stays visible when the pane is half a 160-column screen.
COLUMNS = (("idea", "Idea"), ("run", "Run"), ("state", "State"), ("elapsed", "Elapsed / limit"),
           ("cpu", "CPU%"), ("rss", "RSS"), ("gpu", "GPU mem"), ("quiet", "Quiet"),
           ("iso", "Isolation"))
NEAR_LIMIT = 0.9
_LIMIT_RE = re.compile(r"limit now ([0-9.]+)")


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit in ("B", "K") else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}T"


@dataclass
class ProcessRow:
    idea_id: int | None
    run: str
    limit_s: float
    isolation: str
    started: float
    elapsed_s: float = 0.0
    cpu: float | None = None
    rss: int | None = None
    gpu: int | None = None
    quiet_s: float = 0.0
    paused: bool = False
    stalled: bool = False
    flags: set[str] = field(default_factory=set)
    log_path: str = ""
    node: str = ""
    """The cluster node it runs on (the Ray backend); empty on this machine."""


def _looks(cell: object) -> object:
    """What a cell shows: its text and its style (rich's Text equality ignores the
    style, and a cell turning red near the limit keeps its text)."""
    return (cell.plain, str(cell.style), tuple(cell.spans)) if isinstance(cell, Text) else cell


class ProcessTable(SteadyTable):
    BINDINGS = [
        Binding("k", "kill", "Kill", id="kill-run"),
        Binding("plus,x", "extend", "Extend", id="extend-run"),
        Binding("p", "pause", "Pause/resume", id="pause-run"),
        Binding("l", "show_log", "Show its log", id="run-log"),
    ]

    @dataclass
    class LogRequested(Message):
        """Show this process's log in the log pane (``l`` or Enter on its row)."""

        idea_id: int | None
        run: str
        log_path: str

    @dataclass
    class KillRequested(Message):
        idea_id: int | None
        run: str

    @dataclass
    class ExtendRequested(Message):
        idea_id: int | None
        run: str

    @dataclass
    class PauseRequested(Message):
        idea_id: int | None
        run: str
        resume: bool

    def __init__(self, stall_after_s: float = 900.0, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.stall_after_s = stall_after_s
        self.rows_by_key: dict[str, ProcessRow] = {}
        self._shown: dict[str, tuple[object, ...]] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        # The table's own timer: it stops with the table, so a tick can never look for a
        # table that app shutdown has already removed.
        self.set_interval(TICK_S, self.tick)

    @staticmethod
    def key(idea_id: int | None, run: str) -> str:
        return f"{idea_id}:{run}"

    def started(self, e: ev.RunStarted) -> None:
        key = self.key(e.idea_id, e.run)
        row = ProcessRow(e.idea_id, e.run, e.limit_s, e.isolation, e.ts, log_path=e.log_path)
        # A run already under way (TUI attached late) shows its age at once, not 0:00
        # until the first tick or stats sample.
        row.elapsed_s = max(0.0, clock() - e.ts)
        if key in self.rows_by_key:
            self.remove_row(key)
        self.rows_by_key[key] = row
        self._shown[key] = self._cells(row)
        self.add_row(*self._shown[key], key=key)

    def add_existing(self, idea_id: int | None, run: str, limit_s: float, isolation: str,
                     started: float, log_path: str = "") -> None:
        if self.key(idea_id, run) not in self.rows_by_key:
            self.started(ev.RunStarted(idea_id=idea_id, run=run, attempt=1, pid=0,
                                       limit_s=limit_s, isolation=isolation,
                                       log_path=log_path, ts=started))

    def finished(self, idea_id: int | None, run: str) -> None:
        key = self.key(idea_id, run)
        self._shown.pop(key, None)
        if self.rows_by_key.pop(key, None) is not None:
            self.remove_row(key)

    def control(self, e: ev.RunControl) -> None:
        row = self.rows_by_key.get(self.key(e.idea_id, e.run))
        if row is None:
            return
        if e.action == "extend":
            # the executor says "+900 s, limit now 8100 s"; stats confirm it within 1 s
            m = _LIMIT_RE.search(e.detail)
            if m:
                row.limit_s = float(m.group(1))
        if e.action in ("pause", "resume"):
            row.paused = e.action == "pause"
        self._update(row)

    def stats(self, s: ev.ProcessStats) -> None:
        row = self.rows_by_key.get(self.key(s.idea_id, s.run))
        if row is None:
            return
        row.elapsed_s, row.limit_s = s.elapsed_s, s.limit_s or row.limit_s
        row.cpu, row.rss, row.gpu = s.cpu_percent, s.rss_bytes, s.gpu_mem_bytes
        row.quiet_s, row.paused = s.last_output_age_s, s.paused
        row.node = s.node
        row.stalled = row.stalled and s.last_output_age_s > 1.0
        self._update(row)

    def stalled(self, s: ev.RunStalled) -> None:
        row = self.rows_by_key.get(self.key(s.idea_id, s.run))
        if row is not None:
            row.stalled, row.quiet_s = True, s.silent_for_s
            self._update(row)

    def tick(self, now: float | None = None) -> None:
        """Advance elapsed times between stats samples (cheap; only changed cells)."""
        now = clock() if now is None else now
        for row in self.rows_by_key.values():
            if not row.paused and row.cpu is None:
                row.elapsed_s = max(row.elapsed_s, now - row.started)
                self._update(row)

    def _update(self, row: ProcessRow) -> None:
        """Only the cells whose value changed (a stats sample changes three or four): each
        update repaints its cell and may re-measure its column."""
        key = self.key(row.idea_id, row.run)
        cells = self._cells(row)
        shown = self._shown.get(key)
        for i, ((col, _), value) in enumerate(zip(COLUMNS, cells, strict=True)):
            if shown is None or _looks(shown[i]) != _looks(value):
                self.update_cell(key, col, value, update_width=True)
        self._shown[key] = cells

    def _cells(self, r: ProcessRow) -> tuple[object, ...]:
        near = r.limit_s > 0 and r.elapsed_s >= NEAR_LIMIT * r.limit_s
        stalled = r.stalled or r.quiet_s >= self.stall_after_s
        elapsed = Text(f"{fmt_duration(r.elapsed_s)} / {fmt_duration(r.limit_s)}",
                       style="bold red" if near else "")
        quiet = Text(fmt_duration(r.quiet_s), style="bold yellow" if stalled else "")
        state = "paused" if r.paused else "stalled" if stalled else "near limit" if near \
            else "running"
        state_style = {"paused": "yellow", "stalled": "bold yellow reverse",
                       "near limit": "bold red reverse"}.get(state, "green")
        iso_style = "" if r.isolation not in ("none", "") else "red"
        run = f"{r.run} @{r.node}" if r.node else r.run  # where it runs, on a cluster
        return (str(r.idea_id if r.idea_id is not None else "—"), run,
                Text(state, style=state_style), elapsed,
                "—" if r.cpu is None else f"{r.cpu:.0f}", fmt_bytes(r.rss), fmt_bytes(r.gpu),
                quiet, Text(r.isolation or "?", style=iso_style))

    def selected(self) -> ProcessRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.rows_by_key.get(str(key))

    def _with_selected(self, build: Callable[..., Message], **extra: object) -> None:
        row = self.selected()
        if row is None:
            self.notify("no running process selected", severity="warning")
            return
        # every request is a dataclass Message taking (idea_id, run, **extra)
        self.post_message(build(row.idea_id, row.run, **extra))

    def action_kill(self) -> None:
        self._with_selected(self.KillRequested)

    def action_show_log(self) -> None:
        row = self.selected()
        self._with_selected(self.LogRequested, log_path=row.log_path if row else "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_show_log()

    def action_extend(self) -> None:
        self._with_selected(self.ExtendRequested)

    def action_pause(self) -> None:
        row = self.selected()
        self._with_selected(self.PauseRequested, resume=bool(row and row.paused))
