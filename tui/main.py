"""``aisci-tui``: parse arguments, pick the image protocol, open the lab, run the app.

On a lab whose engine runs in another process (a detached TUI, ``aisci run``) the app
attaches to it; otherwise the engine runs in this process, and outlives the UI when the
user detaches or the terminal goes away (:mod:`aisci.tui.detach`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from aisci import __version__
from aisci.engine import demo
from aisci.engine.config import load_config, parse_override
from aisci.engine.control.attached import AttachedEngine
from aisci.engine.control.client import engine_serving
from aisci.engine.doctor import api_key_var
from aisci.engine.engine import Engine
from aisci.engine.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    AisciError,
    environment_error,
    exit_code,
    save_traceback,
    user_message,
)
from aisci.engine.lab.store import LabStore
from aisci.tui import detach
from aisci.tui.app import EXIT_REATTACH, EXIT_RESTART, AisciApp
from aisci.tui.engine_port import EnginePort
from aisci.tui.images import PROTOCOLS, choose_protocol
from aisci.tui.lab_data import read_only_reason

DEMO_BANNER = "DEMO · model is SCRIPTED (recorded answers, no API calls)"
ATTACH_WAIT_S = 3.0
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
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in args.set:
        key, value = parse_override(text)
        out[key] = value
    if args.template:
        out["general.template"] = args.template
    if args.model:
        out["models.default"] = args.model
    if args.image_protocol:
        out["tui.image_protocol"] = args.image_protocol
    return out


def lab_path(args: argparse.Namespace) -> Path:
    """The lab the arguments name (the demo's default folder with --demo)."""
    lab = args.lab or (Path.cwd() / demo.DEMO_LAB_DIR if args.demo else Path.cwd())
    return Path(lab).expanduser().resolve()


def running_engine(lab: Path) -> bool:
    """Whether another process runs ``lab``'s engine and serves its control socket. An
    engine still starting (lock taken, socket not yet served) gets a few seconds."""
    if LabStore.lock_holder(lab) is None:
        return False
    deadline = time.monotonic() + ATTACH_WAIT_S
    while True:
        if engine_serving(lab):
            return True
        if time.monotonic() >= deadline or LabStore.lock_holder(lab) is None:
            return False
        time.sleep(0.2)


def open_engine(args: argparse.Namespace, *, serving: bool | None = None,
                ) -> tuple[EnginePort, str | None]:
    """The engine for the requested lab (or the demo lab) and the demo banner: the
    engine another process runs there (attached), or a new one in this process.
    ``serving``: whether :func:`running_engine` already found one (None: look)."""
    overrides = _overrides(args)
    lab = lab_path(args)
    if running_engine(lab) if serving is None else serving:
        attached = AttachedEngine(lab)
        # the engine's settings, but this viewer's own look (theme, keys, graphics)
        attached.settings.tui = load_config(lab, overrides).settings.tui
        # a demo engine's viewers carry the same banner as the demo's own terminal
        return attached, (demo.SCRIPTED_NOTICE if demo.is_demo_lab(lab) else None)
    why = read_only_reason(lab) if (lab / "aisci.db").exists() else None
    if why is not None:  # a colleague's lab, a results share: a viewer, demo or not
        settings = load_config(lab, overrides).settings
        return Engine(lab, settings, headless=False, read_only=why), None
    if not args.demo and _wants_demo(args, overrides):
        args.demo = True
    if args.demo:
        lab = (args.lab or Path.cwd() / demo.DEMO_LAB_DIR).expanduser().resolve()
        if not overrides:
            return demo.make_demo_engine(lab, headless=False), demo.SCRIPTED_NOTICE
        cfg = demo.prepare_demo_lab(lab, overrides=overrides)
        engine = Engine(lab, cfg.settings, headless=False,
                        provider_factory=demo.demo_provider_factory(cfg.settings),
                        options=demo.demo_options(cfg.settings, headless=False))
        engine.ensure_ideas(cfg.settings.ideation.num_ideas)
        return engine, demo.SCRIPTED_NOTICE
    settings = load_config(lab, overrides).settings
    # a lab another process holds without serving it (or one that turns out unwritable)
    # opens as a viewer
    return Engine.open(lab, settings, headless=False), None


def _wants_demo(args: argparse.Namespace, overrides: dict[str, Any]) -> bool:
    """Without --demo, the demo still runs when the lab is a demo lab, or when the lab is
    new and the configured model's API key is not set (so a first run on a machine
    without keys shows the whole pipeline instead of failing on the first LLM call)."""
    lab = (args.lab or Path.cwd()).expanduser().resolve()
    if demo.is_demo_lab(lab):
        return True
    if (lab / "aisci.db").exists():
        return False
    settings = load_config(lab, overrides).settings
    provider = settings.models.default.split(":", 1)[0]
    if provider == "scripted":
        return False
    var = api_key_var(settings, provider)
    if var is None or os.environ.get(var):
        return False
    print(f"aisci-tui: {var} is not set: starting the offline demo (scripted model) in {lab}",
          file=sys.stderr)
    return True


def make_app(engine: EnginePort, note: str | None) -> AisciApp:
    # the terminal's graphics are probed after the first frame (AisciApp.on_mount)
    images = choose_protocol(engine.settings.tui.image_protocol, defer=True)
    app = AisciApp(engine, images=images, demo_note=DEMO_BANNER if note else None,
                   start_notice=note)
    return app


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
    except AisciError as exc:
        print(f"aisci-tui: {user_message(exc)}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # one line here, the traceback in a file
        known = environment_error(exc, lab=_lab_or_none(args), then="start aisci-tui again")
        if known is not None:
            print(f"aisci-tui: {user_message(known)}", file=sys.stderr)
            return exit_code(known)
        command = " ".join(sys.argv[1:] if argv is None else argv)
        where = save_traceback(exc, f"aisci {__version__}: aisci-tui {command}")
        print(f"aisci-tui: internal error: {user_message(exc)} ({where})", file=sys.stderr)
        return EXIT_FAILED


def _lab_or_none(args: argparse.Namespace) -> Path | None:
    try:
        return lab_path(args)
    except (OSError, RuntimeError):
        return None


def _main(args: argparse.Namespace) -> int:
    for _ in range(MAX_RELAUNCHES):
        try:
            serving = running_engine(lab_path(args))
            if not serving and _may_detach():
                code = detach.supervise()  # this process waits; the child runs on
                if code is not None:
                    return code
            engine, note = open_engine(args, serving=serving)
        except AisciError as exc:  # config, lab in use, no usable lab, demo folder taken
            print(f"aisci-tui: {user_message(exc)}", file=sys.stderr)
            return exit_code(exc)
        except ValueError as exc:  # a setting the engine rejects
            print(f"aisci-tui: {exc}", file=sys.stderr)
            return EXIT_USAGE
        result: str | None
        detach.watch_terminal()  # after the fork: threads do not survive it
        try:
            if isinstance(engine, Engine) and engine.read_only is None:
                result = detach.run_in_process(engine, partial(make_app, note=note))
            else:
                app = make_app(engine, note)
                result = app.run(mouse=True)
                if app.return_code not in (None, 0):
                    return EXIT_FAILED
        except AisciError as exc:  # the engine did not start (its socket, its lab)
            print(f"aisci-tui: {user_message(exc)}", file=sys.stderr)
            return exit_code(exc)
        if result not in (EXIT_REATTACH, EXIT_RESTART):
            return 0
        args.demo = False  # the lab is known now: attach to it, or start its engine here
        args.lab = engine.lab
    return 0


def _may_detach() -> bool:
    """A terminal session: the UI may detach and leave the engine in the background."""
    return sys.stdin.isatty() and sys.stdout.isatty()


if __name__ == "__main__":
    sys.exit(main())
