"""``aisci run`` (a headless batch: ideas -> novelty -> approval -> experiments -> plots ->
paper -> review), ``aisci resume`` (continue the lab's last batch after a crash or a
stop) and ``aisci status`` (read-only table of ideas, stages, runs, cost, durations).

Exit codes: 0 every idea finished (or waits for approval), 1 some idea failed, 2 usage
or configuration error, 3 stopped at a budget, 4 lab in use, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aisci.engine.batch import run_batch, summary_lines
from aisci.engine.cli.common import add_lab_argument, lab_dir
from aisci.engine.cli.run_progress import ProgressDisplay
from aisci.engine.config import EffectiveConfig, Settings, load_config, parse_override
from aisci.engine.control.client import ControlClient
from aisci.engine.demo import (
    SCRIPTED_NOTICE,
    demo_options,
    demo_provider_factory,
    prepare_demo_lab,
)
from aisci.engine.errors import EXIT_LAB_IN_USE, AisciError, UsageError
from aisci.engine.lab import layout
from aisci.engine.lab.store import LabReadOnly, LabStore, NoLab
from aisci.engine.lab.templates import TemplateError, find_template
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.run.sandbox import isolation_warning
from aisci.engine.snapshot import build_snapshot

_OVERRIDES_KV = "pipeline.cli_overrides"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the whole pipeline headless (batch)",
                         description="Generate ideas, check novelty, run experiments, plot, "
                                     "write and review papers, headless.")
    add_lab_argument(run)
    run.set_defaults(lab=None)  # None: not given (--demo then uses its own folder)
    run.add_argument("--template", help="research template (default: general.template)")
    run.add_argument("--model", help="model for every stage, as provider:model "
                                     "(default: models.default)")
    run.add_argument("--num-ideas", type=int, default=None, metavar="N",
                     help="generated ideas the lab should have (default: ideation.num_ideas)")
    run.add_argument("--skip-idea-generation", action="store_true",
                     help="run the ideas already in the lab (or the template's seed ideas)")
    run.add_argument("--skip-novelty-check", action="store_true",
                     help="do not search the literature")
    run.add_argument("--gpus", help="comma-separated GPU indices, e.g. 0,1")
    run.add_argument("--parallel", type=int, default=None, metavar="K",
                     help="concurrent experiments on CPU slots")
    run.add_argument("--improvement", action="store_true",
                     help="revise each paper from its review and review it again")
    run.add_argument("--auto-approve", action="store_true",
                     help="approve ideas without a human (novel ones, by default)")
    run.add_argument("--budget", type=float, default=None, metavar="USD",
                     help="lab budget in dollars; the batch stops cleanly when reached")
    run.add_argument("--demo", action="store_true",
                     help="create (or continue) an offline demo lab: scripted model, offline "
                          "literature, grokking in smoke mode (default lab "
                          f"./{layout.DEMO_LAB_DIR})")
    run.set_defaults(func=_run)

    resume = sub.add_parser("resume", help="continue the lab's last batch where it stopped")
    add_lab_argument(resume)
    resume.set_defaults(func=_resume)

    status = sub.add_parser("status", help="ideas, stages, runs, cost and durations "
                                           "(read-only; works while a batch runs)")
    status.add_argument("--lab", default=".", help="lab directory (default: current directory)")
    status.set_defaults(func=_status)


# -- run / resume -----------------------------------------------------------------------

def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.template:
        out["general.template"] = args.template
    if args.model:
        out["models.default"] = args.model
    if args.gpus is not None:
        try:
            out["scheduler.gpus"] = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError:
            raise UsageError(f"--gpus {args.gpus!r}: expected indices like 0,1") from None
    if args.parallel is not None:
        out["scheduler.parallel"] = args.parallel
    if args.budget is not None:
        out["budget.lab_usd"] = args.budget
    if args.auto_approve:
        out["general.auto_approve"] = True
    if args.improvement:
        out["review.improve"] = True
    for text in args.overrides or []:
        key, value = parse_override(text)
        out[key] = value
    return out


def _check_template(name: str, lab: Path) -> None:
    try:
        find_template(name, lab)
    except TemplateError as exc:
        msg = str(exc)  # TemplateError messages already name the template
        raise UsageError(msg if repr(name) in msg else f"template {name!r}: {msg}") from None


def _require_writable(lab: Path) -> None:
    """A command that changes the lab stops here, in one line, on a read-only lab."""
    if lab.is_dir() and not LabStore.writable(lab):
        raise LabReadOnly(lab, "no write permission or a read-only mount")


def demo_lab(args: argparse.Namespace) -> Path:
    """The lab of ``aisci run --demo``: --lab when given (``.`` too), else layout.DEMO_LAB_DIR."""
    return Path(layout.DEMO_LAB_DIR if args.lab is None else args.lab).expanduser().resolve()


def _run(args: argparse.Namespace) -> int:
    if args.num_ideas is not None and args.num_ideas < 0:
        raise UsageError(f"--num-ideas {args.num_ideas}: expected 0 or more")
    if args.demo:
        lab = demo_lab(args)
        _require_writable(lab)
        overrides = _flag_overrides(args)
        if "general.template" in overrides:
            _check_template(str(overrides["general.template"]), lab)
        cfg = prepare_demo_lab(lab, overrides=overrides)
        options = demo_options(cfg.settings, headless=True)
        print(f"aisci demo: {SCRIPTED_NOTICE}", flush=True)
        print(f"aisci demo: lab {lab}", flush=True)
        return _execute(lab, cfg, options, cfg.settings.ideation.num_ideas, overrides,
                        provider_factory=demo_provider_factory(cfg.settings))
    lab = lab_dir(args)
    _require_writable(lab)
    overrides = _flag_overrides(args)
    cfg = load_config(lab, overrides)
    s = cfg.settings
    _check_template(s.general.template, lab)
    options = PipelineOptions(
        template=s.general.template, skip_idea_generation=args.skip_idea_generation,
        skip_novelty=args.skip_novelty_check, improvement=args.improvement,
        auto_approve=True if args.auto_approve else None,
        include_seeds=args.skip_idea_generation, prefetch_baseline=True)
    n = s.ideation.num_ideas if args.num_ideas is None else args.num_ideas
    return _execute(lab, cfg, options, n, overrides)


def _resume(args: argparse.Namespace) -> int:
    lab = lab_dir(args)
    try:
        with LabStore(lab, read_only=True) as ro:
            saved = ro.kv_get("pipeline.options")
            saved_overrides = ro.kv_get(_OVERRIDES_KV, {}) or {}
    except NoLab:
        raise UsageError(f"{lab}: no lab here (no aisci.db); start one with `aisci run`"
                         ) from None
    if not saved:
        raise UsageError(f"{lab}: no batch to resume (run `aisci run` first)")
    _require_writable(lab)
    overrides = dict(saved_overrides)
    for text in args.overrides or []:
        key, value = parse_override(text)
        overrides[key] = value
    cfg = load_config(lab, overrides)
    options = PipelineOptions.from_dict(saved)
    print(f"aisci: resuming {lab} (template {options.template})", flush=True)
    return _execute(lab, cfg, options, 0, overrides)


def _execute(lab: Path, cfg: EffectiveConfig, options: Any, num_ideas: int,
             overrides: dict[str, Any] | None = None, provider_factory: Any = None) -> int:
    holder = LabStore.lock_holder(lab) if lab.exists() else None
    if holder is not None:
        raise AisciError(f"lab {lab} is in use by pid {holder}: an engine runs it; watch and "
                         f"drive it with `aisci-tui --lab {lab}` or `aisci status`, stop it "
                         "with `aisci stop`", exit_code=EXIT_LAB_IN_USE)
    if overrides:
        _save_overrides(lab, overrides)
    started = time.monotonic()
    result = asyncio.run(run_batch(lab, cfg.settings, options, num_ideas=num_ideas,
                                   provider_factory=provider_factory,
                                   display=lambda eng: ProgressDisplay(eng)))
    print(f"aisci: batch ended after {time.monotonic() - started:.0f} s "
          f"(exit {result.exit_code})", flush=True)
    for line in summary_lines(result):
        print(line, flush=True)
    return result.exit_code


def _save_overrides(lab: Path, overrides: dict[str, Any]) -> None:
    # So that `aisci resume` continues with the same model, GPUs and budget.
    with LabStore(lab) as store:
        store.kv_set(_OVERRIDES_KV, overrides)


# -- status -----------------------------------------------------------------------------

def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def status_lines(lab: Path) -> list[str]:
    store = LabStore(lab, read_only=True)
    try:
        cfg = None
        try:
            cfg = load_config(lab)
        except Exception:  # status must work even with a broken config file
            cfg = None
        b = cfg.settings.budget if cfg else None
        snap = build_snapshot(store, budget_lab_usd=b.lab_usd if b else None,
                              budget_idea_usd=b.idea_usd if b else None)
        holder = LabStore.lock_holder(lab)
    finally:
        store.close()
    rows = [("id", "idea", "triage", "stage", "state", "runs", "cost", "time")]
    for idea in snap.ideas:
        exp = [r for r in idea.runs if r.kind == "experiment"]
        ok = {r.run for r in exp if r.status == "ok"}
        rows.append((str(idea.id), idea.name[:36], idea.status, idea.stage_label,
                     idea.state_text(50), f"{len(ok)}/{len({r.run for r in exp})}",
                     f"${idea.cost_usd:.4f}", _fmt_duration(idea.elapsed_s())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    total = f"cost ${snap.cost_usd:.4f}"
    if snap.budget_lab_usd is not None:
        total += f" of ${snap.budget_lab_usd:.2f}"
    if snap.unknown_cost_calls:
        total += f" (+{snap.unknown_cost_calls} call(s) of unknown price)"
    lines.append(total)
    running = [(f"idea {r.idea_id} {r.run}" if r.idea_id is not None else f"lab {r.run}")
               + f" (pid {r.pid})" for r in snap.running_runs]
    lines.append(f"engine: {'running, pid ' + str(holder) if holder else 'not running'}"
                 + (f"; running: {', '.join(running)}" if running else ""))
    if holder:
        lines += _live_lines(lab)
    warning = isolation_warning(cfg.settings.sandbox if cfg else Settings().sandbox)
    if warning:
        lines.append(f"warning: {warning}")
    return lines


def _live_lines(lab: Path) -> list[str]:
    """What the running engine says of its processes now (time used of the limit, CPU,
    memory), when it serves its control socket."""
    try:
        with ControlClient(lab, timeout=5.0) as engine:
            procs = engine.call_op("processes")
            viewers = engine.info.get("viewers", 0) if isinstance(engine.info, dict) else 0
    except AisciError:
        return []
    lines = [f"engine: serves {lab / 'aisci.sock'}; viewers attached: {max(0, viewers)}"]
    for p in procs if isinstance(procs, list) else []:
        if not isinstance(p, dict):
            continue
        where = f"idea {p.get('idea_id')}" if p.get("idea_id") is not None else "lab"
        lines.append(f"  {where} {p.get('run')}: {_fmt_duration(float(p.get('elapsed_s', 0)))}"
                     f" of {_fmt_duration(float(p.get('limit_s', 0)))}, cpu "
                     f"{float(p.get('cpu_percent', 0)):.0f}%, rss "
                     f"{int(p.get('rss_bytes', 0)) / 2**20:.0f} MB"
                     + (", paused" if p.get("paused") else ""))
    return lines


def _status(args: argparse.Namespace) -> int:
    for line in status_lines(lab_dir(args)):
        print(line)
    sys.stdout.flush()
    return 0
