"""The selected idea in full: title, plan, scores, veto/edit history, novelty evidence."""

from __future__ import annotations

from typing import Any

from aisci.engine.lab.store import IdeaRow
from aisci.tui.lab_data import novelty_verdict
from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

MAX_PAPERS = 10


def render_idea(idea: IdeaRow, history: list[dict[str, Any]],
                stage: tuple[str, str] = ("", "")) -> Group:
    d = idea.data
    where = (f" [dim]· stage[/dim] [b]{escape(stage[0])} {escape(stage[1])}[/b]"
             if stage[0] else "")
    parts: list[Any] = [
        Text.from_markup(f"[b]#{idea.id} {escape(str(d.get('Title', idea.name)))}[/b]"),
        Text.from_markup(
            f"[dim]{idea.name} · template {idea.template} · status[/dim] [b]{idea.status}[/b]"
            f"{where} [dim]· I {d.get('Interestingness', '?')} F {d.get('Feasibility', '?')}"
            f" N {d.get('Novelty', '?')}[/dim]"),
        Text(""),
        Text.from_markup("[b u]Experiment plan[/b u]"),
        Text(str(d.get("Experiment", "")).strip()),
    ]
    vetoes = [h for h in history if h["action"] in ("vetoed", "veto", "edited", "edit")]
    if vetoes:
        parts += [Text(""), Text.from_markup("[b u]Triage history[/b u]")]
        for h in vetoes[-5:]:
            detail = h.get("detail") or {}
            reason = detail.get("reason") or ", ".join(sorted(detail.get("fields", {}))) or ""
            parts.append(Text(f"{h['action']} by {h['source']}: {reason}"))
    nov = idea.novelty or {}
    parts += [Text(""), Text.from_markup(f"[b u]Novelty[/b u]  {novelty_verdict(nov)}")]
    if nov.get("rationale"):
        parts.append(Text(str(nov["rationale"]).strip(), style="italic"))
    queries = nov.get("queries") or []
    if queries:
        n = len(queries)
        parts.append(Text.from_markup(f"[b]Queries[/b] ({n} round{'' if n == 1 else 's'})"))
        for q in queries:
            parts.append(Text(f"  • {q}"))
    papers = nov.get("papers") or []
    if papers:
        parts.append(Text.from_markup(f"[b]Papers found[/b] ({len(papers)})"))
        for p in papers[:MAX_PAPERS]:
            if isinstance(p, dict):
                year = p.get("year") or "n.d."
                cites = p.get("citation_count")
                extra = f", {cites} cit." if cites is not None else ""
                parts.append(Text(f"  • {p.get('title', '?')} ({year}{extra})"))
            else:
                parts.append(Text(f"  • {p}"))
        if len(papers) > MAX_PAPERS:
            parts.append(Text(f"  … and {len(papers) - MAX_PAPERS} more", style="dim"))
    return Group(*parts)


class IdeaDetail(VerticalScroll, can_focus=False):
    """Scrollable detail of one idea."""

    def compose(self) -> ComposeResult:
        yield Static("select an idea", id="idea-detail-body")

    def show(self, idea: IdeaRow | None, history: list[dict[str, Any]],
             stage: tuple[str, str] = ("", "")) -> None:
        body = self.query_one("#idea-detail-body", Static)
        body.update(render_idea(idea, history, stage) if idea else "select an idea")
