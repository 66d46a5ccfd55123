"""Shared pytest fixtures. Keep this small: fixtures specific to one area live in that
area's test modules; the loopback fakes live in tests/support/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests import their shared helpers as `support.<module>` (pytest runs with
# --import-mode=importlib, which does not put tests/ on sys.path by itself).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.llm_server import FakeLLMServer

# Fixtures for small real labs (lab, template, baseline), shared by several groups.
pytest_plugins = ["support.labs"]


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A loopback Anthropic + OpenAI API server; script replies with ``.script(api, ...)``."""
    with FakeLLMServer() as server:
        yield server
