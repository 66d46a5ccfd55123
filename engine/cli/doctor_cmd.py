"""``aisci doctor``: one line per preflight check; non-zero exit if something needed is
missing. ``aisci setup``: install the system packages the pipeline uses (TeX Live,
latexmk, chktex, bubblewrap) where this process may (root or passwordless sudo, apt);
it never fails the command it is chained with: what it cannot install, it names."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import platformdirs
from aisci.engine.cli.common import add_lab_argument, config_from_args, lab_dir
from aisci.engine.doctor import plan_setup, run_checks, run_setup
from aisci.engine.errors import EXIT_FAILED

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check what this machine offers the pipeline")
    add_lab_argument(p)
    p.set_defaults(func=_doctor)
    s = sub.add_parser("setup", help="install the system packages the pipeline uses "
                                     "(git, TeX Live, latexmk, chktex, bubblewrap) where possible",
                       description="Install missing system packages with apt-get as root or "
                                   "with passwordless sudo; otherwise print the command to "
                                   "run. Exits 0 either way: without TeX the paper stays "
                                   "LaTeX and is reviewed as text.")
    s.set_defaults(func=_setup)


def _setup(_args: argparse.Namespace) -> int:
    log = Path(platformdirs.user_log_dir("aisci", appauthor=False)) / \
        f"setup-{time.strftime('%Y%m%d-%H%M%S')}.log"
    run_setup(plan_setup(), log, echo=lambda line: print(f"aisci setup: {line}", flush=True))
    return 0


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
