"""The file-editing tools an LLM gets as tool calls: view, replace exact text, create,
list. Paths resolve inside one idea directory and writes are limited to the files the
current stage may edit. Every failure is returned to the model as a precise error
message; nothing here parses free-text patches.

Every file access goes through :mod:`aisci.engine.lab.safe_files`: a symlink, a hard link or
a special file in the folder is refused (never followed), reads are bounded and a write
replaces the file (temporary file + rename), so the model cannot read or write a host
file through something an experiment left in the folder.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aisci.engine.errors import AisciError
from aisci.engine.lab import safe_files
from aisci.engine.llm.base import ToolCall, ToolResult, ToolSpec

MAX_FILE_BYTES = 1_000_000
MAX_VIEW_LINES = 400
MAX_READ_BYTES = safe_files.MAX_TEXT_BYTES
"""Largest file view_file / replace_text read."""
MAX_LIST_ENTRIES = 500
_TEX_TOKEN = re.compile(r"\\.|%[^\n]*|[{}\n]", re.DOTALL)
"""What matters for brace balance in LaTeX: an escaped character, a comment (to the end
of the line, its newline kept), a brace, a newline."""

#: Which files each stage may write (glob patterns relative to the idea directory).
STAGE_WRITABLE: dict[str, tuple[list[str], list[str]]] = {
    # (allowed, denied)
    # causality_check.py is the engine's integrity check: the model must never edit it.
    "experiment": (["experiment.py", "notes.txt", "*.py"], ["plot.py", "causality_check.py"]),
    "plot": (["plot.py", "notes.txt"], []),
    "write": (["latex/*.tex", "latex/*.bib", "latex/*.sty"], []),
    "improve": (["latex/*.tex", "latex/*.bib"], []),
}


class EditError(AisciError):
    """A tool call that cannot be carried out; the message goes back to the model."""


@dataclass
class EditTools:
    root: Path
    allowed: list[str]
    denied: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)

    @classmethod
    def for_stage(cls, root: Path, stage: str) -> EditTools:
        allowed, denied = STAGE_WRITABLE[stage]
        return cls(Path(root), list(allowed), list(denied))

    # -- specs ---------------------------------------------------------------------------
    def specs(self) -> list[ToolSpec]:
        writable = ", ".join(self.allowed) + (
            f" (not {', '.join(self.denied)})" if self.denied else "")
        return [
            ToolSpec("view_file", "Show a file of the project with line numbers. Optional "
                     "start_line/end_line (1-based, inclusive) show a part of a long file.",
                     {"type": "object", "properties": {
                         "path": {"type": "string"},
                         "start_line": {"type": "integer"},
                         "end_line": {"type": "integer"}},
                      "required": ["path"]}),
            ToolSpec("replace_text", "Replace one exact, unique span of text in a file. "
                     "old_text must occur exactly once (include enough surrounding lines). "
                     f"Writable files: {writable}.",
                     {"type": "object", "properties": {
                         "path": {"type": "string"},
                         "old_text": {"type": "string"},
                         "new_text": {"type": "string"}},
                      "required": ["path", "old_text", "new_text"]}),
            ToolSpec("create_file", "Create a file (or overwrite it with overwrite=true). "
                     f"Writable files: {writable}.",
                     {"type": "object", "properties": {
                         "path": {"type": "string"},
                         "content": {"type": "string"},
                         "overwrite": {"type": "boolean"}},
                      "required": ["path", "content"]}),
            ToolSpec("list_files", "List the files of the project (or of a sub-folder).",
                     {"type": "object", "properties": {"path": {"type": "string"}}}),
        ]

    # -- dispatch ------------------------------------------------------------------------
    def handles(self, name: str) -> bool:
        return name in ("view_file", "replace_text", "create_file", "list_files")

    def call(self, tc: ToolCall) -> ToolResult:
        try:
            handler = getattr(self, f"_tool_{tc.name}", None)
            if handler is None or not self.handles(tc.name):
                raise EditError(f"unknown tool {tc.name!r}")
            return ToolResult(tc.id, handler(**_args(tc)))
        except EditError as exc:
            return ToolResult(tc.id, f"error: {exc}", is_error=True)
        except TypeError as exc:
            return ToolResult(tc.id, f"error: bad arguments for {tc.name}: {exc}", is_error=True)

    # -- paths ---------------------------------------------------------------------------
    def _resolve(self, path: str) -> str:
        """The path relative to the project folder (lexical; nothing is resolved: a
        symlink on the way is refused when the file is used)."""
        if not isinstance(path, str) or not path.strip():
            raise EditError("path must be a non-empty string relative to the project folder")
        p = PurePosixPath(path.strip())
        if p.is_absolute() or ".." in p.parts:
            raise EditError(f"{path}: paths must be relative to the project folder, without '..'")
        if p.parts and p.parts[0] == ".git":
            raise EditError(f"{path}: the git repository is managed by the engine")
        return p.as_posix()

    def _kind(self, rel: str) -> str | None:
        try:
            return safe_files.kind(self.root, rel)
        except OSError as exc:  # a folder on the way is a symlink or not a folder
            raise EditError(str(exc)) from None

    def _read(self, rel: str, errors: str) -> str:
        try:
            return safe_files.read_text(self.root, rel, MAX_READ_BYTES, errors=errors)
        except safe_files.UnsafeFile as exc:
            raise EditError(str(exc)) from None
        except OSError as exc:
            raise EditError(f"{rel}: cannot be read ({exc.strerror or exc})") from None

    def _write(self, rel: str, text: str, make_dirs: bool = False) -> None:
        try:
            safe_files.write_text(self.root, rel, text, make_dirs=make_dirs)
        except safe_files.UnsafeFile as exc:
            raise EditError(str(exc)) from None
        except OSError as exc:
            raise EditError(f"{rel}: cannot be written ({exc.strerror or exc})") from None

    def writable(self, rel: str) -> bool:
        if any(fnmatch.fnmatchcase(rel, d) for d in self.denied):
            return False
        return any(fnmatch.fnmatchcase(rel, a) for a in self.allowed)

    def _check_writable(self, rel: str) -> None:
        if not self.writable(rel):
            raise EditError(f"{rel}: this stage may not modify it; writable files: "
                            f"{', '.join(self.allowed)}"
                            + (f" (not {', '.join(self.denied)})" if self.denied else ""))

    # -- tools ---------------------------------------------------------------------------
    def _tool_view_file(self, path: str, start_line: int | None = None,
                        end_line: int | None = None) -> str:
        rel = self._resolve(path)
        if self._kind(rel) in (None, "dir"):
            raise EditError(f"{rel}: no such file (use list_files)")
        lines = self._read(rel, "replace").splitlines()
        start = max(1, int(start_line or 1))
        end = min(len(lines), int(end_line or len(lines)))
        if end - start + 1 > MAX_VIEW_LINES:
            end = start + MAX_VIEW_LINES - 1
            note = f"\n[... shown lines {start}-{end} of {len(lines)}; ask for more with start_line]"
        else:
            note = ""
        body = "\n".join(f"{i:5d}| {lines[i - 1]}" for i in range(start, end + 1))
        return f"{rel} ({len(lines)} lines)\n{body}{note}"

    def _tool_replace_text(self, path: str, old_text: str, new_text: str) -> str:
        rel = self._resolve(path)
        self._check_writable(rel)
        if self._kind(rel) in (None, "dir"):
            raise EditError(f"{rel}: no such file; use create_file for a new file")
        if not old_text:
            raise EditError("old_text is empty; give the exact text to replace")
        text = self._read(rel, "strict")
        count = text.count(old_text)
        if count == 0:
            hint = ""
            first = old_text.strip().splitlines()[0].strip() if old_text.strip() else ""
            if first:
                hits = [i + 1 for i, ln in enumerate(text.splitlines()) if first in ln]
                if hits:
                    hint = (f"; its first line occurs at line(s) {hits[:5]}: check whitespace "
                            "and the following lines with view_file")
            raise EditError(f"{rel}: old_text not found{hint}")
        if count > 1:
            lines = [text[:m].count("\n") + 1 for m in _find_all(text, old_text)]
            raise EditError(f"{rel}: old_text occurs {count} times (lines {lines[:10]}); "
                            "include more surrounding text so it is unique")
        new = text.replace(old_text, new_text, 1)
        if len(new.encode()) > MAX_FILE_BYTES:
            raise EditError(f"{rel}: the result would exceed {MAX_FILE_BYTES} bytes")
        _check_tex_braces(rel, text, new)
        self._write(rel, new)
        self.changed.add(rel)
        line = text[: text.index(old_text)].count("\n") + 1
        return f"{rel}: replaced {old_text.count(chr(10)) + 1} line(s) at line {line}"

    def _tool_create_file(self, path: str, content: str, overwrite: bool = False) -> str:
        rel = self._resolve(path)
        self._check_writable(rel)
        kind = self._kind(rel)
        if kind is not None and not overwrite:
            raise EditError(f"{rel}: already exists; use replace_text, or overwrite=true")
        if kind not in (None, "file"):  # a symlink is never written, nor replaced
            raise EditError(f"{rel} is {safe_files.describe_kind(kind)}: refused")
        if len(content.encode()) > MAX_FILE_BYTES:
            raise EditError(f"{rel}: content exceeds {MAX_FILE_BYTES} bytes")
        _check_tex_braces(rel, self._read(rel, "replace") if kind == "file" else "", content)
        self._write(rel, content, make_dirs=True)
        self.changed.add(rel)
        return f"{rel}: written ({content.count(chr(10)) + 1} lines)"

    def _tool_list_files(self, path: str = ".") -> str:
        rel = self._resolve(path or ".")
        if self._kind(rel) != "dir":
            raise EditError(f"{rel}: not a folder")
        out: list[str] = []
        entries = safe_files.walk(self.root, rel, prune=lambda e: e.name in (
            ".git", "__pycache__"))
        for e in sorted(entries, key=lambda e: e.path.split("/")):
            if e.kind == "dir" or e.path.startswith(".git/") or "__pycache__" in e.path:
                continue
            if len(out) >= MAX_LIST_ENTRIES:
                out.append("[... more files not shown]")
                break
            if e.kind != "file":  # never followed: shown as what it is
                out.append(f"{e.path}  ({safe_files.describe_kind(e.kind)}, not usable)")
                continue
            mark = " (writable)" if self.writable(e.path) else ""
            out.append(f"{e.path}  {e.size} B{mark}")
        return "\n".join(out) or "(empty)"


def _args(tc: ToolCall) -> dict[str, Any]:
    if not isinstance(tc.arguments, dict):
        raise EditError(f"arguments of {tc.name} must be a JSON object")
    return tc.arguments


def _find_all(text: str, sub: str) -> list[int]:
    out: list[int] = []
    i = text.find(sub)
    while i != -1 and len(out) < 50:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def _brace_problem(text: str) -> str | None:
    """Where a LaTeX text's braces do not balance (``\\{``, ``\\}`` and comments aside):
    the first ``}`` with no ``{`` to close, or the first ``{`` never closed; None when
    they balance. One regex pass, linear in the text."""
    open_lines: list[int] = []
    line = 1
    for m in _TEX_TOKEN.finditer(text):
        tok = m.group(0)
        if tok == "{":
            open_lines.append(line)
        elif tok == "}":
            if not open_lines:
                return f"a '}}' at line {line} closes no '{{'"
            open_lines.pop()
        else:  # a newline, or an escaped character (\\{, \\%, a line break after \\)
            line += tok.count("\n")
    if open_lines:
        return (f"{len(open_lines)} '{{' never closed (the first opened at line "
                f"{open_lines[0]})")
    return None


def _check_tex_braces(rel: str, before: str, after: str) -> None:
    """A .tex edit that leaves a balanced file with unbalanced braces is refused, so the
    model gets the precise problem at once instead of a failed compile later. A file
    that was unbalanced already may be edited freely (the edit may be its repair)."""
    if not rel.endswith(".tex") or _brace_problem(before) is not None:
        return
    problem = _brace_problem(after)
    if problem is not None:
        raise EditError(f"{rel}: the edit would leave unbalanced braces ({problem}); "
                        "nothing was changed: balance the braces in your text and call again")
