"""Opening the lab ``aisci-tui`` was asked for: attach to the engine another process runs
there, or start one in this process (on its own thread, :class:`EngineThread`), or open
a viewer of a lab nobody may write. Loaded after the app's first frame (on its opener
thread, :mod:`aisci.tui.app`): everything the engine needs is imported here."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import time
from pathlib import Path
from typing import Any

from aisci.engine import demo
from aisci.engine.config import load_config, parse_override
from aisci.engine.control.attached import AttachedEngine
from aisci.engine.control.client import engine_serving
from aisci.engine.doctor import api_key_var
from aisci.engine.engine import Engine
from aisci.engine.lab import layout
from aisci.engine.lab.store import LabStore
from aisci.tui.detach import InProcess
from aisci.tui.engine_port import EnginePort
from aisci.tui.engine_thread import EngineThread
from aisci.tui.lab_data import read_only_reason
from aisci.tui.main import lab_path

ATTACH_WAIT_S = 3.0


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
        lab = (args.lab or Path.cwd() / layout.DEMO_LAB_DIR).expanduser().resolve()
        if not overrides:
            return demo.make_demo_engine(lab, headless=False), _demo_notice(args)
        cfg = demo.prepare_demo_lab(lab, overrides=overrides)
        engine = Engine(lab, cfg.settings, headless=False,
                        provider_factory=demo.demo_provider_factory(cfg.settings),
                        options=demo.demo_options(cfg.settings, headless=False))
        engine.ensure_ideas(cfg.settings.ideation.num_ideas)
        return engine, _demo_notice(args)
    settings = load_config(lab, overrides).settings
    # a lab another process holds without serving it (or one that turns out unwritable)
    # opens as a viewer
    return Engine.open(lab, settings, headless=False), None


def _demo_notice(args: argparse.Namespace) -> str:
    """The demo's start notice, with why it runs when nobody asked for it."""
    why = args.demo_reason
    return f"{why} {demo.SCRIPTED_NOTICE}" if why else demo.SCRIPTED_NOTICE


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
    # said in the app (the start notice), not printed: the UI may already be drawn
    args.demo_reason = f"{var} is not set, so this new lab runs the offline demo."
    return True


def open_lab(args: argparse.Namespace, held: InProcess) -> tuple[EnginePort, str | None]:
    """The engine port for the app and the demo's start notice (None for a real lab). A
    writable lab's engine starts here, on its own thread; ``held`` keeps it for the
    process (:mod:`aisci.tui.detach`), unless the app closed meanwhile: then it stops."""
    engine, note = open_engine(args)
    if not isinstance(engine, Engine) or engine.read_only is not None:
        return engine, note
    runner = EngineThread(engine)
    runner.launch()  # the engine's start errors reach the app (one line)
    # `kill -USR1 <pid>` writes every thread's stack to engine.log (a stuck process)
    stacks = open(engine.lab / layout.ENGINE_LOG, "a", encoding="utf-8")  # noqa: SIM115
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
    if not held.keep(runner):  # the user quit while the lab was opening
        runner.request_stop("the user quit while the lab was opening")
        runner.finished.wait(runner.stop_timeout_s)
    return runner, note
