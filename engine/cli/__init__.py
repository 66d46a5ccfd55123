"""The headless ``aisci`` command. Each command group lives in its own module with a
``register(subparsers)`` function; this module wires them together and owns the exit
codes and the one-line error format."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aisci import __version__
from aisci.engine.config import ConfigError

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran and something it did failed (a stage, a check)."""
EXIT_USAGE = 2
"""Bad input: arguments, configuration, template, file."""
EXIT_BUDGET = 3
"""Stopped cleanly because a budget was reached."""
EXIT_LAB_IN_USE = 4
EXIT_INTERRUPTED = 130

# Command modules under aisci.engine.cli, in help order.
COMMAND_MODULES = [
    "config_cmd",
    "doctor_cmd",
    "ideas_cmd",
    "review_cmd",
    "run_cmd",
    "template_cmd",
]


class CommandError(Exception):
    """A user-facing failure: printed as one line, then the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def add_lab_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab", default=".", help="lab directory (default: current directory)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set experiment.max_runs=3 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aisci",
        description="aisci: run the AI Scientist research loop headless "
                    "(ideas, novelty, experiments, plots, paper, review).",
    )
    parser.add_argument("--version", action="version", version=f"aisci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        mod = importlib.import_module(f"aisci.engine.cli.{name}")
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"aisci: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"aisci: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  see: {exc.hint}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("aisci: interrupted; state is saved, `aisci resume` continues", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
