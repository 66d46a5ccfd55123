"""``aisci template check PATH`` and ``aisci baseline --template NAME``.

``template check`` validates a template folder against the template contract (one line
per problem with a fix hint; exit 1 when there are problems). ``baseline`` produces a
template's run_0 through the same executor and baseline code the pipeline uses, and
stores it where new ideas copy it from (``<lab>/baselines/<name>[-smoke][-<size>]/run_0``);
``--steps/--seeds/--eval`` choose a work size other than the template's default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from aisci.engine.cli.common import (
    add_lab_argument,
    config_from_args,
    lab_dir,
    open_store,
    show_help,
)
from aisci.engine.config import WORK_SIZE_KEYS, WorkSizeSettings
from aisci.engine.errors import EXIT_FAILED
from aisci.engine.events import EventBus, Notice, RunOutput, StageProgress
from aisci.engine.lab.layout import baseline_dir
from aisci.engine.lab.template_check import check_template
from aisci.engine.lab.templates import (
    TemplateError,
    available_templates,
    find_template,
    work_size,
    work_size_tag,
)
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.run.executor import Executor
from aisci.engine.run.scheduler import Scheduler
from aisci.engine.stages.baseline import ensure_baseline
from aisci.engine.stages.context import StageContext


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("template", help="work with research templates")
    tsub = p.add_subparsers(dest="template_command", metavar="ACTION")
    c = tsub.add_parser("check", help="validate a template folder against the contract")
    c.add_argument("path", help="template folder (or the name of a bundled template)")
    c.add_argument("--no-smoke", action="store_true",
                   help="skip the smoke run and the plot (static checks only)")
    c.add_argument("--no-latex", action="store_true", help="skip compiling latex/template.tex")
    c.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="time limit of the smoke run in seconds (default 300)")
    c.add_argument("--keep", metavar="DIR", default=None,
                   help="run the smoke copy in DIR and keep it (default: a temporary folder)")
    c.set_defaults(func=_check)
    ls = tsub.add_parser("list", help="list the templates available to a lab")
    add_lab_argument(ls)
    ls.set_defaults(func=_list)
    p.set_defaults(func=show_help(p))

    b = sub.add_parser("baseline", help="run a template's baseline (run_0) for this lab")
    b.add_argument("--template", required=True, help="template name or folder")
    b.add_argument("--smoke", action="store_true", help="use the template's smoke setting")
    b.add_argument("--out", metavar="DIR", default=None,
                   help="also copy the baseline folder (with run_0/) to DIR")
    b.add_argument("--force", action="store_true", help="run again even if a baseline exists")
    for key, what in (("steps", "training steps/updates/iterations"),
                      ("seeds", "seeds per dataset"),
                      ("eval", "evaluation size (the template's unit)")):
        b.add_argument(f"--{key}", type=_positive_int, default=None, metavar="N",
                       help=f"work size: {what} (default: template.toml [work_size], "
                            f"aisci.toml [work_size.<template>], AISCI_WORK_{key.upper()})")
    add_lab_argument(b)
    b.set_defaults(func=_baseline)


def _resolve(path_or_name: str, lab: Path | None) -> Path:
    if Path(path_or_name).is_dir():
        return Path(path_or_name).resolve()
    return find_template(path_or_name, lab).path


def _check(args: argparse.Namespace) -> int:
    path = _resolve(args.path, None)
    steps = ["files", "prompt.json", "seed_ideas.json"]
    steps += [] if args.no_smoke else ["smoke run", "final_info.json", "plot.py"]
    steps += [] if args.no_latex else ["LaTeX"]
    print(f"checking template {path} ({', '.join(steps)}) ...", flush=True)
    t0 = time.time()
    problems = check_template(path, run_smoke=not args.no_smoke,
                              compile_latex=not args.no_latex, timeout_s=args.timeout,
                              keep_dir=Path(args.keep).resolve() if args.keep else None)
    for p in problems:
        print(f"  problem: {p}")
    took = time.time() - t0
    if problems:
        print(f"template {path.name}: {len(problems)} problem(s) ({took:.0f} s)")
        return EXIT_FAILED
    print(f"template {path.name}: ok ({took:.0f} s)")
    return 0


def _list(args: argparse.Namespace) -> int:
    lab = lab_dir(args)
    for name in available_templates(lab):
        try:
            info = find_template(name, lab)
        except TemplateError as exc:
            print(f"{name:<16} (broken: {exc})")
            continue
        print(f"{info.name:<16} {info.description or '(no template.toml)'}  [{info.path}]")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _baseline(args: argparse.Namespace) -> int:
    lab = lab_dir(args)
    template = find_template(args.template, lab)
    cfg = config_from_args(args)
    chosen = {k: getattr(args, k) for k in WORK_SIZE_KEYS if getattr(args, k) is not None}
    if chosen:
        current = cfg.settings.work_size.get(template.name) or WorkSizeSettings()
        cfg.settings.work_size[template.name] = current.model_copy(update=chosen)
    size = work_size(template, cfg.settings.work_size.get(template.name), os.environ, args.smoke)
    run0 = baseline_dir(lab, template.name, args.smoke, work_size_tag(template, size, args.smoke))
    if size:
        print(f"work size of {template.name}: "
              + ", ".join(f"{k}={v}" for k, v in sorted(size.items())))
    if args.force and run0.parent.exists():
        shutil.rmtree(run0.parent)
    if (run0 / "final_info.json").is_file():
        print(f"baseline of {template.name} already exists: {run0} (--force runs it again)")
    else:
        mode = "smoke" if args.smoke else "full"
        print(f"running the {mode} baseline of {template.name} into {run0} ...", flush=True)
        store = open_store(args)
        try:
            run0 = asyncio.run(_produce(lab, cfg.settings, store, template, args.smoke))
        finally:
            store.close()
    _print_means(run0)
    if args.out:
        dst = Path(args.out).expanduser().resolve()
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(run0.parent, dst, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        print(f"copied to {dst}")
    return 0


async def _produce(lab: Path, settings: Any, store: Any, template: Any, smoke: bool) -> Path:
    """Run the baseline through the pipeline's own code (executor, scheduler, prepare)."""
    bus = EventBus()
    bus.bind_loop()

    def echo(event: Any) -> None:  # the experiment's progress, as the TUI would show it
        if isinstance(event, RunOutput):
            for line in event.lines:
                print(f"  | {line}", flush=True)
        elif isinstance(event, StageProgress | Notice):
            print(f"  {event.message}", flush=True)

    bus.add_sink(echo)
    executor = Executor(settings, bus, store)
    ctx = StageContext(lab=lab, settings=settings, store=store, bus=bus,
                       llm=LLMClient(settings, store, bus), prompts=PromptLibrary(lab),
                       executor=executor, scheduler=Scheduler(settings))
    try:
        return await ensure_baseline(ctx, template, smoke)
    finally:
        await executor.shutdown()
        await ctx.llm.aclose()


def _print_means(run0: Path) -> None:
    try:
        data = json.loads((run0 / "final_info.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"  (cannot read {run0 / 'final_info.json'}: {exc})", file=sys.stderr)
        return
    for dataset, value in data.items():
        means = value.get("means", {}) if isinstance(value, dict) else {}
        if isinstance(means, dict):
            text = ", ".join(f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}"
                             for k, v in means.items())
        else:
            text = str(means)
        print(f"  {dataset}: {text}")
