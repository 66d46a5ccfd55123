"""Locations of the data that ships with aisci (templates, prompts, themes, price table).

Works the same for an editable checkout and a wheel install: everything is resolved
relative to the installed ``aisci`` package, never the current directory.
"""

from __future__ import annotations

from pathlib import Path

import aisci

PACKAGE_ROOT = Path(aisci.__file__).resolve().parent


def templates_dir() -> Path:
    return PACKAGE_ROOT / "templates"


def prompts_dir() -> Path:
    return PACKAGE_ROOT / "prompts"


def themes_dir() -> Path:
    return PACKAGE_ROOT / "themes"


def data_dir() -> Path:
    return PACKAGE_ROOT / "engine" / "data"


def bundled_templates() -> list[str]:
    root = templates_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and (p / "experiment.py").is_file()
    )
