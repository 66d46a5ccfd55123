"""The NeurIPS-style review of the selected idea's paper, with the ensemble's spread,
and the results-integrity findings.

Reads ``review.json`` (the meta-review / averaged scores at top level; individual
reviewer forms under ``reviews``) and ``integrity.json`` (a list of findings) from the
idea directory. Both are re-read only when their mtime changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aisci.tui.lab_data import read_json
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

SCORES = (("Originality", 4), ("Quality", 4), ("Clarity", 4), ("Significance", 4),
          ("Soundness", 4), ("Presentation", 4), ("Contribution", 4), ("Overall", 10),
          ("Confidence", 5))
LISTS = ("Strengths", "Weaknesses", "Questions", "Limitations")
_ENSEMBLE_KEYS = ("reviewers", "reviews", "individual_reviews")


def ensemble(review: dict[str, Any]) -> list[dict[str, Any]]:
    for key in _ENSEMBLE_KEYS:
        val = review.get(key)
        if isinstance(val, list):
            return [r for r in val if isinstance(r, dict)]
    return []


def spread(reviews: list[dict[str, Any]], field: str) -> tuple[float, float] | None:
    values = [r[field] for r in reviews
              if isinstance(r.get(field), int | float) and not isinstance(r.get(field), bool)]
    return (min(values), max(values)) if values else None


def _bar(value: float, top: int, width: int = 10) -> Text:
    filled = max(0, min(width, round(value / top * width)))
    return Text("█" * filled + "░" * (width - filled),
                style="green" if value / top >= 0.6 else "yellow" if value / top >= 0.4 else "red")


def scorecard_of(data: Any) -> dict[str, Any] | None:
    """The scorecard form: ``review.json``'s ``review`` object (engine format) or the
    top-level object (the reference's single-review format)."""
    if not isinstance(data, dict):
        return None
    inner = data.get("review")
    return inner if isinstance(inner, dict) else data


def render_review(data: dict[str, Any] | None,
                  findings: list[dict[str, Any]] | None, view: int = 0) -> RenderableType:
    """``view`` 0 is the meta-review with the ensemble's spread; ``i`` > 0 is reviewer
    ``i``'s own form (scores and free text)."""
    review = scorecard_of(data)
    reviews = ensemble(data) if isinstance(data, dict) else []
    several = len(reviews) > 1
    if review is not None and 0 < view <= len(reviews):
        review, who = reviews[view - 1], f"reviewer {view} of {len(reviews)}"
        reviews = []  # one reviewer: no spread
    else:
        who = f"meta-review of {len(reviews)} reviewers" if several else "1 reviewer"
    if review is None:
        parts: list[RenderableType] = [Text("no review yet", style="dim")]
    else:
        decision = str(review.get("Decision", "—"))
        head = Text.assemble(
            ("Overall ", "bold"), (str(review.get("Overall", "—")), "bold"), " / 10   ",
            ("Decision ", "bold"),
            (decision, "bold green" if decision.lower().startswith("accept") else "bold red"),
            f"   {who}",
            ("   r: next reviewer" if several else "", "dim"))
        table = Table(box=None, padding=(0, 1), expand=False)
        table.add_column("Score")
        table.add_column("Value", justify="right")
        table.add_column("")
        table.add_column("Spread" if len(reviews) > 1 else "", justify="right")
        for field, top in SCORES:
            val = review.get(field)
            if not isinstance(val, int | float) or isinstance(val, bool):
                continue
            rng = spread(reviews, field)
            rng_text = f"{rng[0]:g}–{rng[1]:g}" if rng and len(reviews) > 1 else ""
            table.add_row(field, f"{val:g}/{top}", _bar(float(val), top), rng_text)
        parts = [head, table]
        if review.get("Ethical Concerns"):
            parts.append(Text("Ethical concerns flagged", style="bold red"))
        if review.get("Summary"):
            parts += [Text("Summary", style="bold underline"), Text(str(review["Summary"]))]
        for name in LISTS:
            items = review.get(name) or []
            if items:
                parts.append(Text(name, style="bold underline"))
                parts += [Text(f"  • {item}") for item in items]
    parts.append(Text(""))
    parts.append(Text("Integrity findings", style="bold underline"))
    if findings is None:
        parts.append(Text("integrity check not run yet", style="dim"))
    elif not findings:
        parts.append(Text("no findings: every number traced to a run", style="green"))
    else:
        for f in findings:
            kind = str(f.get("kind") or "finding")
            low = f.get("severity") == "low"
            msg = f.get("message") or f.get("detail") or f.get("claim") or str(f)
            where = f.get("location") or f.get("where") or ""
            quote = " ".join(str(f.get("quote") or "").split())[:80]
            style = "dim" if low else (
                "bold red" if kind in ("causality", "wrong_direction") else "yellow")
            parts.append(Text.assemble(
                (f"  {kind}{' (low)' if low else ''} ", style),
                (f"\u201c{quote}\u201d " if quote else "", "italic"),
                str(msg), (f"  ({where})" if where else "", "dim")))
    return Group(*parts)


class Scorecard(VerticalScroll):
    BINDINGS = [Binding("r", "next_reviewer", "Next reviewer", id="next-reviewer")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key: tuple[object, ...] | None = None
        self._data: dict[str, Any] | None = None
        self._findings: list[dict[str, Any]] | None = None
        self.view = 0
        """0: meta-review; i: reviewer i's own form."""

    def action_next_reviewer(self) -> None:
        n = len(ensemble(self._data or {}))
        if n < 2:
            self.notify("this review has a single reviewer", severity="information")
            return
        self.view = (self.view + 1) % (n + 1)
        self._show_view()

    def _show_view(self) -> None:
        self.query_one("#scorecard-body", Static).update(
            render_review(self._data, self._findings, self.view))

    def compose(self) -> ComposeResult:
        yield Static("select an idea", id="scorecard-body")

    def show_dir(self, directory: Path | None) -> None:
        """Re-render when review.json / integrity.json changed since last time."""
        if directory is None:
            key: tuple[object, ...] = (None,)
        else:
            key = (directory, *(_mtime(directory / n) for n in ("review.json", "integrity.json")))
        if key == self._key:
            return
        if self._key is None or key[0] != self._key[0]:
            self.view = 0  # another idea: start from its meta-review
        self._key = key
        body = self.query_one("#scorecard-body", Static)
        if directory is None:
            self._data = self._findings = None
            body.update("select an idea")
            return
        review = read_json(directory / "review.json")
        integrity = read_json(directory / "integrity.json")
        if isinstance(integrity, dict):
            integrity = integrity.get("findings", [])
        self._findings = [f for f in integrity if isinstance(f, dict)] if isinstance(
            integrity, list) else None
        self._data = review if isinstance(review, dict) else None
        if self.view > len(ensemble(self._data or {})):
            self.view = 0
        self._show_view()


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
