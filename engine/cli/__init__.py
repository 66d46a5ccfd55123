"""The headless ``aisci`` command. Each command group lives in its own module with a
``register(subparsers)`` function; this module wires them together and reports errors
through the engine's error root (engine/errors.py): one line, and the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aisci import __version__
from aisci.engine.cli import (
    check_cmd,
    config_cmd,
    control_cmd,
    doctor_cmd,
    ideas_cmd,
    review_cmd,
    run_cmd,
    template_cmd,
)
from aisci.engine.cli.common import lab_dir
from aisci.engine.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AisciError,
    environment_error,
    exit_code,
    internal_error_line,
    user_message,
)

# The command modules, in help order.
COMMAND_MODULES = (check_cmd, config_cmd, doctor_cmd, ideas_cmd, review_cmd, run_cmd,
                   control_cmd, template_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aisci",
        description="aisci: run the AI Scientist research loop headless "
                    "(ideas, novelty, experiments, plots, paper, review).",
    )
    parser.add_argument("--version", action="version", version=f"aisci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
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
    except AisciError as exc:
        return _report(exc)
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("aisci: interrupted; state is saved, `aisci resume` continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line here, the traceback in a file
        # ... unless the machine caused it: a full disk, a damaged lab database
        known = environment_error(exc, lab=lab_dir(args) if hasattr(args, "lab") else None)
        if known is not None:
            return _report(known)
        command = " ".join(sys.argv[1:] if argv is None else argv)
        line = internal_error_line(exc, f"aisci {__version__}: aisci {command}")
        print(f"aisci: {line}", file=sys.stderr)
        return EXIT_FAILED


def _report(exc: AisciError) -> int:
    print(f"aisci: {user_message(exc)}", file=sys.stderr)
    if exc.hint:
        print(f"  see: {exc.hint}", file=sys.stderr)
    return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
