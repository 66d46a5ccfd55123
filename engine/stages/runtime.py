"""What several stages share, so that no stage imports another: progress events, the
template of an idea and its task description, smoke settings, scheduler slots, running a
contained process through the executor, failure descriptions, restart points in the
idea's repository, and the experiment plan the plot stage reads back."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.agent.edit_tools import STAGE_WRITABLE
from aisci.engine.config import Settings
from aisci.engine.errors import StageError
from aisci.engine.lab.store import IdeaRow
from aisci.engine.lab.templates import (
    DEFAULT_SMOKE_ENV,
    TemplateInfo,
    find_template,
    work_size,
    work_size_env,
    work_size_tag,
)
from aisci.engine.lab.workspace import IdeaWorkspace
from aisci.engine.run.executor import HUMAN_KILL, RunResult, RunSpec
from aisci.engine.stages.context import ProcessRunner, SlotInfo, StageContext

MAX_PLAN_ITEM_CHARS = 120
DONE_TAG = "experiments_done"
"""Tag of the idea's repository: the experiment stage finished its runs."""
_PLAN_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**run[ _]?(\d+)\**\s*[:.)\-\u2013]\s*(.+?)\s*$",
                        re.IGNORECASE | re.MULTILINE)


class ExperimentError(StageError):
    """The stage cannot go on (no baseline, no finished run, engine stopping)."""


def progress(ctx: StageContext, idea_id: int | None, stage: str, message: str) -> None:
    ctx.publish(ev.StageProgress(idea_id=idea_id, stage=stage, message=message))


def template_of(ctx: StageContext, idea: IdeaRow) -> TemplateInfo:
    return find_template(idea.template, ctx.lab)


def task_description(template_dir: Path) -> str:
    """``task_description`` of the template's prompt.json; "" when missing or unreadable."""
    try:
        prompt = json.loads((template_dir / "prompt.json").read_text(encoding="utf-8"))
        return str(prompt.get("task_description", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def smoke_env(template: TemplateInfo, smoke: bool) -> dict[str, str]:
    """The environment that puts the template in smoke mode, or nothing for a full run."""
    if not smoke:
        return {}
    return dict(template.smoke_env or DEFAULT_SMOKE_ENV)


def run_env(template: TemplateInfo, settings: Settings, smoke: bool) -> dict[str, str]:
    """Environment of a template run: the smoke switch and the work size (template.toml
    defaults, aisci.toml ``[work_size.<name>]``, ``AISCI_WORK_*`` from the environment)."""
    size = work_size(template, settings.work_size.get(template.name), os.environ, smoke)
    return {**smoke_env(template, smoke), **work_size_env(template, size, smoke)}


def size_tag(template: TemplateInfo, settings: Settings, smoke: bool) -> str:
    """"" at the template's default work size; else a tag that keeps baselines apart."""
    size = work_size(template, settings.work_size.get(template.name), os.environ, smoke)
    return work_size_tag(template, size, smoke)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def one_line(text: str, limit: int = MAX_PLAN_ITEM_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class CpuSlot:
    name = "cpu0"
    cuda_visible_devices = ""


@contextlib.asynccontextmanager
async def stage_slot(ctx: StageContext, idea_id: int | None,
                     priority: int = 0) -> AsyncIterator[SlotInfo]:
    if ctx.scheduler is None:  # a bare context (one process at a time, CPU only)
        yield CpuSlot()
        return
    async with ctx.scheduler.slot(idea_id=idea_id, priority=priority) as slot:
        yield slot


def executor_of(ctx: StageContext) -> ProcessRunner:
    if ctx.executor is None:
        raise ExperimentError("the stage context has no executor: experiments cannot run")
    return ctx.executor


def mark_interrupted(ctx: StageContext, idea_id: int, kinds: tuple[str, ...]) -> None:
    """Rows left ``running`` by an engine that died: this stage is not running them now."""
    for row in ctx.store.runs(idea_id):
        if row.status == "running" and row.kind in kinds:
            ctx.store.update_run(row.id, status="interrupted",
                                 reason="the engine stopped while this attempt ran",
                                 finished_at=time.time())


def describe_failure(result: RunResult, limit_s: float, tail_chars: int) -> tuple[str, str]:
    """(reason, details for the model) of a RunResult that is not ok."""
    tail = (result.stderr_tail or "")[-tail_chars:]
    if result.status == "timeout":
        return f"timed out after {limit_s:.0f} s", (f"Last stderr:\n{tail}" if tail else "")
    if result.status == "killed" and result.reason == HUMAN_KILL:
        return "killed by the operator", "A human stopped this run (too slow or misbehaving)."
    code = result.exit_code
    reason = result.reason or (f"exit code {code}" if code is not None else result.status)
    return reason, (f"stderr (last {tail_chars} chars):\n{tail}" if tail else "(no stderr)")


def restart_point(ws: IdeaWorkspace, ref: str, label: str) -> None:
    """Bring the tree back to ``ref`` when an earlier attempt left it elsewhere (crash,
    exhausted attempts), keeping whatever it left in history."""
    if ws.repo.commit(ref).hexsha == ws.head_sha() and not ws.dirty():
        return
    if ws.dirty():
        ws.commit(f"{label} (interrupted; kept for the record)")
    ws.restore_to(ref)
    ws.commit(f"{label}: restart from {ref}")


async def run_process(ctx: StageContext, *, argv: list[str], cwd: Path, log: Path,
                       limit_s: float, kind: str, run: str, attempt: int, idea_id: int | None,
                       env: dict[str, str], gpu: str | None) -> RunResult:
    # the executor creates logs/ (no symlink followed, safe_files.open_log)
    spec = RunSpec(argv=argv, cwd=cwd, log_path=log, limit_s=limit_s, kind=kind, run=run,
                   attempt=attempt, idea_id=idea_id, writable=[cwd], env=env, gpu=gpu)
    return await executor_of(ctx).run(spec)


def check_interrupted(result: RunResult, what: str) -> None:
    if result.status == "interrupted":
        raise ExperimentError(f"{what} was interrupted (engine stopping); it restarts on resume")


def update_row(ctx: StageContext, row_id: int | None, **fields: Any) -> None:
    if row_id is not None:
        ctx.store.update_run(row_id, **fields)


# -- the experiment plan (written by the experiment stage, read by the plot stage) ------

def parse_plan(text: str, max_runs: int) -> dict[int, str]:
    items: dict[int, str] = {}
    for m in _PLAN_LINE.finditer(text or ""):
        i = int(m.group(1))
        if 1 <= i <= max_runs and i not in items:
            items[i] = one_line(m.group(2).strip("* "))
    return items


def plan_of(ws: IdeaWorkspace, max_runs: int) -> dict[int, str]:
    if "plan" not in ws.tags():
        return {}
    return parse_plan(str(ws.repo.commit("plan").message), max_runs)


def system_prompt(ctx: StageContext, stage: str) -> str:
    """The system prompt of the experiment or the plot stage's code editing."""
    allowed, denied = STAGE_WRITABLE[stage]
    writable = ", ".join(allowed) + (f" (not {', '.join(denied)})" if denied else "")
    if stage == "experiment":
        return ctx.prompts.render("experiment_system", writable=writable,
                                  run_timeout=fmt_s(ctx.settings.experiment.run_timeout_s))
    return ctx.prompts.render("plot_system", writable=writable,
                              timeout=fmt_s(ctx.settings.plot.timeout_s))
