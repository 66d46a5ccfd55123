"""The experiment stage: plan, edit, run, feed back; up to N runs.

Everything the stages need to resume lives in the idea's git repository
(:mod:`aisci.engine.lab.workspace`): tag ``plan`` (its commit message holds the plan),
``run_<i>`` for every finished run, ``experiments_done``, ``plot`` and ``plot_notes``.
A second call after a crash skips what is tagged; a run that was in progress restarts
from its beginning (files restored to the last finished run, attempts counted from 1),
and its store rows still marked ``running`` become ``interrupted``.

LLM steps (stage ``experiment`` unless noted; the tool loop appends ``/turn-<k>``):

- ``<idea>/plan``: plan the runs into notes.txt; reply ``Run <i>: <item>`` lines;
- ``<idea>/run-<i>/attempt-<a>``: make the edit for run i (a = 1..max_attempts); the
  reply ``ALL_COMPLETED`` (without code edits) ends the runs early;
- the plot stage (:mod:`aisci.engine.stages.plot`) uses stage ``plot``.

where ``<idea>`` is the idea's Name. Processes run through ``ctx.executor`` (kinds
``check`` and ``experiment``; the baseline is :mod:`aisci.engine.stages.baseline`) under a
``ctx.scheduler`` slot (:mod:`aisci.engine.stages.runtime`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import ToolLoopResult, run_tool_loop
from aisci.engine.lab import safe_files
from aisci.engine.lab.store import IdeaRow
from aisci.engine.lab.templates import TemplateInfo, check_argv
from aisci.engine.lab.workspace import (
    RESULT_PATHSPECS,
    IdeaWorkspace,
    format_results,
    read_final_info,
)
from aisci.engine.llm.base import Message
from aisci.engine.run.environment import RUN_ENV_NAME, write_run_env
from aisci.engine.run.executor import NODE_LOST
from aisci.engine.stages import causality
from aisci.engine.stages import runtime as rt
from aisci.engine.stages.baseline import prepare_workspace
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome
from aisci.engine.stages.runtime import DONE_TAG

COMPLETION_WORD = "ALL_COMPLETED"
NO_CHANGE_TURNS = 3
"""Turns of the one extra round given to a model whose edit round changed no file."""
_RERUN = re.compile(r"\b(re-?run|repeat|unchanged|same code)\b", re.IGNORECASE)


@dataclass(kw_only=True)
class ExperimentOutcome(StageOutcome):
    runs: list[int] = field(default_factory=list)
    """Finished runs (tags run_<i>)."""
    completed: bool = False
    """The model said ALL_COMPLETED or every planned run was done."""

    def __post_init__(self) -> None:
        self.summary = self.summary or self.reason or f"{len(self.runs)} run(s) finished"


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


# -- planning ------------------------------------------------------------------------------

async def _plan(ctx: StageContext, ws: IdeaWorkspace, idea: IdeaRow, template: TemplateInfo,
                system: str) -> dict[int, str]:
    cfg = ctx.settings.experiment
    baseline = read_final_info(ws.path / "run_0")
    prompt = ctx.prompts.render(
        "experiment_plan", title=idea.data.get("Title", idea.name),
        experiment=idea.data.get("Experiment", ""),
        task_description=rt.task_description(Path(template.path)) or template.description,
        baseline_results=format_results(baseline, None, template.lower_is_better,
                                        template.higher_is_better),
        max_runs=cfg.max_runs)
    rt.restart_point(ws, "base", "plan")
    rt.progress(ctx, idea.id, "experiment", "planning the runs")
    loop = await run_tool_loop(ctx.stage_llm("experiment", idea.id), system=system,
                               messages=[Message(role="user", text=prompt)],
                               tools=EditTools(ws.path, ["notes.txt"]),
                               step=f"{idea.name}/plan", max_turns=cfg.max_tool_turns)
    items = rt.parse_plan(loop.text, cfg.max_runs)
    if not items:
        items = rt.parse_plan(safe_files.read_text(ws.path, "notes.txt"), cfg.max_runs)
    body = "\n".join(f"Run {i}: {t}" for i, t in sorted(items.items())) or rt.one_line(loop.text, 500)
    ws.commit(f"plan: {len(items)} run(s)\n\n{body}\n")
    ws.tag("plan")
    return items


# -- the run loop --------------------------------------------------------------------------

def _results_so_far(ws: IdeaWorkspace, plan: dict[int, str], template: TemplateInfo) -> str:
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


async def _attempt_run(ctx: StageContext, ws: IdeaWorkspace, idea: IdeaRow,
                       template: TemplateInfo,
                       i: int, a: int, plan_item: str) -> tuple[_Attempt, int | None, str]:
    """Run the committed code of run i, attempt a: checker first (if any), then
    experiment.py. Returns the outcome, the store row id and the slot's GPUs."""
    cfg = ctx.settings.experiment
    env = rt.run_env(template, ctx.settings, ctx.settings.general.smoke)
    check = template.check_command
    async with rt.stage_slot(ctx, idea.id) as slot:
        cvd = slot.cuda_visible_devices
        if check:
            rt.progress(ctx, idea.id, "experiment", f"run {i} attempt {a}: integrity check")
            log_rel = f"logs/check_{i}.log"
            code = causality.code_digest(ws.path)  # the code the checker judges
            since = causality.log_size(ws.path, log_rel)
            res = await rt.run_process(
                ctx, argv=_check_argv(check, template, ws.path), cwd=ws.path,
                log=ws.path / log_rel, limit_s=min(cfg.run_timeout_s, 900.0),
                kind="check", run=f"run_{i}", attempt=a, idea_id=idea.id, env=env, gpu=cvd)
            rt.check_interrupted(res, f"the check of run_{i}")
            causal, verdict = causality.verdict_from_check(
                ws.path, log_rel, since=since, status=res.status, exit_code=res.exit_code,
                reason=res.reason)
            causality.record(ctx.store, idea.id, causal=causal, verdict=verdict,
                             source=log_rel, code=code)
            if res.status != "ok":
                detail = (f"Checker output: {json.dumps(verdict)}\n" if verdict else "") + \
                    (res.stderr_tail or "")[-600:]
                reason = ("the causality check failed: the model sees future tokens"
                          if res.exit_code == 1 else
                          f"the check could not run ({rt.describe_failure(res, 900, 600)[0]})")
                return _Attempt(False, reason, detail, process_status=res.status), res.row_id, cvd
        rt.progress(ctx, idea.id, "experiment", f"run {i} attempt {a}: running ({plan_item})")
        # Templates written for the reference create --out_dir themselves; not all do.
        safe_files.make_dirs(ws.path, f"run_{i}", replace=True)
        result = await rt.run_process(
            ctx, argv=[sys.executable, "experiment.py", f"--out_dir=run_{i}"], cwd=ws.path,
            log=ws.path / "logs" / f"run_{i}.log", limit_s=cfg.run_timeout_s,
            kind="experiment", run=f"run_{i}", attempt=a, idea_id=idea.id, env=env, gpu=cvd)
    rt.check_interrupted(result, f"run_{i}")
    if result.status != "ok":
        reason, details = rt.describe_failure(result, cfg.run_timeout_s, cfg.stderr_tail_chars)
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
    out = check_argv(check, Path(template.path), idea_dir)
    if not any("{project}" in p for p in check) and "--project" not in check:
        out += ["--project", str(idea_dir)]
    return out


async def run_experiments(ctx: StageContext, idea_id: int) -> ExperimentOutcome:
    """The experiment stage of one idea (resumable; see the module docstring)."""
    cfg = ctx.settings.experiment
    idea = ctx.idea(idea_id)
    ws, template = await prepare_workspace(ctx, idea_id)
    rt.mark_interrupted(ctx, idea_id, ("experiment", "check"))
    if DONE_TAG in ws.tags() and ws.finished_runs():
        return _ended(ws.finished_runs(), "")
    system = rt.system_prompt(ctx, "experiment")
    plan = rt.plan_of(ws, cfg.max_runs) if "plan" in ws.tags() else \
        await _plan(ctx, ws, idea, template, system)
    llm = ctx.stage_llm("experiment", idea_id)
    finished = ws.finished_runs()
    i = (finished[-1] + 1) if finished else 1
    feedback = ""  # the previous run's results, then the failures of this run's attempts
    while i <= cfg.max_runs:
        plan_item = plan.get(i, f"run {i}")
        base_ref = f"run_{i - 1}" if i > 1 else "plan"
        rt.restart_point(ws, base_ref, f"run_{i}")
        last_reason = ""
        rerun = False
        for a in range(1, cfg.max_attempts + 1):
            if rerun:  # the machine of the last attempt went away: the same code again
                rerun = False
                rt.progress(ctx, idea_id, "experiment",
                            f"run {i} attempt {a}: running the same code again ({last_reason})")
            else:
                rt.progress(ctx, idea_id, "experiment", f"run {i}/{cfg.max_runs} attempt {a}: editing")
                prompt = ctx.prompts.render(
                    "experiment_run", run=i, max_runs=cfg.max_runs, plan_item=plan_item,
                    plan="\n".join(f"Run {k}: {t}" for k, t in sorted(plan.items())) or "(none)",
                    results_so_far=_results_so_far(ws, plan, template), feedback=feedback)
                tools = EditTools.for_stage(ws.path, "experiment")
                loop = await run_tool_loop(llm, system=system,
                                           messages=[Message(role="user", text=prompt)],
                                           tools=tools, step=f"{idea.name}/run-{i}/attempt-{a}",
                                           max_turns=cfg.max_tool_turns)
                if COMPLETION_WORD not in loop.text and not _code_changes(ws, tools, base_ref):
                    # Nothing to run but the code of the last finished run: feed the tool
                    # errors back once; a second empty round is a failed attempt.
                    rt.progress(ctx, idea_id, "experiment",
                                f"run {i} attempt {a}: no code change; asking again")
                    loop = await run_tool_loop(
                        llm, system=system, messages=[*loop.messages, Message(
                            role="user", text=_no_change_prompt(loop, i, plan_item))],
                        tools=tools, step=f"{idea.name}/run-{i}/attempt-{a}/no-change",
                        max_turns=min(cfg.max_tool_turns, NO_CHANGE_TURNS))
                if COMPLETION_WORD not in loop.text and not _code_changes(ws, tools, base_ref) \
                        and not _rerun_planned(plan_item):
                    last_reason = f"the model made no change to the code: {_last_tool_error(loop)}"
                    rt.progress(ctx, idea_id, "experiment", f"run {i} attempt {a} failed: {last_reason}")
                    feedback = ctx.prompts.render("experiment_run_feedback", attempt=a, run=i,
                                                  reason=last_reason, details=(
                                                      "No file was changed, so nothing was run. "
                                                      "Copy old_text exactly from view_file."),
                                                  max_attempts=cfg.max_attempts)
                    continue
                if COMPLETION_WORD in loop.text and not (loop.changed - {"notes.txt"}):
                    if not ws.finished_runs():  # nothing to show: a retry starts again
                        return _ended([], f"the model ended the runs before run {i}")
                    ws.commit(f"experiments complete after {i - 1} run(s) ({COMPLETION_WORD})")
                    ws.tag(DONE_TAG)
                    rt.progress(ctx, idea_id, "experiment", f"the model ended the runs after run {i - 1}")
                    return _ended(ws.finished_runs(), f"the model ended the runs after run {i - 1}")
            # a failed attempt's partial output (kept in history), a planted symlink itself
            safe_files.remove_tree(ws.path, f"run_{i}")
            sha = ws.commit(f"run_{i}: {plan_item}")
            outcome, row_id, cvd = await _attempt_run(ctx, ws, idea, template, i, a, plan_item)
            if outcome.ok and outcome.final_info is not None:
                try:  # the file is the engine's: what the run left at its place goes
                    write_run_env(ws.path / f"run_{i}", cvd, outcome.final_info)
                except OSError as exc:  # incl. safe_files.UnsafeFile: a failed attempt
                    outcome = _Attempt(
                        False, f"exit code 0 but run_{i}/{RUN_ENV_NAME} could not be "
                        f"written ({exc})", f"The engine records the run's environment in "
                        f"<out_dir>/{RUN_ENV_NAME}; experiment.py must leave that path free.",
                        duration_s=outcome.duration_s)
            if outcome.ok:
                assert outcome.final_info is not None
                sha = ws.commit(f"run_{i}: {plan_item}", amend=True)
                ws.tag(f"run_{i}")
                metrics = {k: v["means"] for k, v in outcome.final_info.items()}
                rt.update_row(ctx, row_id, metrics=metrics, commit_sha=sha, plan=plan_item)
                rt.progress(ctx, idea_id, "experiment",
                          f"run {i} finished in {rt.fmt_s(outcome.duration_s)}")
                feedback = ctx.prompts.render(
                    "experiment_results", run=i, plan_item=plan_item,
                    duration=rt.fmt_s(outcome.duration_s), results=format_results(
                        outcome.final_info, read_final_info(ws.path / "run_0"),
                        template.lower_is_better, template.higher_is_better))
                break
            last_reason = outcome.reason
            rerun = outcome.reason.startswith(NODE_LOST)  # not the code's fault
            sha = ws.commit(f"run_{i} attempt {a} (failed: {rt.one_line(outcome.reason, 200)})",
                            amend=True)
            rt.update_row(ctx, row_id, reason=outcome.reason, commit_sha=sha, plan=plan_item,
                        **({"status": "failed"} if outcome.process_status == "ok" else {}))
            rt.progress(ctx, idea_id, "experiment", f"run {i} attempt {a} failed: {outcome.reason}")
            feedback = ctx.prompts.render("experiment_run_feedback", attempt=a, run=i,
                                          reason=outcome.reason, details=outcome.details,
                                          max_attempts=cfg.max_attempts)
        else:
            done = ws.finished_runs()
            reason = (f"run_{i} failed after {cfg.max_attempts} attempt(s): {last_reason}")
            if not done:
                return ExperimentOutcome(ok=False, runs=done, reason=reason)
            # The runs that finished are the results: the paper is written from them.
            ws.commit(f"experiments complete: {len(done)} run(s); {rt.one_line(reason, 200)}")
            ws.tag(DONE_TAG)
            return _ended(done, reason)
        i += 1
    ws.commit(f"experiments complete: {cfg.max_runs} run(s)")
    ws.tag(DONE_TAG)
    return _ended(ws.finished_runs(), "")


def _code_changes(ws: IdeaWorkspace, tools: EditTools, ref: str) -> list[str]:
    """Files the model may edit (not notes.txt) that differ from ``ref``, the code of the
    last finished run (or the plan): empty means running would repeat that code."""
    names = ws.git.diff("--name-only", "-z", "--no-ext-diff", "--no-textconv",
                        "--ignore-submodules=all", ref, "--", ":/",
                        *RESULT_PATHSPECS).split("\0")
    return sorted({n for n in [*names, *ws.untracked()]
                   if n and n != "notes.txt" and tools.writable(n)})


def _rerun_planned(plan_item: str) -> bool:
    """The plan asks to run the same code again (e.g. "repeat run 1", "re-run unchanged")."""
    return bool(_RERUN.search(plan_item))


def _last_tool_error(loop: ToolLoopResult) -> str:
    """The last error a tool returned in the loop, else what the model said instead."""
    for msg in reversed(loop.messages):
        for res in reversed(msg.tool_results):
            if res.is_error:
                return rt.one_line(res.content.removeprefix("error: "), 300)
    said = rt.one_line(loop.text, 200)
    return f"no edit tool was called (the reply was: {said!r})" if said else \
        "no edit tool was called (the reply was empty)"


def _no_change_prompt(loop: ToolLoopResult, i: int, plan_item: str) -> str:
    return (f"No file was changed, so run {i} ({plan_item}) cannot start: "
            f"{_last_tool_error(loop)}. Make the edit for run {i} now with replace_text "
            "(old_text copied exactly from view_file, writable files only) or create_file; "
            f"reply {COMPLETION_WORD} instead if no further run is needed.")


def _ended(runs: list[int], why: str) -> ExperimentOutcome:
    """The stage's end: done with the finished runs, or failed (with a reason the user can
    act on) when none finished, so the plot stage is never attempted on nothing."""
    if not runs:
        return ExperimentOutcome(ok=False, runs=[], reason=(
            "no experiment run finished" + (f" ({why})" if why else "")
            + ": nothing to plot or write about; retry the experiment stage"))
    names = ", ".join(f"run_{r}" for r in runs)
    tail = f"; {why}" if why else ""
    return ExperimentOutcome(ok=True, runs=runs, completed=True,
                             summary=f"{len(runs)} run(s) finished ({names}){tail}"[:300])
