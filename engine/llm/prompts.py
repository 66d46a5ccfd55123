"""Prompt texts as data: one file per prompt under prompts/, with ``{{name}}`` placeholders.

A lab may override any prompt by placing a file of the same name in ``<lab>/prompts/``.
Double braces are used so prompts can contain JSON and LaTeX braces verbatim.
"""

from __future__ import annotations

import re
from pathlib import Path

from aisci.engine.errors import UsageError
from aisci.engine.resources import prompts_dir

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class PromptError(UsageError):
    """A prompt file is missing or a placeholder has no value."""


class PromptLibrary:
    """Loads prompt files, preferring the lab's overrides over the bundled ones."""

    def __init__(self, lab_dir: Path | None = None) -> None:
        self._dirs = []
        if lab_dir is not None:
            self._dirs.append(Path(lab_dir) / "prompts")
        self._dirs.append(prompts_dir())

    def path(self, name: str) -> Path:
        for d in self._dirs:
            for candidate in (d / name, d / f"{name}.md", d / f"{name}.txt"):
                if candidate.is_file():
                    return candidate
        raise PromptError(f"prompt {name!r}: no file {name}.md in {', '.join(map(str, self._dirs))}")

    def raw(self, name: str) -> str:
        path = self.path(name)
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PromptError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                              f"at offset {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise PromptError(f"{path}: cannot read the prompt ({exc.strerror or exc})"
                              ) from None

    def placeholders(self, name: str) -> set[str]:
        return set(_PLACEHOLDER.findall(self.raw(name)))

    def render(self, name: str, **values: object) -> str:
        text = self.raw(name)
        missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
        if missing:
            raise PromptError(f"prompt {name!r}: no value for placeholder(s) {', '.join(missing)}")
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
