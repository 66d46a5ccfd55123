"""A template's baseline run_0 (produced once per lab through the executor, with the
template's data preparation) and the idea workspace that starts from it."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

from aisci.engine import events as ev
from aisci.engine.lab import layout, safe_files
from aisci.engine.lab.templates import TemplateInfo
from aisci.engine.lab.workspace import IdeaWorkspace, has_workspace, read_final_info
from aisci.engine.run.environment import write_run_env
from aisci.engine.run.executor import RunSpec
from aisci.engine.stages import runtime as rt
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.runtime import ExperimentError

PREPARE_LIMIT_S = 3600.0

_baseline_locks: dict[Path, asyncio.Lock] = {}


async def ensure_baseline(ctx: StageContext, template: TemplateInfo, smoke: bool) -> Path:
    """The template's baseline run_0 (``layout.baseline_dir``), produced through the
    executor (kind ``baseline``) the first time and reused by every later idea."""
    run0 = layout.baseline_dir(ctx.lab, template.name, smoke,
                               rt.size_tag(template, ctx.settings, smoke))
    lock = _baseline_locks.setdefault(run0, asyncio.Lock())
    async with lock:
        if safe_files.is_file(run0.parent, f"{run0.name}/final_info.json"):
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
        env = rt.run_env(template, ctx.settings, smoke)
        rt.progress(ctx, None, "experiment", f"producing the {template.name} baseline (run_0)")
        run0.mkdir()
        if template.prepare_command:
            await _prepare_data(ctx, template, root, smoke)
        async with rt.stage_slot(ctx, None) as slot:
            result = await rt.run_process(
                ctx, argv=[sys.executable, "experiment.py", f"--out_dir={run0.name}"],
                cwd=root, log=log, limit_s=ctx.settings.experiment.run_timeout_s, kind="baseline",
                run="baseline", attempt=1, idea_id=None, env=env,
                gpu=slot.cuda_visible_devices)
            cvd = slot.cuda_visible_devices
        rt.check_interrupted(result, f"the {template.name} baseline")
        if result.status != "ok":
            reason, _ = rt.describe_failure(result, ctx.settings.experiment.run_timeout_s, 300)
            raise ExperimentError(f"baseline of template {template.name} failed ({reason}); "
                                  f"see {log}")
        try:
            info = read_final_info(run0)
        except ValueError as exc:
            raise ExperimentError(f"baseline of template {template.name}: {exc}") from None
        try:
            write_run_env(run0, cvd, info)
        except OSError as exc:  # incl. safe_files.UnsafeFile: a symlinked run folder
            raise ExperimentError(f"baseline of template {template.name}: {exc}") from None
        return run0


async def _prepare_data(ctx: StageContext, template: TemplateInfo, folder: Path,
                        smoke: bool) -> None:
    """The template's data preparation, in a fresh copy of the template (the pristine
    code, so it may use the network to download datasets). A failure is reported, not
    fatal: the experiment says itself what data it misses."""
    argv = [sys.executable if a in ("python", "python3") else a
            for a in template.prepare_command or []]
    rt.progress(ctx, None, "experiment", f"preparing the data of template {template.name}")
    spec = RunSpec(argv=argv, cwd=folder, log_path=folder / "logs" / "prepare.log",
                   limit_s=PREPARE_LIMIT_S, kind="prepare", run="prepare", idea_id=None,
                   writable=[folder], network=True,
                   # In smoke mode templates skip their downloads (tiny data suffices).
                   env=rt.smoke_env(template, smoke))
    res = await rt.executor_of(ctx).run(spec)
    rt.check_interrupted(res, f"data preparation of {template.name}")
    if res.status != "ok":
        reason, _ = rt.describe_failure(res, PREPARE_LIMIT_S, 300)
        ctx.publish(ev.Notice(level="warning", message=(
            f"template {template.name}: data preparation failed ({reason}); see "
            f"{spec.log_path}")))


_PREPARED_SKIP = ("run_", "logs", "__pycache__", ".git")


def _copy_prepared(src_root: Path, dst_root: Path) -> int:
    """Copy files the prepare step made in the baseline folder (absent from the idea's
    copy of the template) into the idea folder; hard links when possible. Neither side
    is followed through a symlink (safe_files); the walk is bounded."""
    n = 0
    for e in safe_files.walk(src_root, prune=lambda e: e.path.startswith(_PREPARED_SKIP)):
        if e.kind != "file" or e.path.startswith(_PREPARED_SKIP) \
                or safe_files.lexists(dst_root, e.path):
            continue
        parent = e.path.rpartition("/")[0]
        try:
            safe_files.make_dirs(dst_root, parent or ".")
        except OSError:  # a planted symlink or file where a folder belongs: not copied
            continue
        try:
            safe_files.link(src_root, e.path, dst_root, e.path)
        except OSError:
            safe_files.copy_file(src_root, e.path, dst_root, e.path, links_ok=True)
        n += 1
    return n


async def prepare_workspace(ctx: StageContext,
                            idea_id: int) -> tuple[IdeaWorkspace, TemplateInfo]:
    """The idea's workspace with its baseline (and prepared data), created on first use
    (idempotent)."""
    idea = ctx.idea(idea_id)
    template = rt.template_of(ctx, idea)
    smoke = ctx.settings.general.smoke
    path = ctx.idea_dir(idea)
    if has_workspace(path):
        ws = IdeaWorkspace.open(path)
        if "base" in ws.tags() and safe_files.is_file(path, "run_0/final_info.json"):
            return ws, template
    run0 = await ensure_baseline(ctx, template, smoke)
    ws = IdeaWorkspace.create(ctx, idea, template, smoke, baseline=run0)
    ws.add_baseline(run0, idea, template)
    if template.prepare_command and _copy_prepared(run0.parent, ws.path):
        ws.commit("prepare: data made by the template's prepare step")
        ws.tag("base", force=True)
    return ws, template
