"""The experiment stage (plan, edit, run, feed back; up to N runs) and the plot stage.

Everything the stages need to resume lives in the idea's git repository
(:mod:`aisci.engine.workspace`): tag ``plan`` (its commit message holds the plan),
``run_<i>`` for every finished run, ``experiments_done``, ``plot`` and ``plot_notes``.
A second call after a crash skips what is tagged; a run that was in progress restarts
from its beginning (files restored to the last finished run, attempts counted from 1),
and its store rows still marked ``running`` become ``interrupted``.

LLM steps (stage ``experiment`` unless noted; the tool loop appends ``/turn-<k>``):

- ``<idea>/plan``: plan the runs into notes.txt; reply ``Run <i>: <item>`` lines;
- ``<idea>/run-<i>/attempt-<a>``: make the edit for run i (a = 1..max_attempts); the
  reply ``ALL_COMPLETED`` (without code edits) ends the runs early;
- stage ``plot``: ``<idea>/plot/attempt-<a>``: edit plot.py; ``<idea>/plot-notes``:
  describe every figure in notes.txt.

where ``<idea>`` is the idea's Name. Processes run through ``ctx.executor`` (kinds
``baseline``, ``check``, ``experiment``, ``plot``) under a ``ctx.scheduler`` slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.context import StageContext
from aisci.engine.edit_tools import STAGE_WRITABLE, EditTools
from aisci.engine.llm.base import Message
from aisci.engine.runenv import write_run_env
from aisci.engine.store import IdeaRow
from aisci.engine.toolloop import run_tool_loop
from aisci.engine.workspace import (
    IdeaWorkspace,
    format_results,
    read_final_info,
)

DONE_TAG = "experiments_done"
COMPLETION_WORD = "ALL_COMPLETED"
MAX_PLAN_ITEM_CHARS = 120
PREPARE_LIMIT_S = 3600.0
_PLAN_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**run[ _]?(\d+)\**\s*[:.)\-\u2013]\s*(.+?)\s*$",
                        re.IGNORECASE | re.MULTILINE)
_FIGURE_SKIP = ("run_", "latex", ".git", "logs")


class ExperimentError(RuntimeError):
    """The stage cannot go on (no baseline, no finished run, engine stopping)."""


@dataclass
class ExperimentOutcome:
    ok: bool
    runs: list[int] = field(default_factory=list)
    """Finished runs (tags run_<i>)."""
    completed: bool = False
    """The model said ALL_COMPLETED or every planned run was done."""
    reason: str = ""

    @property
    def summary(self) -> str:
        return self.reason or f"{len(self.runs)} run(s) finished"


@dataclass
class PlotOutcome:
    ok: bool
    figures: list[str] = field(default_factory=list)
    attempts: int = 0
    reason: str = ""

    @property
    def summary(self) -> str:
        return self.reason or f"{len(self.figures)} figure(s)"


@dataclass
class _Attempt:
    ok: bool
    reason: str = ""
    details: str = ""
    final_info: dict[str, Any] | None = None
    duration_s: float = 0.0
    process_status: str = "ok"
    """The executor's verdict (timeout/killed/failed kept in the row; "ok" with a bad
    result becomes "failed")."""


# -- small helpers ----------------------------------------------------------------------

def _progress(ctx: StageContext, idea_id: int, stage: str, message: str) -> None:
    ctx.publish(ev.StageProgress(idea_id=idea_id, stage=stage, message=message))


def _template(ctx: StageContext, idea: IdeaRow) -> Any:
    from aisci.engine.templates import find_template
    return find_template(idea.template, ctx.lab)


def _smoke_env(ctx: StageContext, template: Any) -> dict[str, str]:
    if not ctx.settings.general.smoke:
        return {}
    return dict(getattr(template, "smoke_env", None) or {"AISCI_SMOKE": "1"})


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _one_line(text: str, limit: int = MAX_PLAN_ITEM_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _CpuSlot:
    name = "cpu0"
    cuda_visible_devices = ""


@contextlib.asynccontextmanager
async def _slot(ctx: StageContext, idea_id: int | None, priority: int = 0) -> AsyncIterator[Any]:
    if ctx.scheduler is None:  # a bare context (one process at a time, CPU only)
        yield _CpuSlot()
        return
    async with ctx.scheduler.slot(idea_id=idea_id, priority=priority) as slot:
        yield slot


def _executor(ctx: StageContext) -> Any:
    if ctx.executor is None:
        raise ExperimentError("the stage context has no executor: experiments cannot run")
    return ctx.executor


def _mark_interrupted(ctx: StageContext, idea_id: int, kinds: tuple[str, ...]) -> None:
    """Rows left ``running`` by an engine that died: this stage is not running them now."""
    for row in ctx.store.runs(idea_id):
        if row.status == "running" and row.kind in kinds:
            ctx.store.update_run(row.id, status="interrupted",
                                 reason="the engine stopped while this attempt ran",
                                 finished_at=time.time())


def _describe_failure(result: Any, limit_s: float, tail_chars: int) -> tuple[str, str]:
    """(reason, details for the model) of a RunResult that is not ok."""
    tail = (result.stderr_tail or "")[-tail_chars:]
    if result.status == "timeout":
        return f"timed out after {limit_s:.0f} s", (f"Last stderr:\n{tail}" if tail else "")
    if result.status == "killed":
        return "killed by the operator", "A human stopped this run (too slow or misbehaving)."
    code = result.exit_code
    reason = f"exit code {code}" if code is not None else (result.reason or result.status)
    return reason, (f"stderr (last {tail_chars} chars):\n{tail}" if tail else "(no stderr)")


def _restart_point(ws: IdeaWorkspace, ref: str, label: str) -> None:
    """Bring the tree back to ``ref`` when an earlier attempt left it elsewhere (crash,
    exhausted attempts), keeping whatever it left in history."""
    if ws.repo.commit(ref).hexsha == ws.head_sha() and not ws.dirty():
        return
    if ws.dirty():
        ws.commit(f"{label} (interrupted; kept for the record)")
    ws.restore_to(ref)
    ws.commit(f"{label}: restart from {ref}")


async def _run_process(ctx: StageContext, *, argv: list[str], cwd: Path, log: Path,
                       limit_s: float, kind: str, run: str, attempt: int, idea_id: int | None,
                       env: dict[str, str], gpu: str | None) -> Any:
    from aisci.engine.executor import RunSpec
    log.parent.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(argv=argv, cwd=cwd, log_path=log, limit_s=limit_s, kind=kind, run=run,
                   attempt=attempt, idea_id=idea_id, writable=[cwd], env=env, gpu=gpu)
    return await _executor(ctx).run(spec)


def _check_interrupted(result: Any, what: str) -> None:
    if result.status == "interrupted":
        raise ExperimentError(f"{what} was interrupted (engine stopping); it restarts on resume")


# -- baseline -----------------------------------------------------------------------------

_baseline_locks: dict[Path, asyncio.Lock] = {}


async def ensure_baseline(ctx: StageContext, template: Any, smoke: bool) -> Path:
    """The template's baseline run_0 (``templates.baseline_dir``), produced through the
    executor (kind ``baseline``) the first time and reused by every later idea."""
    from aisci.engine.templates import baseline_dir
    run0 = baseline_dir(ctx.lab, template.name, smoke)
    lock = _baseline_locks.setdefault(run0, asyncio.Lock())
    async with lock:
        if (run0 / "final_info.json").is_file():
            return run0
        root = run0.parent
        log = root / "logs" / "run_0.log"
        for row in ctx.store.runs(kind="baseline"):
            if row.status == "running" and row.log_path == str(log):  # from a dead engine
                ctx.store.update_run(row.id, status="interrupted", finished_at=time.time(),
                                     reason="the engine stopped while this baseline ran")
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(Path(template.path), root, symlinks=True, ignore=shutil.ignore_patterns(
            "run_*", "logs", "__pycache__", "*.pyc", ".git"))
        env = dict(getattr(template, "smoke_env", None) or {"AISCI_SMOKE": "1"}) if smoke else {}
        _progress(ctx, None, "experiment", f"producing the {template.name} baseline (run_0)")
        run0.mkdir()
        if getattr(template, "prepare_command", None):
            await _prepare_data(ctx, template, root)
        async with _slot(ctx, None) as slot:
            result = await _run_process(
                ctx, argv=[sys.executable, "experiment.py", f"--out_dir={run0.name}"],
                cwd=root, log=log, limit_s=ctx.settings.experiment.run_timeout_s, kind="baseline",
                run="baseline", attempt=1, idea_id=None, env=env,
                gpu=slot.cuda_visible_devices)
            cvd = slot.cuda_visible_devices
        _check_interrupted(result, f"the {template.name} baseline")
        if result.status != "ok":
            reason, _ = _describe_failure(result, ctx.settings.experiment.run_timeout_s, 300)
            raise ExperimentError(f"baseline of template {template.name} failed ({reason}); "
                                  f"see {log}")
        try:
            info = read_final_info(run0)
        except ValueError as exc:
            raise ExperimentError(f"baseline of template {template.name}: {exc}") from None
        write_run_env(run0, cvd, info)
        return run0


async def _prepare_data(ctx: StageContext, template: Any, folder: Path) -> None:
    """The template's data preparation, in a fresh copy of the template (the pristine
    code, so it may use the network to download datasets). A failure is reported, not
    fatal: the experiment says itself what data it misses."""
    argv = [sys.executable if a in ("python", "python3") else a
            for a in template.prepare_command]
    _progress(ctx, None, "experiment", f"preparing the data of template {template.name}")
    from aisci.engine.executor import RunSpec
    spec = RunSpec(argv=argv, cwd=folder, log_path=folder / "logs" / "prepare.log",
                   limit_s=PREPARE_LIMIT_S, kind="prepare", run="prepare", idea_id=None,
                   writable=[folder], network=True,
                   # In smoke mode templates skip their downloads (tiny data suffices).
                   env=dict(template.smoke_env) if ctx.settings.general.smoke else {})
    res = await _executor(ctx).run(spec)
    _check_interrupted(res, f"data preparation of {template.name}")
    if res.status != "ok":
        reason, _ = _describe_failure(res, PREPARE_LIMIT_S, 300)
        ctx.publish(ev.Notice(level="warning", message=(
            f"template {template.name}: data preparation failed ({reason}); see "
            f"{spec.log_path}")))


def _copy_prepared(src_root: Path, dst_root: Path) -> int:
    """Copy files the prepare step made in the baseline folder (absent from the idea's
    copy of the template) into the idea folder; hard links when possible."""
    n = 0
    for p in sorted(src_root.rglob("*")):
        rel = p.relative_to(src_root)
        if not p.is_file() or rel.parts[0].startswith(("run_", "logs", "__pycache__", ".git")):
            continue
        dst = dst_root / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, dst)
        except OSError:
            shutil.copy2(p, dst)
        n += 1
    return n


async def prepare_workspace(ctx: StageContext, idea_id: int) -> tuple[IdeaWorkspace, Any]:
    """The idea's workspace with its baseline (and prepared data), created on first use
    (idempotent)."""
    idea = ctx.idea(idea_id)
    template = _template(ctx, idea)
    smoke = ctx.settings.general.smoke
    path = ctx.idea_dir(idea)
    if (path / ".git").is_dir():
        ws = IdeaWorkspace.open(path)
        if "base" in ws.tags() and (path / "run_0" / "final_info.json").is_file():
            return ws, template
    run0 = await ensure_baseline(ctx, template, smoke)
    ws = IdeaWorkspace.create(ctx, idea, template, smoke, baseline=run0)
    ws.add_baseline(run0, idea, template)
    if template.prepare_command and _copy_prepared(run0.parent, ws.path):
        ws.commit("prepare: data made by the template's prepare step")
        ws.tag("base", force=True)
    return ws, template


# -- planning ------------------------------------------------------------------------------

def parse_plan(text: str, max_runs: int) -> dict[int, str]:
    items: dict[int, str] = {}
    for m in _PLAN_LINE.finditer(text or ""):
        i = int(m.group(1))
        if 1 <= i <= max_runs and i not in items:
            items[i] = _one_line(m.group(2).strip("* "))
    return items


def plan_of(ws: IdeaWorkspace, max_runs: int) -> dict[int, str]:
    if "plan" not in ws.tags():
        return {}
    return parse_plan(str(ws.repo.commit("plan").message), max_runs)


def _system_prompt(ctx: StageContext, stage: str) -> str:
    allowed, denied = STAGE_WRITABLE[stage]
    writable = ", ".join(allowed) + (f" (not {', '.join(denied)})" if denied else "")
    if stage == "experiment":
        return ctx.prompts.render("experiment_system", writable=writable,
                                  run_timeout=_fmt_s(ctx.settings.experiment.run_timeout_s))
    return ctx.prompts.render("plot_system", writable=writable,
                              timeout=_fmt_s(ctx.settings.plot.timeout_s))


def _task_description(template: Any) -> str:
    p = Path(template.path) / "prompt.json"
    try:
        return str(json.loads(p.read_text(encoding="utf-8")).get("task_description", ""))
    except (OSError, ValueError, AttributeError):
        return getattr(template, "description", "") or ""


async def _plan(ctx: StageContext, ws: IdeaWorkspace, idea: IdeaRow, template: Any,
                system: str) -> dict[int, str]:
    cfg = ctx.settings.experiment
    baseline = read_final_info(ws.path / "run_0")
    prompt = ctx.prompts.render(
        "experiment_plan", title=idea.data.get("Title", idea.name),
        experiment=idea.data.get("Experiment", ""), task_description=_task_description(template),
        baseline_results=format_results(baseline, None, template.lower_is_better,
                                        template.higher_is_better),
        max_runs=cfg.max_runs)
    _restart_point(ws, "base", "plan")
    _progress(ctx, idea.id, "experiment", "planning the runs")
    loop = await run_tool_loop(ctx.stage_llm("experiment", idea.id), system=system,
                               messages=[Message(role="user", text=prompt)],
                               tools=EditTools(ws.path, ["notes.txt"]),
                               step=f"{idea.name}/plan", max_turns=cfg.max_tool_turns)
    items = parse_plan(loop.text, cfg.max_runs)
    if not items:
        items = parse_plan((ws.path / "notes.txt").read_text(encoding="utf-8"), cfg.max_runs)
    body = "\n".join(f"Run {i}: {t}" for i, t in sorted(items.items())) or _one_line(loop.text, 500)
    ws.commit(f"plan: {len(items)} run(s)\n\n{body}\n")
    ws.tag("plan")
    return items


# -- the run loop --------------------------------------------------------------------------

def _results_so_far(ws: IdeaWorkspace, plan: dict[int, str], template: Any) -> str:
    baseline = read_final_info(ws.path / "run_0")
    lines = ["Run 0 (baseline):\n" + format_results(baseline, None, template.lower_is_better,
                                                    template.higher_is_better)]
    for j in ws.finished_runs():
        try:
            info = read_final_info(ws.path / f"run_{j}")
        except ValueError:
            continue
        lines.append(f"Run {j} ({plan.get(j, 'unplanned')}):\n" + format_results(
            info, baseline, template.lower_is_better, template.higher_is_better))
    return "\n\n".join(lines)


async def _attempt_run(ctx: StageContext, ws: IdeaWorkspace, idea: IdeaRow, template: Any,
                       i: int, a: int, plan_item: str) -> tuple[_Attempt, int | None, str]:
    """Run the committed code of run i, attempt a: checker first (if any), then
    experiment.py. Returns the outcome, the store row id and the slot's GPUs."""
    cfg = ctx.settings.experiment
    env = _smoke_env(ctx, template)
    check = getattr(template, "check_command", None)
    async with _slot(ctx, idea.id) as slot:
        cvd = slot.cuda_visible_devices
        if check:
            _progress(ctx, idea.id, "experiment", f"run {i} attempt {a}: integrity check")
            res = await _run_process(
                ctx, argv=_check_argv(check, template, ws.path), cwd=ws.path,
                log=ws.path / "logs" / f"check_{i}.log", limit_s=min(cfg.run_timeout_s, 900.0),
                kind="check", run=f"run_{i}", attempt=a, idea_id=idea.id, env=env, gpu=cvd)
            _check_interrupted(res, f"the check of run_{i}")
            if res.status != "ok":
                verdict = _last_json_line(res.log_path)
                detail = (f"Checker output: {verdict}\n" if verdict else "") + \
                    (res.stderr_tail or "")[-600:]
                reason = ("the causality check failed: the model sees future tokens"
                          if res.exit_code == 1 else
                          f"the check could not run ({_describe_failure(res, 900, 600)[0]})")
                return _Attempt(False, reason, detail, process_status=res.status), res.row_id, cvd
        _progress(ctx, idea.id, "experiment", f"run {i} attempt {a}: running ({plan_item})")
        # Templates written for the reference create --out_dir themselves; not all do.
        (ws.path / f"run_{i}").mkdir(exist_ok=True)
        result = await _run_process(
            ctx, argv=[sys.executable, "experiment.py", f"--out_dir=run_{i}"], cwd=ws.path,
            log=ws.path / "logs" / f"run_{i}.log", limit_s=cfg.run_timeout_s,
            kind="experiment", run=f"run_{i}", attempt=a, idea_id=idea.id, env=env, gpu=cvd)
    _check_interrupted(result, f"run_{i}")
    if result.status != "ok":
        reason, details = _describe_failure(result, cfg.run_timeout_s, cfg.stderr_tail_chars)
        return (_Attempt(False, reason, details, duration_s=result.duration_s,
                         process_status=result.status), result.row_id, cvd)
    try:
        info = read_final_info(ws.path / f"run_{i}")
    except ValueError as exc:
        return (_Attempt(False, f"exit code 0 but {exc}",
                         "experiment.py must write <out_dir>/final_info.json with 'means' per "
                         "dataset.", duration_s=result.duration_s), result.row_id, cvd)
    return _Attempt(True, final_info=info, duration_s=result.duration_s), result.row_id, cvd


def _check_argv(check: list[str], template: Any, idea_dir: Path) -> list[str]:
    """The template's checker command, run from the PRISTINE template copy: relative
    script paths resolve in the template folder; ``{project}`` is the idea folder."""
    out = []
    for part in check:
        if part in ("python", "python3"):
            out.append(sys.executable)
        elif "{project}" in part or "{template}" in part:
            out.append(part.replace("{project}", str(idea_dir))
                       .replace("{template}", str(template.path)))
        elif part.endswith(".py") and not Path(part).is_absolute():
            out.append(str(Path(template.path) / part))
        else:
            out.append(part)
    if not any("{project}" in p for p in check) and "--project" not in check:
        out += ["--project", str(idea_dir)]
    return out


def _last_json_line(log_path: Path, max_bytes: int = 65536) -> str:
    """The last JSON object line a checker printed, from the tail of its log (lines are
    ``<time> <stream> <text>``)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        start = line.find("{")
        if start == -1:
            continue
        try:
            json.loads(line[start:])
        except ValueError:
            continue
        return line[start:]
    return ""


def _update_row(ctx: StageContext, row_id: int | None, **fields: Any) -> None:
    if row_id is not None:
        ctx.store.update_run(row_id, **fields)


async def run_experiments(ctx: StageContext, idea_id: int) -> ExperimentOutcome:
    """The experiment stage of one idea (resumable; see the module docstring)."""
    cfg = ctx.settings.experiment
    idea = ctx.idea(idea_id)
    ws, template = await prepare_workspace(ctx, idea_id)
    _mark_interrupted(ctx, idea_id, ("experiment", "check"))
    if DONE_TAG in ws.tags():
        return ExperimentOutcome(True, ws.finished_runs(), True, "")
    system = _system_prompt(ctx, "experiment")
    plan = plan_of(ws, cfg.max_runs) if "plan" in ws.tags() else \
        await _plan(ctx, ws, idea, template, system)
    llm = ctx.stage_llm("experiment", idea_id)
    finished = ws.finished_runs()
    i = (finished[-1] + 1) if finished else 1
    feedback = ""  # the previous run's results, then the failures of this run's attempts
    while i <= cfg.max_runs:
        plan_item = plan.get(i, f"run {i}")
        _restart_point(ws, f"run_{i - 1}" if i > 1 else "plan", f"run_{i}")
        last_reason = ""
        for a in range(1, cfg.max_attempts + 1):
            _progress(ctx, idea_id, "experiment", f"run {i}/{cfg.max_runs} attempt {a}: editing")
            prompt = ctx.prompts.render(
                "experiment_run", run=i, max_runs=cfg.max_runs, plan_item=plan_item,
                plan="\n".join(f"Run {k}: {t}" for k, t in sorted(plan.items())) or "(none)",
                results_so_far=_results_so_far(ws, plan, template), feedback=feedback)
            tools = EditTools.for_stage(ws.path, "experiment")
            loop = await run_tool_loop(llm, system=system,
                                       messages=[Message(role="user", text=prompt)],
                                       tools=tools, step=f"{idea.name}/run-{i}/attempt-{a}",
                                       max_turns=cfg.max_tool_turns)
            if COMPLETION_WORD in loop.text and not (loop.changed - {"notes.txt"}):
                ws.commit(f"experiments complete after {i - 1} run(s) ({COMPLETION_WORD})")
                ws.tag(DONE_TAG)
                _progress(ctx, idea_id, "experiment", f"the model ended the runs after run {i - 1}")
                return ExperimentOutcome(True, ws.finished_runs(), True)
            out_dir = ws.path / f"run_{i}"
            if out_dir.exists():  # a failed attempt's partial output (kept in history)
                shutil.rmtree(out_dir)
            sha = ws.commit(f"run_{i}: {plan_item}")
            outcome, row_id, cvd = await _attempt_run(ctx, ws, idea, template, i, a, plan_item)
            if outcome.ok:
                assert outcome.final_info is not None
                write_run_env(ws.path / f"run_{i}", cvd, outcome.final_info)
                sha = ws.commit(f"run_{i}: {plan_item}", amend=True)
                ws.tag(f"run_{i}")
                metrics = {k: v["means"] for k, v in outcome.final_info.items()}
                _update_row(ctx, row_id, metrics=metrics, commit_sha=sha, plan=plan_item)
                _progress(ctx, idea_id, "experiment",
                          f"run {i} finished in {_fmt_s(outcome.duration_s)}")
                feedback = ctx.prompts.render(
                    "experiment_results", run=i, plan_item=plan_item,
                    duration=_fmt_s(outcome.duration_s), results=format_results(
                        outcome.final_info, read_final_info(ws.path / "run_0"),
                        template.lower_is_better, template.higher_is_better))
                break
            last_reason = outcome.reason
            sha = ws.commit(f"run_{i} attempt {a} (failed: {_one_line(outcome.reason, 200)})",
                            amend=True)
            _update_row(ctx, row_id, reason=outcome.reason, commit_sha=sha, plan=plan_item,
                        **({"status": "failed"} if outcome.process_status == "ok" else {}))
            _progress(ctx, idea_id, "experiment", f"run {i} attempt {a} failed: {outcome.reason}")
            feedback = ctx.prompts.render("experiment_run_feedback", attempt=a, run=i,
                                          reason=outcome.reason, details=outcome.details,
                                          max_attempts=cfg.max_attempts)
        else:
            done = ws.finished_runs()
            reason = (f"run_{i} failed after {cfg.max_attempts} attempt(s): {last_reason}")
            return ExperimentOutcome(False, done, False, reason)
        i += 1
    ws.commit(f"experiments complete: {cfg.max_runs} run(s)")
    ws.tag(DONE_TAG)
    return ExperimentOutcome(True, ws.finished_runs(), True)


# -- the plot stage -----------------------------------------------------------------------

def figures_in(idea_dir: Path) -> list[str]:
    """PNG figures plot.py wrote (outside run folders, logs and the paper)."""
    out = []
    for p in sorted(Path(idea_dir).rglob("*.png")):
        rel = p.relative_to(idea_dir).as_posix()
        if not rel.split("/")[0].startswith(_FIGURE_SKIP):
            out.append(rel)
    return out[:200]


def _run_labels(ws: IdeaWorkspace, plan: dict[int, str]) -> str:
    lines = ["run_0: baseline (the unmodified template)"]
    lines += [f"run_{j}: {plan.get(j, 'unplanned')}" for j in ws.finished_runs()]
    return "\n".join(lines)


async def run_plots(ctx: StageContext, idea_id: int) -> PlotOutcome:
    """The plot stage: edit plot.py, run it (bounded attempts), describe the figures."""
    cfg = ctx.settings.plot
    idea = ctx.idea(idea_id)
    ws = IdeaWorkspace.open(ctx.idea_dir(idea))
    _mark_interrupted(ctx, idea_id, ("plot",))
    if not ws.finished_runs():
        raise ExperimentError(f"{ws.path.name}: no finished experiment run to plot")
    plan = plan_of(ws, ctx.settings.experiment.max_runs)
    llm = ctx.stage_llm("plot", idea_id)
    system = _system_prompt(ctx, "plot")
    attempts = 0
    if "plot" not in ws.tags():
        start = DONE_TAG if DONE_TAG in ws.tags() else f"run_{ws.finished_runs()[-1]}"
        _restart_point(ws, start, "plot")
        feedback, ok, reason = "", False, ""
        for a in range(1, cfg.max_attempts + 1):
            attempts = a
            _progress(ctx, idea_id, "plot", f"plot attempt {a}: editing plot.py")
            prompt = ctx.prompts.render("plot_task", title=idea.data.get("Title", idea.name),
                                        runs=_run_labels(ws, plan), feedback=feedback)
            await run_tool_loop(llm, system=system, messages=[Message(role="user", text=prompt)],
                                tools=EditTools.for_stage(ws.path, "plot"),
                                step=f"{idea.name}/plot/attempt-{a}", max_turns=
                                ctx.settings.experiment.max_tool_turns)
            for old in figures_in(ws.path):
                (ws.path / old).unlink()
            ws.commit(f"plot: attempt {a}")
            _progress(ctx, idea_id, "plot", f"plot attempt {a}: running plot.py")
            result = await _run_process(
                ctx, argv=[sys.executable, "plot.py"], cwd=ws.path, log=ws.path / "logs" / "plot.log",
                limit_s=cfg.timeout_s, kind="plot", run="plot", attempt=a, idea_id=idea_id,
                env=_smoke_env(ctx, _template(ctx, idea)), gpu="")
            _check_interrupted(result, "plot.py")
            figures = figures_in(ws.path)  # the old ones were removed above
            if result.status == "ok" and figures:
                sha = ws.commit(f"plot: {len(figures)} figure(s)", amend=True)
                ws.tag("plot")
                _update_row(ctx, result.row_id, commit_sha=sha,
                            metrics={"figures": figures})
                ok = True
                break
            if result.status == "ok":
                reason, details = "exit code 0 but plot.py wrote no PNG figure", \
                    "plot.py must save its figures as PNG files in the project folder."
            else:
                reason, details = _describe_failure(result, cfg.timeout_s,
                                                    ctx.settings.experiment.stderr_tail_chars)
            sha = ws.commit(f"plot attempt {a} (failed: {_one_line(reason, 200)})", amend=True)
            _update_row(ctx, result.row_id, reason=reason, commit_sha=sha,
                        **({"status": "failed"} if result.status == "ok" else {}))
            _progress(ctx, idea_id, "plot", f"plot attempt {a} failed: {reason}")
            feedback = ctx.prompts.render("plot_feedback", attempt=a, reason=reason,
                                          details=details, max_attempts=cfg.max_attempts)
        if not ok:
            return PlotOutcome(False, [], attempts,
                               f"plot.py failed after {cfg.max_attempts} attempt(s): {reason}")
    figures = figures_in(ws.path)
    if "plot_notes" not in ws.tags():
        _restart_point(ws, "plot", "plot notes")
        _progress(ctx, idea_id, "plot", "describing the figures in notes.txt")
        prompt = ctx.prompts.render("plot_notes", figures="\n".join(f"- {f}" for f in figures))
        await run_tool_loop(llm, system=system, messages=[Message(role="user", text=prompt)],
                            tools=EditTools(ws.path, ["notes.txt"]), step=f"{idea.name}/plot-notes",
                            max_turns=ctx.settings.experiment.max_tool_turns)
        ws.commit("notes: figure descriptions")
        ws.tag("plot_notes")
    return PlotOutcome(True, figures, attempts)
