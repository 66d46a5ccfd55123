"""Helpers shared by the test groups (unit, functional, tui): loopback fake servers for the
LLM and literature APIs, a prebuilt lab for the TUI tests, and fixture data. Nothing here
is a test; pytest does not collect this package."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
