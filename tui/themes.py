"""Themes are data: every ``*.toml`` in the bundled ``themes/`` folder (and in
``<lab>/themes/``) is a Textual theme, registered when the app starts."""

from __future__ import annotations

import tomllib
from pathlib import Path

from aisci.engine.resources import themes_dir
from textual.theme import Theme

_FIELDS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
           "success", "warning", "error", "boost", "dark", "luminosity_spread",
           "text_alpha", "variables")


class ThemeError(ValueError):
    pass


def load_theme(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeError(f"{path}: cannot read theme: {exc}") from None
    unknown = set(data) - set(_FIELDS) - {"name"}
    if unknown:
        raise ThemeError(f"{path}: unknown theme keys {sorted(unknown)}; expected {_FIELDS}")
    if "primary" not in data:
        raise ThemeError(f"{path}: a theme needs at least 'primary'")
    return Theme(name=str(data.get("name", path.stem)),
                 **{k: v for k, v in data.items() if k != "name"})


def load_themes(lab: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Bundled themes, then the lab's (a lab theme with the same name wins), and one line
    for each theme file that could not be used (the others still load)."""
    found: dict[str, Theme] = {}
    problems: list[str] = []
    folders = [themes_dir()] + ([lab / "themes"] if lab is not None else [])
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                try:
                    theme = load_theme(path)
                except (ThemeError, TypeError, ValueError) as exc:  # bad values too
                    problems.append(str(exc).splitlines()[0] if str(exc) else str(path))
                    continue
                found[theme.name] = theme
    return list(found.values()), problems
