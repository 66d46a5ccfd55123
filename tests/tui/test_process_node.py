"""The processes pane names the cluster node of a run (Ray backend); local runs show none."""

from __future__ import annotations

from aisci.engine import events as ev
from aisci.tui.widgets.processes.process_table import ProcessTable
from textual.app import App, ComposeResult


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield ProcessTable()


def stats(run: str, node: str) -> ev.ProcessStats:
    return ev.ProcessStats(idea_id=1, run=run, elapsed_s=5, limit_s=100, cpu_percent=50,
                           rss_bytes=1 << 20, gpu_mem_bytes=None, last_output_age_s=0,
                           paused=False, node=node)


async def test_the_node_of_each_run_is_shown() -> None:
    app = OneTable()
    async with app.run_test() as pilot:
        table = app.query_one(ProcessTable)
        for run in ("run_1", "run_2"):
            table.started(ev.RunStarted(idea_id=1, run=run, attempt=1, pid=0, limit_s=100,
                                        isolation="bwrap", log_path=""))
        table.stats(stats("run_1", "gpu-node-3"))
        table.stats(stats("run_2", ""))
        await pilot.pause()
        assert str(table.get_cell("1:run_1", "run")) == "run_1 @gpu-node-3"
        assert str(table.get_cell("1:run_2", "run")) == "run_2"


async def test_a_cell_that_only_changes_colour_is_updated() -> None:
    """Only changed cells are updated, and a colour change is a change: the elapsed
    time turns red near the limit even when its text stays the same."""
    app = OneTable()
    async with app.run_test() as pilot:
        table = app.query_one(ProcessTable)
        table.started(ev.RunStarted(idea_id=1, run="run_1", attempt=1, pid=0, limit_s=100,
                                    isolation="bwrap", log_path=""))
        table.stats(stats("run_1", ""))
        await pilot.pause()
        before = table.get_cell("1:run_1", "elapsed")
        assert "red" not in str(before.style)
        row = table.rows_by_key["1:run_1"]
        table.stall_after_s = 0.0  # the quiet time turns yellow; its text does not change
        table._update(row)
        assert "yellow" in str(table.get_cell("1:run_1", "quiet").style)
