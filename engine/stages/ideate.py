"""Idea generation: each new idea is a fresh conversation conditioned on the template
(task description and experiment code) and on the archive of earlier ideas (seed ideas
first) with their novelty verdicts, human veto reasons and review scores, refined over
draft + reflection rounds. Near-duplicates are rejected with a reason and counted; each
accepted idea is stored the moment it is final.

LLM steps are ``idea-<k>/round-<r>`` where k is the persisted 1-based attempt number of
this template in the lab, so a resumed batch asks the same keys (scripted cassettes).
"""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.errors import UsageError
from aisci.engine.lab import safe_files
from aisci.engine.lab.idea_schema import Idea
from aisci.engine.lab.store import IdeaRow
from aisci.engine.lab.templates import find_template
from aisci.engine.llm.base import LLMRequest, MalformedOutput, Message
from aisci.engine.resources import templates_dir
from aisci.engine.stages.context import StageContext
from pydantic import ValidationError

DONE_MARKER = "i am done"
#: Most archived ideas shown in one prompt (newest kept), so prompts stay bounded.
ARCHIVE_LIMIT = 150
#: Rejected ideas remembered per template for `aisci ideas show`/the TUI.
REJECT_LOG_LIMIT = 100


class IdeationError(UsageError):
    """The template cannot be used for ideation (missing files, bad JSON)."""


@dataclass
class TemplateSources:
    name: str
    path: Path
    system: str
    task_description: str
    code: str
    seeds: list[dict[str, Any]] = field(default_factory=list)


def resolve_template(template: str, lab: Path | None) -> tuple[str, Path]:
    """(name, directory) of a template: :func:`find_template`, else (a template.toml it
    refuses) the lab's templates/, the bundled templates/, or a path."""
    try:
        info = find_template(template, lab)
        return info.name, Path(info.path)
    except Exception:  # any lookup problem: fall back to the plain lookup below
        pass
    candidates = []
    if lab is not None:
        candidates.append(Path(lab) / "templates" / template)
    candidates += [templates_dir() / template, Path(template).expanduser()]
    for c in candidates:
        if (c / "experiment.py").is_file():
            return c.resolve().name, c.resolve()
    raise IdeationError(f"template {template!r}: no directory with experiment.py in "
                        f"{', '.join(str(c) for c in candidates)}")


def load_template_sources(template: str, lab: Path | None) -> TemplateSources:
    name, path = resolve_template(template, lab)
    prompt_file = path / "prompt.json"
    system, task = "", ""
    if prompt_file.is_file():
        try:
            prompt = json.loads(prompt_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IdeationError(f"{prompt_file}: invalid JSON ({exc})") from None
        system = str(prompt.get("system", ""))
        task = str(prompt.get("task_description", ""))
    seeds: list[dict[str, Any]] = []
    seed_file = path / "seed_ideas.json"
    if seed_file.is_file():
        try:
            raw = json.loads(seed_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IdeationError(f"{seed_file}: invalid JSON ({exc})") from None
        if not isinstance(raw, list):
            raise IdeationError(f"{seed_file}: expected a list of idea objects")
        seeds = [s for s in raw if isinstance(s, dict)]
    code = (path / "experiment.py").read_text(encoding="utf-8", errors="replace")
    return TemplateSources(name, path, system, task or f"The {name} template.", code, seeds)


def ensure_seed_ideas(ctx: StageContext, src: TemplateSources) -> list[int]:
    """Add the template's seed ideas (origin "seed") once per lab; returns new ids."""
    existing = ctx.store.list_ideas()
    if any(i.origin == "seed" and i.template == src.name for i in existing):
        return []
    names = {i.name for i in existing}
    added = []
    for seed in src.seeds:
        try:
            idea = Idea.model_validate(seed)
        except ValidationError:  # a bad seed is skipped, not fatal
            continue
        if idea.Name in names:
            continue
        iid = ctx.store.add_idea(idea.Name, src.name, dict(seed), origin="seed")
        names.add(idea.Name)
        added.append(iid)
        ctx.publish(ev.IdeaAdded(idea_id=iid, name=idea.Name, title=idea.Title))
    return added


# -- the archive ---------------------------------------------------------------------------

def veto_reason(ctx: StageContext, idea_id: int) -> str | None:
    """The reason of the latest veto in the idea's history, if it is vetoed."""
    for h in reversed(ctx.store.idea_history(idea_id)):
        if h["action"] == "vetoed":
            return str((h.get("detail") or {}).get("reason") or "") or None
    return None


def review_scores(ctx: StageContext, row: IdeaRow) -> dict[str, Any] | None:
    try:  # no symlink, bounded (safe_files): the idea folder is the experiment's
        review = safe_files.read_json(ctx.idea_dir(row), "review.json")
    except (OSError, ValueError):
        return None
    if not isinstance(review, dict):
        return None
    out = {k: review[k] for k in ("Overall", "Decision") if k in review}
    return out or None


def archive_entries(ctx: StageContext, template: str) -> list[dict[str, Any]]:
    """Earlier ideas of this template, seeds first, each with its outcome so far."""
    rows = [r for r in ctx.store.list_ideas() if r.template == template]
    rows.sort(key=lambda r: (r.origin != "seed", r.id))
    rows = rows[-ARCHIVE_LIMIT:] if len(rows) > ARCHIVE_LIMIT else rows
    out = []
    for r in rows:
        entry: dict[str, Any] = dict(r.data)
        entry.pop("novel", None)
        outcome: dict[str, Any] = {"status": r.status}
        if r.origin == "seed":
            outcome["seed"] = True
        nov = r.novelty or {}
        if nov.get("decided"):
            outcome["novelty"] = "novel" if nov.get("novel") else "not novel"
            if nov.get("rationale"):
                outcome["novelty_rationale"] = str(nov["rationale"])[:400]
        if r.status == "vetoed":
            outcome["veto_reason"] = veto_reason(ctx, r.id) or "(no reason given)"
        scores = review_scores(ctx, r)
        if scores:
            outcome["review"] = scores
        entry["outcome"] = outcome
        out.append(entry)
    return out


def render_archive(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(the archive is empty)"
    return "\n\n".join(f"Archived idea {i}:\n```json\n{json.dumps(e, indent=1)}\n```"
                       for i, e in enumerate(entries, 1))


# -- duplicates ----------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def _jaccard(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    return len(ta & tb) / len(ta | tb) if ta and tb else 0.0


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, " ".join(a.lower().split()),
                                   " ".join(b.lower().split())).ratio()


def duplicate_reason(idea: Idea, others: list[IdeaRow], threshold: float) -> str | None:
    """Why ``idea`` duplicates an archived idea, or None."""
    for o in others:
        if o.name == idea.Name:
            return f"same name as idea #{o.id} {o.name!r}"
        title = str(o.data.get("Title", ""))
        experiment = str(o.data.get("Experiment", ""))
        t_sim = max(_ratio(idea.Title, title), _jaccard(idea.Title, title))
        if t_sim >= threshold:
            return f"title {t_sim:.0%} similar to idea #{o.id} {o.name!r} ({title!r})"
        e_sim = max(_jaccard(idea.Experiment, experiment),
                    _ratio(idea.Experiment, experiment) if len(experiment) < 4000 else 0.0)
        if e_sim >= threshold:
            return f"experiment {e_sim:.0%} similar to idea #{o.id} {o.name!r}"
    return None


def _record_rejection(ctx: StageContext, template: str, k: int, idea: Idea | None,
                      reason: str) -> None:
    total = int(ctx.store.kv_get("ideation.rejected_duplicates", 0))
    key = f"ideation.{template}.rejected"
    log = list(ctx.store.kv_get(key, []))
    log.append({"attempt": k, "name": idea.Name if idea else None,
                "title": idea.Title if idea else None, "reason": reason})
    ctx.store.kv_set(key, log[-REJECT_LOG_LIMIT:])
    if idea is not None:
        ctx.store.kv_set("ideation.rejected_duplicates", total + 1)
    what = f"idea {idea.Name!r}" if idea else f"idea attempt {k}"
    ctx.publish(ev.Notice(level="warning", message=f"ideation: rejected {what}: {reason}"))


def rejected_count(ctx_or_store: Any) -> int:
    store = getattr(ctx_or_store, "store", ctx_or_store)
    return int(store.kv_get("ideation.rejected_duplicates", 0))


# -- generation ----------------------------------------------------------------------------

def _attempt_key(template: str) -> str:
    return f"ideation.{template}.next_attempt"


async def draft_idea(ctx: StageContext, src: TemplateSources, k: int) -> Idea:
    """Draft + reflections for attempt ``k``; raises MalformedOutput when the model never
    produced a valid idea."""
    rounds = ctx.settings.ideation.reflection_rounds
    llm = ctx.stage_llm("ideate", None)
    system = ctx.prompts.render("ideate_system", template_system=src.system,
                                task_description=src.task_description, code=src.code,
                                num_rounds=rounds)
    first = ctx.prompts.render("ideate_first",
                               archive=render_archive(archive_entries(ctx, src.name)),
                               num_rounds=rounds)
    messages = [Message(role="user", text=first)]
    idea: Idea | None = None
    for r in range(1, rounds + 1):
        if r > 1:
            messages.append(Message(role="user", text=ctx.prompts.render(
                "ideate_reflect", round=r, num_rounds=rounds)))
        request = LLMRequest(system=system, messages=list(messages), step=f"idea-{k}/round-{r}")
        try:
            parsed, resp = await llm.chat_json(request, Idea)
        except MalformedOutput:
            if idea is None:
                raise
            break  # keep the last valid draft
        idea = parsed
        messages.append(resp.as_message())
        ctx.publish(ev.StageProgress(idea_id=None, stage="ideate",
                                     message=f"idea {k}: round {r}/{rounds} {idea.Name}"))
        if DONE_MARKER in resp.text.lower():
            break
    assert idea is not None
    return idea


async def generate_ideas(ctx: StageContext, template: str, n: int) -> list[int]:
    """Generate up to ``n`` new ideas for ``template``; returns the ids stored.

    Bounded: at most ``n + max(3, n)`` attempts, so a model that keeps repeating itself
    cannot loop forever."""
    src = load_template_sources(template, ctx.lab)
    ensure_seed_ideas(ctx, src)
    key = _attempt_key(src.name)
    if ctx.store.kv_get(key) is None:
        generated = sum(1 for i in ctx.store.list_ideas()
                        if i.template == src.name and i.origin == "generated")
        ctx.store.kv_set(key, generated + 1)
    added: list[int] = []
    threshold = ctx.settings.ideation.duplicate_similarity
    for _ in range(n + max(3, n)):
        if len(added) >= n:
            break
        k = int(ctx.store.kv_get(key))
        try:
            idea = await draft_idea(ctx, src, k)
        except MalformedOutput as exc:
            _record_rejection(ctx, src.name, k, None, f"no valid idea JSON: {exc}")
            ctx.store.kv_set(key, k + 1)
            continue
        reason = duplicate_reason(idea, ctx.store.list_ideas(), threshold)
        if reason is None:
            data = idea.model_dump()
            try:
                iid = ctx.store.add_idea(idea.Name, src.name, data, origin="generated")
            except sqlite3.IntegrityError:
                reason = f"same name as an existing idea {idea.Name!r}"
            else:
                ctx.store.kv_set(key, k + 1)
                added.append(iid)
                ctx.publish(ev.IdeaAdded(idea_id=iid, name=idea.Name, title=idea.Title))
                continue
        _record_rejection(ctx, src.name, k, idea, reason)
        ctx.store.kv_set(key, k + 1)
    return added
