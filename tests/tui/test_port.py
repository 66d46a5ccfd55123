"""The engine port is the TUI's whole view of the engine: the real Engine and the tests'
StoreEngine both provide every member it declares, with the same signature, and the
App, screens, widgets and palette use nothing else of the engine."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.tui.engine_port import EnginePort
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


@pytest.fixture(params=["Engine", "StoreEngine"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    lab = tmp_path / "lab"
    if request.param == "Engine":
        eng = Engine(lab, Settings())
        yield eng
        eng.store.close()
    else:
        yield StoreEngine(lab, build_lab(lab))


def test_the_port_declares_the_commands_the_palette_sends() -> None:
    assert {"pause_idea", "resume_idea", "retry_stage", "skip_stage",
            "literature_decision"} <= set(port_methods())


def test_engines_provide_every_port_member_with_its_signature(engine: Any) -> None:
    for name in port_properties():
        assert getattr(engine, name) is None, name  # a writable lab: not read-only
    for name, hint in port_attributes().items():
        assert isinstance(getattr(engine, name), hint), name
    for name, declared in port_methods().items():
        impl = getattr(type(engine), name, None)
        assert impl is not None, f"{type(engine).__name__} has no {name}"
        assert shape(impl) == shape(declared), f"{type(engine).__name__}.{name}"


def test_the_tui_uses_only_what_the_port_declares() -> None:
    # tui/main.py builds the concrete engine (ensure_ideas for the demo) before the App
    used: dict[str, set[str]] = {}
    for path in TUI.rglob("*.py"):
        if path.name == "main.py" and path.parent == TUI:
            continue
        for m in re.finditer(r"(?:\bself\.|\bapp\.|(?<![\w.]))engine\.(\w+)",
                             path.read_text(encoding="utf-8")):
            used.setdefault(m.group(1), set()).add(path.name)
    assert used, "the scan found no engine use at all"
    declared = set(port_methods()) | set(port_attributes()) | port_properties()
    assert {name: files for name, files in used.items() if name not in declared} == {}
