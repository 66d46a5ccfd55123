"""Reading a LaTeX paper as text a checker can trust: comments stripped, the preamble
and non-prose commands masked out, every position still mapping to the original line.

Masking replaces characters by spaces (newlines kept), so an offset in the masked text
is an offset in the file and line numbers stay exact. Used by the integrity check and
the LaTeX lint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Commands whose (optional and mandatory) arguments are labels, keys, paths or sizes,
# never claims about results.
_ARG_COMMANDS = (
    "cite", "citet", "citep", "citealp", "citeauthor", "citeyear", "nocite", "ref", "eqref",
    "autoref", "cref", "Cref", "pageref", "label", "includegraphics", "input", "include",
    "usepackage", "documentclass", "bibliography", "bibliographystyle", "graphicspath",
    "url", "href", "vspace", "hspace", "setlength", "addtolength", "resizebox", "scalebox",
    "begin", "end", "multicolumn", "multirow", "cline", "cmidrule", "fontsize", "newcommand",
    "renewcommand", "setcounter", "addtocounter", "rule", "linewidth", "hyperref",
)
_ARG_CMD_RE = re.compile(
    r"\\(?:" + "|".join(_ARG_COMMANDS) + r")\*?\s*(?:\[[^\]]*\]\s*)*(?:\{[^{}]*\}\s*){0,3}")
_COMMENT_RE = re.compile(r"(?<!\\)%.*")
_LENGTH_RE = re.compile(r"-?\d*\.?\d+\s*(?:\\(?:textwidth|linewidth|columnwidth|textheight|"
                        r"baselineskip)|pt|cm|mm|em|ex|in|bp)\b")
_ROW_SPACING_RE = re.compile(r"\\\\\s*\[[^\]]*\]")
_CROSSREF_RE = re.compile(r"(?:Figure|Fig\.|Figs\.|Table|Tab\.|Section|Sec\.|Appendix|"
                          r"Equation|Eq\.|Eqs\.|Algorithm|Line|Step)[~\s]*\d+(?:\.\d+)*",
                          re.IGNORECASE)


@dataclass(frozen=True)
class TexText:
    """A LaTeX file's text and its masked body (same length, same line structure)."""

    path_name: str
    original: str
    masked: str

    def line_of(self, offset: int) -> int:
        return self.original.count("\n", 0, offset) + 1

    def line_text(self, line: int) -> str:
        lines = self.original.splitlines()
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""

    def context(self, start: int, end: int, width: int = 60) -> str:
        a = max(0, start - width)
        b = min(len(self.original), end + width)
        return " ".join(self.original[a:b].split())


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + "".join(c if c == "\n" else " " for c in text[start:end]) + text[end:]


def mask_spans(text: str, pattern: re.Pattern[str]) -> str:
    """Replace every match of ``pattern`` by spaces (newlines kept)."""
    out = list(text)
    for m in pattern.finditer(text):
        for i in range(m.start(), m.end()):
            if out[i] != "\n":
                out[i] = " "
    return "".join(out)


_IFFALSE_RE = re.compile(r"^[ \t]*\\iffalse\b.*?\\(?:fi|else)\b", re.DOTALL | re.MULTILINE)
"""A block switched off by an ``\\iffalse`` that starts a line, up to its ``\\fi`` or
``\\else`` (the else branch is printed); not ``\\let\\ifdraft\\iffalse``."""


def strip_comments(text: str) -> str:
    """The text with % comments and switched-off ``\\iffalse`` blocks masked."""
    return mask_spans(mask_spans(text, _COMMENT_RE), _IFFALSE_RE)


def body_bounds(text: str) -> tuple[int, int]:
    """Offsets of the document body: after \\begin{document}, before the bibliography."""
    start = text.find("\\begin{document}")
    start = 0 if start == -1 else start + len("\\begin{document}")
    end = len(text)
    for marker in ("\\bibliographystyle", "\\bibliography{", "\\begin{thebibliography}",
                   "\\end{document}"):
        i = text.find(marker, start)
        if i != -1:
            end = min(end, i)
    return start, end


_MACRO_DEF_RE = re.compile(
    r"\\(?:(?:re)?newcommand|providecommand|DeclareRobustCommand)\*?\s*"
    r"(?:\{\s*\\(?P<a>[A-Za-z@]+)\s*\}|\\(?P<b>[A-Za-z@]+))\s*(?P<args>\[[^\]]*\]\s*)?\{"
    r"|\\[gex]?def\s*\\(?P<c>[A-Za-z@]+)\s*(?P<params>[^{\s]*)\{")
MAX_MACRO_BODY = 500
MAX_MACROS = 500
MACRO_PASSES = 3


def _brace_end(text: str, open_at: int) -> int:
    """Offset just past the brace group opening at ``open_at`` (-1 when unbalanced)."""
    depth = 0
    for i in range(open_at, min(len(text), open_at + MAX_MACRO_BODY + 2)):
        ch = text[i]
        if ch == "{" and text[i - 1] != "\\":
            depth += 1
        elif ch == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def expand_macros(text: str) -> str:
    """The text with the paper's own argument-free macros (``\\newcommand{\\loss}{1.45}``,
    ``\\def\\loss{1.45}``) expanded where the body uses them, so a number defined once
    in the preamble is read where it is printed. Bodies longer than MAX_MACRO_BODY, with
    parameters, or unbalanced are left alone; a body's newlines become spaces, so every
    line keeps its number (offsets inside a line move)."""
    clean = strip_comments(text)
    macros: dict[str, str] = {}
    spans: list[tuple[int, int]] = []
    for m in _MACRO_DEF_RE.finditer(clean):
        name = m.group("a") or m.group("b") or m.group("c")
        end = _brace_end(clean, m.end() - 1)
        if end == -1:
            continue
        spans.append((m.start(), end))
        body = clean[m.end():end - 1]
        if m.group("args") or m.group("params") or "#" in body:
            macros.pop(name, None)  # takes arguments: not expanded
            continue
        macros[name] = " ".join(body.split())
        if len(macros) >= MAX_MACROS:
            break
    if not macros:
        return text
    start, _ = body_bounds(clean)
    use_re = re.compile(r"\\(" + "|".join(sorted(map(re.escape, macros), key=len, reverse=True))
                        + r")(?![A-Za-z@])(?:\{\})?")
    # Definitions made inside the body are kept as written; only uses are expanded.
    pieces: list[str] = [text[:start]]
    pos = start
    for a, b in sorted(s for s in spans if s[1] > start):
        a = max(a, start)
        pieces += [_expand(text[pos:a], use_re, macros), text[a:b]]
        pos = max(pos, b)
    pieces.append(_expand(text[pos:], use_re, macros))
    return "".join(pieces)


def _expand(part: str, use_re: re.Pattern[str], macros: dict[str, str]) -> str:
    limit = 2 * len(part) + 100_000
    for _ in range(MACRO_PASSES):
        new = use_re.sub(lambda m: macros[m.group(1)], part)
        if new == part or len(new) > limit:
            break
        part = new
    return part


def prose_text(name: str, text: str) -> TexText:
    """The body with comments, the preamble, labels/keys/paths and lengths masked out."""
    masked = strip_comments(text)
    start, end = body_bounds(masked)
    masked = _blank(masked, 0, start)
    masked = _blank(masked, end, len(masked))
    # filecontents blocks (an embedded .bib) are data, not prose.
    masked = mask_spans(masked, re.compile(r"\\begin\{filecontents\*?\}.*?\\end\{filecontents\*?\}",
                                           re.DOTALL))
    for pat in (_ARG_CMD_RE, _LENGTH_RE, _ROW_SPACING_RE, _CROSSREF_RE):
        masked = mask_spans(masked, pat)
    return TexText(name, text, masked)


_TITLE_RE = re.compile(r"\\title\s*(?:\[[^\]]*\])?\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_MATH_ENV_RE = re.compile(r"\\begin\{(?:figure|table)\*?\}|\\end\{(?:figure|table)\*?\}")
_COMMAND_NAME_RE = re.compile(r"\\(?:[A-Za-z@]+\*?|.)")


def paper_text(text: str) -> str:
    """A LaTeX paper as plain reading text (for a reviewer when no PDF could be made):
    the title, then the body without comments, the preamble, labels/keys/paths, command
    names and braces; section titles and captions stay. Blank runs collapse."""
    m = _TITLE_RE.search(strip_comments(text))
    title = " ".join(_COMMAND_NAME_RE.sub(" ", m.group(1)).replace("{", " ")
                     .replace("}", " ").split()) if m else ""
    masked = strip_comments(text)
    start, end = body_bounds(masked)
    body = masked[start:end]
    body = mask_spans(body, re.compile(
        r"\\begin\{filecontents\*?\}.*?\\end\{filecontents\*?\}", re.DOTALL))
    body = mask_spans(body, _ARG_CMD_RE)
    body = _COMMAND_NAME_RE.sub(" ", body).replace("{", " ").replace("}", " ")
    body = body.replace("~", " ").replace("&", " | ")
    lines = [" ".join(line.split()) for line in body.splitlines()]
    paras: list[str] = []
    blank = True
    for line in lines:
        if line:
            paras.append(line)
            blank = False
        elif not blank:
            paras.append("")
            blank = True
    out = "\n".join(paras).strip()
    return (f"{title}\n\n{out}" if title else out).strip()
