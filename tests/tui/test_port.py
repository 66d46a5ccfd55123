"""The engine port is the TUI's whole view of the engine: the real Engine and the tests'
StoreEngine both provide every member it declares, with the same signature, and the
App, screens, widgets and palette use nothing else of the engine."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aisci.engine.config import Settings
from aisci.engine.control.attached import AttachedEngine
from aisci.engine.engine import Engine
from aisci.tui.engine_port import EnginePort
from aisci.tui.engine_thread import EngineThread
from support.tui_lab import StoreEngine, build_lab

TUI = Path(__file__).resolve().parents[2] / "tui"


def port_methods() -> dict[str, Any]:
    return {name: fn for name, fn in vars(EnginePort).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def port_attributes() -> dict[str, Any]:
    return {name: hint for name, hint in typing.get_type_hints(EnginePort).items()
            if name not in port_methods()}


def port_properties() -> set[str]:
    """Read-only members (``read_only``: why the lab is only viewed)."""
    return {name for name, v in vars(EnginePort).items() if isinstance(v, property)}


def shape(fn: Any) -> tuple[bool, list[tuple[str, Any]], dict[str, Any]]:
    """Async or not, (name, kind) of each parameter after self, resolved annotations."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return (inspect.iscoroutinefunction(fn), [(p.name, p.kind) for p in params],
            typing.get_type_hints(fn))


@pytest.fixture(params=["Engine", "StoreEngine", "AttachedEngine", "EngineThread"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    lab = tmp_path / "lab"
    if request.param == "Engine":
        eng = Engine(lab, Settings())
        yield eng
        eng.store.close()
    elif request.param == "StoreEngine":
        yield StoreEngine(lab, build_lab(lab))
    elif request.param == "EngineThread":
        settings = Settings()
        settings.models.default = "scripted:none"
        settings.sandbox.mode = "none"
        runner = EngineThread(Engine(lab, settings, headless=False))
        runner.launch()
        yield runner
        runner.request_stop("test over")
        assert runner.finished.wait(30)
    else:
        with engine_in_thread(lab):
            attached = AttachedEngine(lab)
            yield attached
            attached._commands.close()
            attached.store.close()


@contextlib.contextmanager
def engine_in_thread(lab: Path) -> Iterator[Engine]:
    """A started engine serving its control socket from its own thread's loop."""
    settings = Settings()
    settings.models.default = "scripted:none"
    settings.sandbox.mode = "none"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    eng = Engine(lab, settings, headless=False)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(eng.start())
        ready.set()
        loop.run_until_complete(eng.stop_requested.wait())
        loop.run_until_complete(eng.stop())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield eng
    finally:
        loop.call_soon_threadsafe(eng.request_stop, "test over")
        thread.join(30)
        loop.close()


def test_the_port_declares_the_commands_the_palette_sends() -> None:
    assert {"pause_idea", "resume_idea", "retry_stage", "skip_stage",
            "literature_decision"} <= set(port_methods())


def test_engines_provide_every_port_member_with_its_signature(engine: Any) -> None:
    for name in port_properties() - {"attached_to"}:
        assert getattr(engine, name) is None, name  # a writable lab: not read-only
    attached = isinstance(engine, AttachedEngine)
    assert (engine.attached_to is not None) == attached
    assert engine.blocking_commands == isinstance(engine, AttachedEngine | EngineThread)
    for name, hint in port_attributes().items():
        assert isinstance(getattr(engine, name), hint), name
    for name, declared in port_methods().items():
        impl = getattr(type(engine), name, None)
        assert impl is not None, f"{type(engine).__name__} has no {name}"
        assert shape(impl) == shape(declared), f"{type(engine).__name__}.{name}"


def test_the_tui_uses_only_what_the_port_declares() -> None:
    # The launcher (tui/main.py, launch.py, detach.py, engine_thread.py) builds and owns the
    # concrete engine (ensure_ideas for the demo; its thread; keeping it running once
    # the App is gone); the App gets the port
    used: dict[str, set[str]] = {}
    for path in TUI.rglob("*.py"):
        if path.name in ("main.py", "launch.py", "detach.py", "engine_thread.py") \
                and path.parent == TUI:
            continue
        for m in re.finditer(r"(?:\bself\.|\bapp\.|(?<![\w.]))engine\.(\w+)",
                             path.read_text(encoding="utf-8")):
            used.setdefault(m.group(1), set()).add(path.name)
    assert used, "the scan found no engine use at all"
    declared = set(port_methods()) | set(port_attributes()) | port_properties()
    assert {name: files for name, files in used.items() if name not in declared} == {}
