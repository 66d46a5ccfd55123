"""Problems in a LaTeX paper that the model must see: engine-side source checks (citation
keys, figure files, duplicates, underscores, leftover placeholders), chktex output, and
the TeX/BibTeX logs trimmed to the lines that explain an error."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from aisci.engine.lab import safe_files
from aisci.engine.paper.texscan import body_bounds, mask_spans, strip_comments

MAX_LOG_LINES = 60
MAX_ERRORS = 4
MAX_CHKTEX = 30
#: chktex warnings left on: the ones that point at real mistakes. Turned off (-nN):
#: 1 command terminated with space, 2 non-breaking space before \ref/\cite, 3 enclose in
#: braces, 8 dash length, 13 intersentence spacing, 24 space before \label, 36 space
#: before parenthesis, 44 vertical rules in tables, 46 $$ vs \( \) -- style, not errors.
CHKTEX_DISABLED = (1, 2, 3, 8, 13, 24, 36, 44, 46)
GRAPHIC_EXTS = (".pdf", ".png", ".jpg", ".jpeg", ".eps")


@dataclass(frozen=True)
class LatexProblem:
    kind: str
    """tex_error | undefined_citation | undefined_reference | missing_citation |
    missing_figure | duplicate_figure | duplicate_section | underscore | placeholder |
    chktex | bibtex | timeout"""
    message: str
    line: int | None = None
    blocking: bool = True
    """Blocking problems break the paper (errors, missing files or keys); the others are
    style warnings worth a bounded number of fix rounds."""

    def format(self, file: str = "template.tex") -> str:
        where = f"{file}:{self.line}: " if self.line else ""
        # A TeX error's context lines are shown in the log excerpt; one line suffices here.
        msg = self.message.splitlines()[0] if self.kind == "tex_error" else self.message
        return f"[{self.kind}] {where}{msg}"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_CITE_RE = re.compile(r"\\(?!citestyle\b)(?:[A-Za-z]*cite|Cite)[A-Za-z]*\*?\s*"
                      r"(?:\[[^\]]*\]\s*){0,2}\{([^}]*)\}")
"""natbib, biblatex and plain citation commands (\\citep, \\parencite, \\Citet,
\\nocite...), not \\citestyle."""
_BIB_FILES_RE = re.compile(r"\\(?:bibliography|addbibresource)\s*(?:\[[^\]]*\]\s*)?\{([^}]*)\}")


def bibliography(root: Path, tex_dir: str, tex: str) -> set[str] | None:
    """Keys of the bibliography the paper uses: the .bib files of \\bibliography{a,b} and
    \\addbibresource{x.bib} (relative to the paper's folder ``tex_dir`` inside ``root``,
    read without following a symlink, bounded), any embedded filecontents .bib and
    \\bibitem entries. None when the paper has no bibliography to read."""
    found = False
    sources = []
    text = strip_comments(tex)
    for m in _BIB_FILES_RE.finditer(text):
        for name in m.group(1).split(","):
            name = name.strip()
            if not name:
                continue
            name = name if name.endswith(".bib") else f"{name}.bib"
            rel = safe_files.normalize_rel(name if tex_dir in ("", ".") else f"{tex_dir}/{name}")
            if rel is None:  # absolute, or leaves the folder
                continue
            try:
                sources.append(safe_files.read_text(root, rel, errors="replace"))
                found = True
            except OSError:  # missing, or refused (a symlink, too large)
                continue
    embedded = re.findall(r"\\begin\{filecontents\*?\}(?:\[[^\]]*\])?\{[^}]*\.bib\}(.*?)"
                          r"\\end\{filecontents", tex, re.DOTALL)
    items = re.findall(r"\\bibitem\s*(?:\[[^\]]*\])?\s*\{([^}]+)\}", text)
    if not (found or embedded or items):
        return None
    keys = {k.strip() for k in items}
    for src in [*sources, *embedded]:
        keys.update(k.strip() for k in re.findall(r"@\w+\s*[{(]\s*([^,\s]+)\s*,", src))
    return keys


def bib_keys(latex_dir: Path, tex: str) -> set[str]:
    """Keys of the bibliography of the paper in ``latex_dir`` (files read from the idea
    folder, its parent); empty when it has none."""
    return bibliography(latex_dir.parent, latex_dir.name, tex) or set()


def unknown_cite_keys(text: str, keys: set[str]) -> list[tuple[int, str]]:
    """(offset, key) of every \\cite key of ``text`` (comments stripped) not in ``keys``."""
    out = []
    for m in _CITE_RE.finditer(text):
        for key in (k.strip() for k in m.group(1).split(",")):
            if key and key not in keys and key != "*":
                out.append((m.start(), key))
    return out


def graphics_dirs(latex_dir: Path, tex: str) -> list[Path]:
    """latex/ and the \\graphicspath folders, as absolute paths (folded lexically, no
    symlink resolved)."""
    dirs = [latex_dir]
    m = re.search(r"\\graphicspath\s*\{((?:\{[^}]*\})+)\}", strip_comments(tex))
    if m:
        dirs += [Path(os.path.normpath(latex_dir / d))
                 for d in re.findall(r"\{([^}]*)\}", m.group(1))]
    return dirs


def find_graphic(name: str, dirs: list[Path], idea_dir: Path | None = None) -> Path | None:
    """The figure file ``name`` in the first of ``dirs`` holding it: a regular file inside
    ``idea_dir`` (default: the parent of the first dir, latex/) reached without
    following symlinks; a path leaving the idea folder is never found."""
    root = Path(idea_dir) if idea_dir is not None else dirs[0].parent
    for d in dirs:
        candidates = [name] if Path(name).suffix else [name, *(name + e for e in GRAPHIC_EXTS)]
        for cand in candidates:
            full = Path(os.path.normpath(d / cand))
            if not full.is_relative_to(root) or full == root:
                continue
            if safe_files.is_file(root, full.relative_to(root).as_posix()):
                return full
    return None


_MATH_RE = re.compile(
    r"\$\$.*?\$\$|(?<!\\)\$.*?(?<!\\)\$|\\\[.*?\\\]|\\\(.*?\\\)|"
    r"\\begin\{(equation|align|gather|multline|eqnarray|math|displaymath)(\*?)\}.*?"
    r"\\end\{\1\2\}", re.DOTALL)
_VERBATIM_ARG_RE = re.compile(
    r"\\(?:texttt|url|href|label|ref|eqref|autoref|cref|Cref|cite\w*|nocite|includegraphics|"
    r"input|include|bibliography|bibliographystyle|graphicspath|usepackage|begin|end|verb)"
    r"\*?\s*(?:\[[^\]]*\]\s*)*(?:\{[^{}]*\}\s*){0,2}|\\verb(.).*?\1")


def lint_source(latex_dir: Path, main: str = "template.tex") -> list[LatexProblem]:
    tex = safe_files.read_text(latex_dir.parent, f"{latex_dir.name}/{main}", errors="replace")
    text = strip_comments(tex)
    problems: list[LatexProblem] = []
    for offset, key in unknown_cite_keys(text, bib_keys(latex_dir, tex)):
        problems.append(LatexProblem(
            "missing_citation", f"\\cite key '{key}' is not in the bibliography; use "
            "only keys that exist (they are listed in the .bib file)", _line(text, offset)))
    dirs = graphics_dirs(latex_dir, tex)
    seen_figs: dict[str, int] = {}
    for m in re.finditer(r"\\includegraphics\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}", text):
        name, line = m.group(1).strip(), _line(text, m.start())
        found = find_graphic(name, dirs)
        if found is None:
            problems.append(LatexProblem(
                "missing_figure", f"\\includegraphics file '{name}' does not exist (searched "
                f"{', '.join(str(d) for d in dirs)})", line))
            continue
        real = str(found)  # folded lexically; symlinks are never found
        if real in seen_figs:
            problems.append(LatexProblem(
                "duplicate_figure", f"figure '{name}' is already included at line "
                f"{seen_figs[real]}; show each figure once", line, blocking=False))
        else:
            seen_figs[real] = line
    seen_sections: dict[str, int] = {}
    for m in re.finditer(r"\\(section|subsection)\*?\{([^}]*)\}", text):
        title = " ".join(m.group(2).lower().split())
        key = f"{m.group(1)}:{title}"
        line = _line(text, m.start())
        if key in seen_sections:
            problems.append(LatexProblem(
                "duplicate_section", f"\\{m.group(1)}{{{m.group(2)}}} appears twice (first at "
                f"line {seen_sections[key]}); merge them", line, blocking=False))
        else:
            seen_sections[key] = line
    start, end = body_bounds(text)
    body = " " * start + text[start:end]
    prose = mask_spans(mask_spans(body, _MATH_RE), _VERBATIM_ARG_RE)
    for m in re.finditer(r"(?<!\\)_", prose):
        problems.append(LatexProblem(
            "underscore", "unescaped '_' outside math: write \\_ (or use math / \\texttt)",
            _line(text, m.start()), blocking=False))
    for m in re.finditer(r"(?m)^\s*([A-Z][A-Z ]{2,40} HERE)\s*$|\\title\{([A-Z ]+ HERE)\}", text):
        problems.append(LatexProblem(
            "placeholder", f"placeholder '{(m.group(1) or m.group(2)).strip()}' was never "
            "replaced by text", _line(text, m.start()), blocking=False))
    return problems


def parse_chktex(output: str) -> list[LatexProblem]:
    """chktex run with ``-f '%l:%c:%n:%m\\n'``."""
    out = []
    for ln in output.splitlines():
        m = re.match(r"^(\d+):(\d+):(\d+):(.*)$", ln.strip())
        if m:
            out.append(LatexProblem("chktex", f"chktex warning {m.group(3)}: {m.group(4).strip()}",
                                    int(m.group(1)), blocking=False))
        if len(out) >= MAX_CHKTEX:
            break
    return out


_UNDEF_CITE = re.compile(r"(?:LaTeX|Package natbib) Warning: Citation [`'](.+?)' "
                         r"(?:on page \d+ )?undefined(?: on input line (\d+))?")
_UNDEF_REF = re.compile(r"LaTeX Warning: Reference [`'](.+?)' on page \d+ undefined"
                        r"(?: on input line (\d+))?")


def log_problems(log_text: str) -> list[LatexProblem]:
    """Errors (``! ...`` with their ``l.NN`` context) and undefined citations/references."""
    problems: list[LatexProblem] = []
    lines = log_text.splitlines()
    i = 0
    while i < len(lines) and sum(p.kind == "tex_error" for p in problems) < MAX_ERRORS:
        if lines[i].startswith("! ") and "==> Fatal error occurred" not in lines[i]:
            chunk = [lines[i]]
            line_no = None
            for j in range(i + 1, min(i + 12, len(lines))):
                chunk.append(lines[j])
                m = re.match(r"^l\.(\d+)", lines[j])
                if m:
                    line_no = int(m.group(1))
                    if j + 1 < len(lines) and lines[j + 1].strip():
                        chunk.append(lines[j + 1])
                    break
            problems.append(LatexProblem("tex_error", "\n".join(chunk).strip(), line_no))
            i += len(chunk)
            continue
        i += 1
    seen: set[str] = set()
    for rx, kind in ((_UNDEF_CITE, "undefined_citation"), (_UNDEF_REF, "undefined_reference")):
        for m in rx.finditer(log_text):
            if m.group(1) in seen:
                continue
            seen.add(m.group(1))
            what = "citation" if kind == "undefined_citation" else "reference"
            problems.append(LatexProblem(kind, f"undefined {what} '{m.group(1)}'",
                                         int(m.group(2)) if m.group(2) else None))
    return problems


def blg_problems(blg_text: str) -> list[LatexProblem]:
    out = []
    for m in re.finditer(r"^(Warning--.*|I couldn't open.*|I was expecting.*|.*---line \d+ of "
                         r"file .*)$", blg_text, re.MULTILINE):
        if "didn't find a database entry" in m.group(1):
            continue  # reported as a missing citation with its line
        out.append(LatexProblem("bibtex", m.group(1).strip(), None, blocking=False))
    return out[:10]


def trim_log(log_text: str) -> str:
    """The relevant lines of a TeX log: each error with its context, then undefined
    citations/references, at most MAX_LOG_LINES lines."""
    kept = [p.message if p.kind == "tex_error" else p.format()
            for p in log_problems(log_text)]
    text = "\n".join(kept)
    lines = text.splitlines()
    if len(lines) > MAX_LOG_LINES:
        lines = [*lines[:MAX_LOG_LINES], f"[... {len(lines) - MAX_LOG_LINES} more lines]"]
    return "\n".join(lines)
