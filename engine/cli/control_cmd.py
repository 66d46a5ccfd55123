"""Driving the engine that runs a lab, from any shell: ``aisci kill / extend / pause /
resume-run`` act on one of its running processes, ``aisci stop`` asks it to stop cleanly.
They go through the lab's control socket (the engine may be a detached ``aisci-tui`` or
an ``aisci run`` in another terminal). Exit codes: 0 done, 1 the run is not running or
no engine runs the lab, 2 bad arguments."""

from __future__ import annotations

import argparse

from aisci.engine.cli.common import add_lab_argument, find_idea_read_only, lab_dir
from aisci.engine.control.client import ControlClient
from aisci.engine.errors import EXIT_FAILED, UsageError

LAB_RUN = "lab"
"""The IDEA argument of a lab-level run (a template's baseline)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, helptext in (("kill", "kill a running experiment and its whole process tree"),
                           ("pause", "pause a running experiment (SIGSTOP to its tree)"),
                           ("resume-run", "resume a paused experiment")):
        p = sub.add_parser(name, help=helptext)
        add_lab_argument(p)
        _run_arguments(p)
        p.set_defaults(func=_run_command, action=name)
    ext = sub.add_parser("extend", help="give a running experiment more time")
    add_lab_argument(ext)
    _run_arguments(ext)
    ext.add_argument("minutes", type=float, help="minutes to add to its time limit")
    ext.set_defaults(func=_extend)
    stop = sub.add_parser("stop", help="ask the engine running the lab to stop cleanly "
                                       "(runs are stopped and resume from their last step)")
    add_lab_argument(stop)
    stop.set_defaults(func=_stop)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("idea", help=f"idea id or name ({LAB_RUN!r} for a lab-level run such as "
                                "the baseline)")
    p.add_argument("run", help="the run: run_1 … run_5, plot, baseline (see `aisci status`)")


def _idea_id(args: argparse.Namespace) -> int | None:
    if args.idea == LAB_RUN:
        return None
    return find_idea_read_only(args).id


def _where(idea_id: int | None, run: str) -> str:
    return f"{run} of idea {idea_id}" if idea_id is not None else f"lab run {run}"


def _run_command(args: argparse.Namespace) -> int:
    idea_id = _idea_id(args)
    method = {"kill": "kill_run", "pause": "pause_run", "resume-run": "resume_run"}[args.action]
    with ControlClient(lab_dir(args)) as engine:
        done = engine.call(method, idea_id, args.run)
    what = {"kill": "killed", "pause": "paused", "resume-run": "resumed"}[args.action]
    if not done:
        print(f"{_where(idea_id, args.run)}: not running; nothing {what}")
        return EXIT_FAILED
    print(f"{_where(idea_id, args.run)}: {what}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    if not 0 < args.minutes <= 7 * 24 * 60:
        raise UsageError(f"minutes {args.minutes:g}: expected more than 0 and at most a week")
    idea_id = _idea_id(args)
    with ControlClient(lab_dir(args)) as engine:
        limit = float(engine.call("extend_run", idea_id, args.run, args.minutes * 60))
    print(f"{_where(idea_id, args.run)}: time limit now {limit / 60:.1f} min")
    return 0


def _stop(args: argparse.Namespace) -> int:
    lab = lab_dir(args)
    with ControlClient(lab) as engine:
        engine.call_op("stop")
        pid = engine.info.get("engine_pid") if isinstance(engine.info, dict) else None
    print(f"engine {pid or ''} of {lab}: stopping (runs are stopped and resume from their "
          "last finished step)".replace("engine  ", "engine "))
    return 0
