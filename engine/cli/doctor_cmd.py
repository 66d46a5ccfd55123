"""``aisci doctor``: one line per preflight check; non-zero exit if something needed is missing."""

from __future__ import annotations

import argparse

from aisci.engine.cli.common import add_lab_argument, config_from_args, lab_dir
from aisci.engine.doctor import run_checks
from aisci.engine.errors import EXIT_FAILED

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check what this machine offers the pipeline")
    add_lab_argument(p)
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    checks = run_checks(cfg.settings, lab_dir(args))
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"[{_MARK[c.status]}] {c.name:<{width}}  {c.detail}")
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        print(f"missing for the configured pipeline: {', '.join(failed)}")
        return EXIT_FAILED
    return 0
