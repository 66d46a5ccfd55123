"""Citations from real search results: the model asks for a search, picks papers BY
INDEX with the ``add_citations`` tool, code adds their BibTeX (keys de-duplicated,
existing entries reused) and the model only writes ``\\cite{key}`` commands.

LLM steps (stage ``write``), for cassettes:
  ``<name>/cite-<r>``                the model's search query for round r (JSON)
  ``<name>/cite-<r>/insert/turn-<k>`` picking results + inserting \\cite commands
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.events import Notice
from aisci.engine.lab import safe_files
from aisci.engine.literature import LiteratureUnavailable
from aisci.engine.literature.bibtex import build_bibtex, make_key, rekey
from aisci.engine.llm.base import LLMRequest, Message, ToolCall, ToolResult, ToolSpec
from aisci.engine.paper.texscan import strip_comments
from pydantic import BaseModel

MAX_PAPER_CHARS_IN_PROMPT = 30_000
MAX_ABSTRACT_CHARS = 400


def _norm_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]", "", re.sub(r"\\[a-zA-Z]+|[{}]", "", title.lower()))


_ENTRY_RE = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,")
_TITLE_RE = re.compile(r"\btitle\s*=\s*[{\"](.+?)[}\"]\s*,?\s*$", re.IGNORECASE | re.MULTILINE)


class Bibliography:
    """The paper's .bib file (from ``\\bibliography{name}``; ``references.bib`` when the
    paper names none). Read and written inside the idea folder only (safe_files): a name
    that leaves it, or a symlinked .bib, is refused (safe_files.UnsafeFile)."""

    def __init__(self, latex_dir: Path, main: str = "template.tex") -> None:
        self.latex_dir = Path(latex_dir)
        self.root = self.latex_dir.parent
        tex = safe_files.read_text(self.root, f"{self.latex_dir.name}/{main}", errors="replace")
        m = re.search(r"\\bibliography\{([^},]+)", strip_comments(tex))
        name = m.group(1).strip() if m else "references"
        name = name if name.endswith(".bib") else f"{name}.bib"
        self.path = self.latex_dir / name
        self.rel = safe_files.normalize_rel(f"{self.latex_dir.name}/{name}") or \
            f"{self.latex_dir.name}/{name}"  # refused by safe_files when used

    def text(self) -> str:
        try:
            return safe_files.read_text(self.root, self.rel, errors="replace")
        except FileNotFoundError:
            return ""

    def entries(self) -> dict[str, str]:
        """key -> normalised title ('' when the entry has none)."""
        text = self.text()
        out: dict[str, str] = {}
        matches = list(_ENTRY_RE.finditer(text))
        for i, m in enumerate(matches):
            if m.group(1).lower() in ("comment", "string", "preamble"):
                continue
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            t = _TITLE_RE.search(text, m.end(), end)
            out[m.group(2)] = _norm_title(t.group(1)) if t else ""
        return out

    def add(self, paper: Any) -> tuple[str, bool]:
        """Add ``paper``'s BibTeX; returns (key, added). An entry with the same title is
        reused; a key taken by another paper gets a suffix (b, c, ...)."""
        entries = self.entries()
        title = _norm_title(paper.title)
        for key, t in entries.items():
            if t and t == title:
                return key, False
        base = paper.cite_key or make_key(paper)
        key, n = base, 0
        while key in entries:
            n += 1
            key = f"{base}{chr(ord('a') + n)}"
        bib = paper.bibtex.strip()
        bib = rekey(bib, key) if bib.startswith("@") else build_bibtex(paper, key).strip()
        existing = self.text()
        sep = "" if not existing or existing.endswith("\n\n") else (
            "\n" if existing.endswith("\n") else "\n\n")
        safe_files.write_text(self.root, self.rel, existing + sep + bib + "\n")
        return key, True


def format_results(papers: list[Any]) -> str:
    lines = []
    for i, p in enumerate(papers):
        authors = ", ".join(p.authors[:4]) + (" et al." if len(p.authors) > 4 else "")
        abstract = (p.abstract or "").strip().replace("\n", " ")
        if len(abstract) > MAX_ABSTRACT_CHARS:
            abstract = abstract[:MAX_ABSTRACT_CHARS] + "..."
        lines.append(f"[{i}] {p.title}. {authors}. {p.venue or 'n/a'}, {p.year or 'n.d.'}."
                     + (f"\n    {abstract}" if abstract else ""))
    return "\n".join(lines) or "(no results)"


class CiteDecision(BaseModel):
    done: bool
    query: str = ""
    reason: str = ""


def add_citations_tool(bib: Bibliography, papers: list[Any], added: list[str]) -> \
        tuple[ToolSpec, Any]:
    spec = ToolSpec(
        "add_citations",
        "Add the search results with these indices to the bibliography; returns the "
        "citation key of each, to be used in \\citep{...} / \\citet{...}.",
        {"type": "object", "properties": {"indices": {"type": "array",
                                                       "items": {"type": "integer"}}},
         "required": ["indices"]})

    def handler(tc: ToolCall) -> ToolResult:
        raw = tc.arguments.get("indices") if isinstance(tc.arguments, dict) else None
        if not isinstance(raw, list) or not raw:
            return ToolResult(tc.id, "error: give 'indices', a non-empty list of result "
                                     "numbers", is_error=True)
        lines = []
        for idx in raw[:10]:
            if not isinstance(idx, int) or not 0 <= idx < len(papers):
                lines.append(f"[{idx}] error: no such result (0..{len(papers) - 1})")
                continue
            try:
                key, new = bib.add(papers[idx])
            except safe_files.UnsafeFile as exc:
                lines.append(f"[{idx}] error: {exc}")
                continue
            added.append(key)
            lines.append(f"[{idx}] key {key}" + ("" if new else " (already in the "
                                                  "bibliography)") + f": {papers[idx].title}")
        return ToolResult(tc.id, "\n".join(lines))

    return spec, handler


async def citation_round(ctx: Any, idea_id: int, name: str, idea_dir: Path, r: int,
                         rounds: int) -> str:
    """One round; returns 'done' (no more citations needed), 'unavailable' (literature
    down) or 'continue'."""
    latex_dir = idea_dir / "latex"
    bib = Bibliography(latex_dir)
    tex = safe_files.read_text(idea_dir, "latex/template.tex", errors="replace")
    llm = ctx.stage_llm("write", idea_id)
    system = ctx.prompts.render("write_system")
    decision, _ = await llm.chat_json(LLMRequest(
        system=system, step=f"{name}/cite-{r}", messages=[Message(role="user", text=ctx.prompts.render(
            "cite_query", round=r, rounds=rounds, paper=tex[:MAX_PAPER_CHARS_IN_PROMPT],
            keys=", ".join(bib.entries()) or "(none)"))]), CiteDecision)
    if decision.done or not decision.query.strip():
        return "done"
    try:
        papers = await ctx.literature.search(decision.query,
                                             limit=ctx.settings.novelty.results_per_query)
    except LiteratureUnavailable as exc:
        ctx.publish(Notice(level="warning", idea_id=idea_id,
                           message=f"citations stopped: literature unavailable ({exc})"))
        return "unavailable"
    if not papers:
        return "continue"
    added: list[str] = []
    tool = add_citations_tool(bib, papers, added)
    await run_tool_loop(
        llm, system=system, step=f"{name}/cite-{r}/insert",
        messages=[Message(role="user", text=ctx.prompts.render(
            "cite_insert", query=decision.query, reason=decision.reason,
            results=format_results(papers)))],
        tools=EditTools(idea_dir, ["latex/*.tex"]), extra_tools=[tool],
        max_turns=ctx.settings.experiment.max_tool_turns)
    return "continue"
