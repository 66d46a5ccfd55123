"""The plot stage: the model edits plot.py, the engine runs it (bounded attempts) until
it writes PNG figures, then the model describes every figure in notes.txt. Resumable
through the tags ``plot`` and ``plot_notes`` of the idea's repository."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.lab import safe_files
from aisci.engine.lab.workspace import IdeaWorkspace
from aisci.engine.llm.base import Message
from aisci.engine.stages import runtime as rt
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome
from aisci.engine.stages.runtime import DONE_TAG, ExperimentError

_FIGURE_SKIP = ("run_", "latex", ".git", "logs")


@dataclass(kw_only=True)
class PlotOutcome(StageOutcome):
    figures: list[str] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        self.summary = self.summary or self.reason or f"{len(self.figures)} figure(s)"


def figures_in(idea_dir: Path) -> list[str]:
    """PNG figures plot.py wrote (outside run folders, logs and the paper): regular files
    only, found without following symlinks (bounded walk)."""
    out = []
    for e in safe_files.walk(idea_dir, prune=lambda e: e.path.startswith(_FIGURE_SKIP)):
        if e.kind == "file" and e.name.endswith(".png") \
                and not e.path.split("/")[0].startswith(_FIGURE_SKIP):
            out.append(e.path)
    return sorted(out, key=lambda r: r.split("/"))[:200]


def _run_labels(ws: IdeaWorkspace, plan: dict[int, str]) -> str:
    lines = ["run_0: baseline (the unmodified template)"]
    lines += [f"run_{j}: {plan.get(j, 'unplanned')}" for j in ws.finished_runs()]
    return "\n".join(lines)


async def run_plots(ctx: StageContext, idea_id: int) -> PlotOutcome:
    """The plot stage: edit plot.py, run it (bounded attempts), describe the figures."""
    cfg = ctx.settings.plot
    idea = ctx.idea(idea_id)
    ws = IdeaWorkspace.open(ctx.idea_dir(idea))
    rt.mark_interrupted(ctx, idea_id, ("plot",))
    if not ws.finished_runs():
        raise ExperimentError(f"{ws.path.name}: no finished experiment run to plot")
    plan = rt.plan_of(ws, ctx.settings.experiment.max_runs)
    llm = ctx.stage_llm("plot", idea_id)
    system = rt.system_prompt(ctx, "plot")
    attempts = 0
    if "plot" not in ws.tags():
        start = DONE_TAG if DONE_TAG in ws.tags() else f"run_{ws.finished_runs()[-1]}"
        rt.restart_point(ws, start, "plot")
        feedback, ok, reason = "", False, ""
        for a in range(1, cfg.max_attempts + 1):
            attempts = a
            rt.progress(ctx, idea_id, "plot", f"plot attempt {a}: editing plot.py")
            prompt = ctx.prompts.render("plot_task", title=idea.data.get("Title", idea.name),
                                        runs=_run_labels(ws, plan), feedback=feedback)
            await run_tool_loop(llm, system=system, messages=[Message(role="user", text=prompt)],
                                tools=EditTools.for_stage(ws.path, "plot"),
                                step=f"{idea.name}/plot/attempt-{a}", max_turns=
                                ctx.settings.experiment.max_tool_turns)
            for old in figures_in(ws.path):
                safe_files.remove(ws.path, old)
            ws.commit(f"plot: attempt {a}")
            rt.progress(ctx, idea_id, "plot", f"plot attempt {a}: running plot.py")
            result = await rt.run_process(
                ctx, argv=[sys.executable, "plot.py"], cwd=ws.path, log=ws.path / "logs" / "plot.log",
                limit_s=cfg.timeout_s, kind="plot", run="plot", attempt=a, idea_id=idea_id,
                env=rt.run_env(rt.template_of(ctx, idea), ctx.settings,
                               ctx.settings.general.smoke),
                gpu="")
            rt.check_interrupted(result, "plot.py")
            figures = figures_in(ws.path)  # the old ones were removed above
            if result.status == "ok" and figures:
                sha = ws.commit(f"plot: {len(figures)} figure(s)", amend=True)
                ws.tag("plot")
                rt.update_row(ctx, result.row_id, commit_sha=sha,
                            metrics={"figures": figures})
                ok = True
                break
            if result.status == "ok":
                reason, details = "exit code 0 but plot.py wrote no PNG figure", \
                    "plot.py must save its figures as PNG files in the project folder."
            else:
                reason, details = rt.describe_failure(result, cfg.timeout_s,
                                                    ctx.settings.experiment.stderr_tail_chars)
            sha = ws.commit(f"plot attempt {a} (failed: {rt.one_line(reason, 200)})", amend=True)
            rt.update_row(ctx, result.row_id, reason=reason, commit_sha=sha,
                        **({"status": "failed"} if result.status == "ok" else {}))
            rt.progress(ctx, idea_id, "plot", f"plot attempt {a} failed: {reason}")
            feedback = ctx.prompts.render("plot_feedback", attempt=a, reason=reason,
                                          details=details, max_attempts=cfg.max_attempts)
        if not ok:
            return PlotOutcome(ok=False, attempts=attempts, reason=(
                f"plot.py failed after {cfg.max_attempts} attempt(s): {reason}"))
    figures = figures_in(ws.path)
    if "plot_notes" not in ws.tags():
        rt.restart_point(ws, "plot", "plot notes")
        rt.progress(ctx, idea_id, "plot", "describing the figures in notes.txt")
        prompt = ctx.prompts.render("plot_notes", figures="\n".join(f"- {f}" for f in figures))
        await run_tool_loop(llm, system=system, messages=[Message(role="user", text=prompt)],
                            tools=EditTools(ws.path, ["notes.txt"]), step=f"{idea.name}/plot-notes",
                            max_turns=ctx.settings.experiment.max_tool_turns)
        ws.commit("notes: figure descriptions")
        ws.tag("plot_notes")
    return PlotOutcome(ok=True, figures=figures, attempts=attempts)
