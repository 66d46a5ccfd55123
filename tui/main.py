"""``aisci-tui``: parse arguments, draw the app at once, open the lab behind it.

The app's first frame comes before the engine is even imported (:mod:`aisci.tui.app`):
in a terminal the lab is opened on the app's opener thread (:mod:`aisci.tui.launch`).
On a lab whose engine runs in another process (a detached TUI, ``aisci run``) the app
attaches to it; otherwise the engine runs in this process, and outlives the UI when the
user detaches or the terminal goes away (:mod:`aisci.tui.detach`). Without a terminal
(a pipe, a test) the lab is opened first, so an error is said before any UI.

This module stays light (no engine import at its top) for the same first frame."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from aisci import __version__
from aisci.engine.errors import EXIT_FAILED, EXIT_INTERRUPTED
from aisci.engine.lab import layout
from aisci.tui import detach
from aisci.tui.app import (
    EXIT_OPEN_FAILED,
    EXIT_REATTACH,
    EXIT_RESTART,
    AisciApp,
    Opened,
    failure_line,
)
from aisci.tui.images import PROTOCOLS, choose_protocol

MAX_RELAUNCHES = 20
"""Attach again / restart the engine at most this often in one invocation."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aisci-tui", description="Terminal workbench for the AI Scientist research loop.")
    p.add_argument("--lab", type=Path, default=None,
                   help="lab directory (default: the current directory)")
    p.add_argument("--template", default=None, help="research template (e.g. grokking)")
    p.add_argument("--model", default=None,
                   help="default model as provider:model (e.g. anthropic:claude-sonnet-5-5)")
    p.add_argument("--demo", action="store_true",
                   help="run the offline demo lab with a scripted model")
    p.add_argument("--image-protocol", choices=PROTOCOLS, default=None,
                   help="terminal graphics (default: tui.image_protocol, auto-detected)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set budget.lab_usd=5")
    p.set_defaults(demo_reason=None)  # set when a new lab without an API key runs the demo
    return p


def lab_path(args: argparse.Namespace) -> Path:
    """The lab the arguments name (the demo's default folder with --demo)."""
    lab = args.lab or (Path.cwd() / layout.DEMO_LAB_DIR if args.demo else Path.cwd())
    return Path(lab).expanduser().resolve()


def main(argv: list[str] | None = None) -> int:
    """Run ``aisci-tui``. No traceback reaches the user: an error aisci raises on purpose
    and one the machine causes (a full disk, a damaged lab database) are one line; a bug
    is one line naming the file that holds its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("aisci-tui: interrupted; state is saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # one line here (a bug's traceback in a file)
        command = " ".join(sys.argv[1:] if argv is None else argv)
        message, code = failure_line(exc, lab=_lab_or_none(args),
                                     context=f"aisci {__version__}: aisci-tui {command}")
        print(f"aisci-tui: {message}", file=sys.stderr)
        return code


def _lab_or_none(args: argparse.Namespace) -> Path | None:
    try:
        return lab_path(args)
    except (OSError, RuntimeError):
        return None


def _opener(args: argparse.Namespace, held: detach.InProcess) -> Opened:
    # deferred: heavy (the engine and every pane, about 1 s): in a terminal this runs on
    # the app's opener thread, after the first frame
    from aisci.tui import launch

    return launch.open_lab(args, held)


def _main(args: argparse.Namespace) -> int:
    terminal = _may_detach()
    for _ in range(MAX_RELAUNCHES):
        if terminal:
            code = detach.supervise()  # this process waits; the child runs on
            if code is not None:
                return code
            detach.watch_terminal()  # after the fork: threads do not survive it
        held = detach.InProcess()
        # the terminal's graphics are probed after the first frame (AisciApp.on_mount);
        # the lab's own tui.image_protocol applies once it is open
        images = choose_protocol(args.image_protocol or "auto", defer=True)
        if terminal:
            app = AisciApp(opener=partial(_opener, args, held), lab=lab_path(args),
                           images=images)
        else:  # no first frame to show: open the lab first, say any error before a UI
            engine, note = _opener(args, held)
            app = AisciApp(engine, images=images, start_notice=note)
        result = detach.run(app, held)
        if result == EXIT_OPEN_FAILED:
            print(f"aisci-tui: {app.open_error}", file=sys.stderr)
            return app.open_error_code
        if app.return_code not in (None, 0):
            return EXIT_FAILED
        if result not in (EXIT_REATTACH, EXIT_RESTART):
            return 0
        args.demo = False  # the lab is known now: attach to it, or start its engine here
        args.lab = app.workbench.lab if app.workbench is not None else lab_path(args)
    return 0


def _may_detach() -> bool:
    """A terminal session: the UI may detach and leave the engine in the background."""
    return sys.stdin.isatty() and sys.stdout.isatty()


if __name__ == "__main__":
    sys.exit(main())
