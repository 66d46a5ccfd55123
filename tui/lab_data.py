"""Read-only views of the lab for the panes: idea rows, run results, review, figures.

Everything here reads the store or the idea's directory and returns plain data; no
widget state. Slow reads (git, PDF rendering) are called from worker threads. Files of an
idea folder are read through :mod:`aisci.engine.lab.safe_files` (no symlink followed, one
link, bounded), like the engine does: the folder is an experiment's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisci.engine.lab import layout, safe_files
from aisci.engine.lab.store import IdeaRow, LabStore, RunRow
from aisci.engine.stages import registry


def read_only_reason(lab: Path) -> str | None:
    """Why this process cannot change ``lab`` (a read-only mount, a colleague's folder,
    an unwritable aisci.db), or None when it can. The TUI then opens the lab as a viewer
    with its commands disabled."""
    return LabStore.read_only_reason(lab)


def idea_dir(lab: Path, idea: IdeaRow) -> Path:
    return layout.idea_dir(lab, idea.id, idea.name)


def read_json(path: Path, root: Path | None = None) -> Any:
    """JSON from ``path`` inside the idea folder ``root`` (default: the file's own folder),
    or None when missing, unreadable (still being written) or refused (a symlink, a hard
    link, larger than safe_files.MAX_JSON_BYTES)."""
    root = Path(root) if root is not None else Path(path).parent
    try:
        return safe_files.read_json(root, Path(path).relative_to(root).as_posix())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class IdeaSummary:
    id: int
    name: str
    title: str
    interestingness: Any
    feasibility: Any
    novelty_score: Any
    verdict: str
    status: str
    stage: str
    stage_state: str
    overall: str
    cost_usd: float


def novelty_verdict(novelty: dict[str, Any] | None) -> str:
    if not novelty:
        return "—"
    if novelty.get("unavailable"):
        return "lit. down"
    if not novelty.get("decided", True):
        return "undecided"
    return "novel" if novelty.get("novel") else "not novel"


def current_stage(idea: IdeaRow, stages: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """(stage, state) of an idea, as ``aisci status`` shows it
    (:func:`aisci.engine.stages.registry.current_stage`); the stage is "" when the idea
    has not started, went through every stage or was vetoed (state ``vetoed``)."""
    stage, state = registry.current_stage({n: d["state"] for n, d in stages.items()},
                                          vetoed=idea.status == "vetoed")
    return stage or "", state


def summarize(lab: Path, store: LabStore, idea: IdeaRow, cost: float) -> IdeaSummary:
    stage, state = current_stage(idea, store.stages(idea.id))
    review = read_json(idea_dir(lab, idea) / "review.json")
    overall = ""
    if isinstance(review, dict):
        form = review.get("review")
        val = (form if isinstance(form, dict) else review).get("Overall")
        overall = "" if val is None else str(val)
    d = idea.data
    return IdeaSummary(
        id=idea.id, name=idea.name, title=str(d.get("Title", "")),
        interestingness=d.get("Interestingness", ""), feasibility=d.get("Feasibility", ""),
        novelty_score=d.get("Novelty", ""), verdict=novelty_verdict(idea.novelty),
        status=idea.status, stage=stage, stage_state=state, overall=overall,
        cost_usd=cost)


# -- runs ---------------------------------------------------------------------------

def flat_metrics(info: Any) -> dict[str, float]:
    """``final_info.json`` ({dataset: {"means": {metric: v}}}) or a flat dict, flattened
    to ``dataset.metric -> value`` (dataset omitted when there is only one)."""
    if not isinstance(info, dict):
        return {}
    out: dict[str, float] = {}
    nested = {k: v for k, v in info.items() if isinstance(v, dict)}
    if nested:
        single = len(nested) == 1
        for ds, v in nested.items():
            means = v.get("means", v)
            if not isinstance(means, dict):
                continue
            for metric, val in means.items():
                if isinstance(val, int | float) and not isinstance(val, bool):
                    out[metric if single else f"{ds}.{metric}"] = float(val)
    else:
        for k, v in info.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = float(v)
    return out


@dataclass(frozen=True)
class RunSummary:
    run: str
    attempt: int
    status: str
    kind: str
    elapsed_s: float | None
    limit_s: float | None
    metrics: dict[str, float]
    log_path: Path | None
    reason: str
    exit_code: int | None = None


#: Linters whose non-zero exit means "found something", not "broke": chktex exits 2 when
#: it printed warnings (its warnings are fed to the next writing round).
WARNING_EXITS = {"chktex": frozenset({2})}


def run_status_label(r: RunSummary) -> str:
    """The status a person reads: a lint run that exited with its warnings code says
    ``warnings``, not ``failed``."""
    if r.status == "failed" and r.exit_code in WARNING_EXITS.get(r.run, frozenset()):
        return "warnings"
    return r.status


def run_number(run: str) -> int | None:
    if run.startswith("run_") and run[4:].isdigit():
        return int(run[4:])
    return None


def run_summaries(lab: Path, store: LabStore, idea: IdeaRow, now: float) -> list[RunSummary]:
    """The newest attempt of every run label of ``idea``, plus finished run folders that
    have no row (e.g. run_0 copied from the lab's baseline)."""
    base = idea_dir(lab, idea)
    newest: dict[str, RunRow] = {r.run: r for r in store.runs(idea.id)}
    out: list[RunSummary] = []
    labels = set(newest)
    try:
        entries = safe_files.list_dir(base)
    except OSError:
        entries = []
    for e in entries:
        if e.kind == "dir" and e.name.startswith("run_") and run_number(e.name) is not None:
            labels.add(e.name)

    def order(label: str) -> tuple[int, str]:
        n = run_number(label)
        return (n if n is not None else 10_000, label)

    for label in sorted(labels, key=order):
        row = newest.get(label)
        metrics = flat_metrics(read_json(base / label / "final_info.json", base))
        if not metrics and row is not None and row.metrics:
            metrics = flat_metrics(row.metrics)
        if row is None:
            out.append(RunSummary(label, 1, "ok" if metrics else "—", "experiment", None, None,
                                  metrics, _log(base, label, None), ""))
            continue
        elapsed: float | None = row.duration_s
        if row.status == "running" and row.started_at:
            elapsed = now - row.started_at
        out.append(RunSummary(label, row.attempt, row.status, row.kind, elapsed, row.limit_s,
                              metrics, _log(base, label, row.log_path), row.reason or "",
                              row.exit_code))
    return out


def _log(base: Path, label: str, recorded: str | None) -> Path | None:
    if recorded:
        p = Path(recorded)
        return p if p.is_absolute() else base / p
    guess = base / "logs" / f"{label}.log"
    return guess


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}:{s % 60:02d}"


def fmt_metric(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def metric_delta(name: str, value: float, baseline: dict[str, float],
                 lower_is_better: bool | None) -> str:
    """``value`` with its change vs the baseline, e.g. ``1.234 (−2.1%)``."""
    text = fmt_metric(value)
    base = baseline.get(name)
    if base is None or base == 0:
        return text
    pct = (value - base) / abs(base) * 100
    if value == base:
        return f"{text} (= baseline)"
    if abs(pct) < 0.05:  # "-0.0%" would read as no change; a tiny change keeps its sign
        return f"{text} ({pct:+.2g}%)"
    return f"{text} ({pct:+.1f}%)"


def guess_lower_is_better(metric: str) -> bool | None:
    m = metric.lower()
    if any(k in m for k in ("loss", "time", "kl", "error", "perplexity", "step")):
        return True
    if any(k in m for k in ("acc", "tokens_per", "score", "f1")):
        return False
    return None


# -- figures and paper ------------------------------------------------------------------

def figures(base: Path) -> list[Path]:
    """PNG figures the plot stage wrote into the idea directory (newest name order):
    regular files only, no symlink."""
    try:
        entries = safe_files.list_dir(base)
    except OSError:
        return []
    return [base / e.name for e in entries if e.kind == "file" and e.name.endswith(".png")]


def newest_draft(base: Path) -> Path | None:
    try:
        entries = safe_files.list_dir(base, "latex")
    except OSError:
        return None
    drafts = []
    for e in entries:
        if e.kind != "file" or not (e.name.startswith("draft-") and e.name.endswith(".pdf")):
            continue
        n = e.name[len("draft-"):-len(".pdf")]
        if n.isdigit():
            drafts.append((int(n), base / "latex" / e.name))
    return max(drafts)[1] if drafts else None


# -- the reader the panes use -------------------------------------------------------------

@dataclass(frozen=True)
class Spend:
    """LLM spend of the lab in dollars: total, per stage, per idea (None: lab-level)."""

    total: float
    by_stage: dict[str, float]
    by_idea: dict[int | None, float]
    unpriced_calls: int
    """Calls whose price is unknown (not in the total)."""


class LabReader:
    """The lab as the App and the panes see it: the store's rows and the idea folders,
    read-only. Nothing in the TUI reads the store except through this object."""

    def __init__(self, lab: Path, store: LabStore) -> None:
        self.lab = lab
        self._store = store

    def idea(self, idea_id: int) -> IdeaRow | None:
        return self._store.get_idea(idea_id)

    def folder(self, idea: IdeaRow) -> Path:
        return idea_dir(self.lab, idea)

    def summaries(self, ids: frozenset[int] | None = None) -> list[IdeaSummary]:
        """Table rows of every idea, or of ``ids`` (those that exist), in id order."""
        spend = self._store.spend_by("idea_id")
        ideas = self._store.list_ideas() if ids is None else [
            i for i in (self._store.get_idea(n) for n in sorted(ids)) if i is not None]
        return [summarize(self.lab, self._store, idea, spend.get(idea.id, 0.0))
                for idea in ideas]

    def history(self, idea_id: int) -> list[dict[str, Any]]:
        """Approve / veto / edit actions on the idea, oldest first."""
        return self._store.idea_history(idea_id)

    def stage(self, idea_id: int) -> tuple[str, str]:
        """(stage, state) the idea is in now; see :func:`current_stage`."""
        idea = self._store.get_idea(idea_id)
        return current_stage(idea, self._store.stages(idea_id)) if idea else ("", "")

    def stages_now(self) -> list[tuple[int, str, str, str]]:
        """(idea id, stage, state, reason) of every idea that has reached a stage; the
        reason is the recorded one of a failed or paused stage ("" otherwise)."""
        out = []
        for idea in self._store.list_ideas():
            stages = self._store.stages(idea.id)
            stage, state = current_stage(idea, stages)
            if stage:
                detail = stages.get(stage, {}).get("detail") or {}
                reason = detail.get("reason") or detail.get("error") or "" \
                    if isinstance(detail, dict) else ""
                out.append((idea.id, stage, state, str(reason)))
        return out

    def failed_stages(self) -> set[tuple[int | None, str]]:
        """(idea id, stage) of every stage on record as failed."""
        return {(i, stage) for i, stage, state, _ in self.stages_now() if state == "failed"}

    def runs(self, idea: IdeaRow, now: float) -> list[RunSummary]:
        return run_summaries(self.lab, self._store, idea, now)

    def running_runs(self) -> list[RunRow]:
        """Runs the store has as running (started before the TUI attached)."""
        return self._store.running_runs()

    def spend(self) -> Spend:
        return Spend(self._store.spend(), self._store.spend_by("stage"),
                     self._store.spend_by("idea_id"), self._store.unknown_cost_calls())
