"""The novelty check: the model searches the literature round by round and decides
whether the idea is novel. The queries, the papers it saw and the verdict are stored as
evidence on the idea. Progress is saved after every round, so a resumed check continues
where it stopped (and asks the scripted provider the same ``<name>/round-<r>`` keys).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aisci.engine import events as ev
from aisci.engine.lab.templates import find_template
from aisci.engine.literature import Literature, LiteratureUnavailable, Paper
from aisci.engine.llm.base import LLMRequest, Message
from aisci.engine.stages import runtime as rt
from aisci.engine.stages.context import LiteratureSearch, StageContext
from aisci.engine.stages.contract import StageOutcome
from pydantic import BaseModel, ConfigDict, model_validator

ABSTRACT_CHARS = 1500
"""Abstract length kept as evidence and shown to the model."""


class NoveltyDeadline(LiteratureUnavailable):
    """The check passed ``novelty.deadline_s``; progress is saved, a retry continues."""


class NoveltyReply(BaseModel):
    """One round's answer: a search ``Query`` or a ``Decision`` with a ``Rationale``."""

    model_config = ConfigDict(extra="allow")
    Thought: str = ""
    Query: str | None = None
    Decision: str | None = None
    Rationale: str = ""

    @model_validator(mode="after")
    def _one_action(self) -> NoveltyReply:
        if self.Decision is not None:
            d = " ".join(self.Decision.lower().replace("_", " ").split())
            if "not novel" in d or d in ("no", "false"):
                self.Decision = "not novel"
            elif "novel" in d or d in ("yes", "true"):
                self.Decision = "novel"
            else:
                raise ValueError('Decision must be "novel" or "not novel"')
        elif not (self.Query or "").strip():
            raise ValueError('give either {"Query": ...} or {"Decision": ..., "Rationale": ...}')
        return self


@dataclass(kw_only=True)
class NoveltyResult(StageOutcome):
    """The verdict; "not novel" is a finished check too (``ok``), approval decides."""

    novel: bool
    rationale: str
    queries: list[str] = field(default_factory=list)
    papers: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    decided: bool = False

    @classmethod
    def from_evidence(cls, nov: dict[str, Any]) -> NoveltyResult:
        return cls(novel=bool(nov.get("novel")), rationale=str(nov.get("rationale", "")),
                   queries=list(nov.get("queries", [])), papers=list(nov.get("papers", [])),
                   rounds=int(nov.get("rounds", 0)), decided=bool(nov.get("decided")))


def format_results(papers: list[dict[str, Any]]) -> str:
    if not papers:
        return "No papers found."
    blocks = []
    for i, p in enumerate(papers):
        authors = ", ".join(p.get("authors") or []) or "unknown authors"
        cites = p.get("citation_count")
        blocks.append(
            f"{i}: {p.get('title')}. {authors}. {p.get('venue') or 'unknown venue'}, "
            f"{p.get('year') or 'n.d.'}.\n"
            f"Number of citations: {cites if cites is not None else 'unknown'}\n"
            f"Abstract: {p.get('abstract') or '(no abstract)'}")
    return "\n\n".join(blocks)


def _evidence_paper(p: Paper, round_no: int, query: str) -> dict[str, Any]:
    d = p.to_dict()
    d["abstract"] = d["abstract"][:ABSTRACT_CHARS]
    d["round"] = round_no
    d["query"] = query
    return d


def _literature(ctx: StageContext) -> LiteratureSearch:
    if ctx.literature is None:
        ctx.literature = Literature(ctx.settings, ctx.store, ctx.bus)
    return ctx.literature


async def check_novelty(ctx: StageContext, idea_id: int) -> NoveltyResult:
    """Run (or finish) the novelty check of one idea; returns the stored verdict."""
    row = ctx.idea(idea_id)
    stored = row.novelty or {}
    if stored.get("complete"):
        return NoveltyResult.from_evidence(stored)
    cfg = ctx.settings.novelty
    deadline = time.monotonic() + cfg.deadline_s
    try:
        task = rt.task_description(find_template(row.template, ctx.lab).path)
    except Exception:  # the verdict does not need the template; say what it is instead
        task = ""
    task = task or f"The {row.template} template."
    idea_json = json.dumps({k: v for k, v in row.data.items() if k != "novel"}, indent=1)
    system = ctx.prompts.render("novelty_system", num_rounds=cfg.max_rounds,
                                results_per_query=cfg.results_per_query, task_description=task)
    log: list[dict[str, Any]] = list(stored.get("log", []))
    papers: list[dict[str, Any]] = list(stored.get("papers", []))
    by_id = {p["paper_id"]: p for p in papers}

    # Rebuild the conversation from the saved rounds.
    messages = [Message(role="user", text=ctx.prompts.render(
        "novelty_first", idea=idea_json, num_rounds=cfg.max_rounds))]
    for saved in log:
        messages.append(Message(role="assistant", text=saved["reply"]))
        if saved.get("query") is not None and "results" in saved:
            messages.append(_round_message(ctx, saved["round"] + 1, cfg.max_rounds,
                                           saved["query"],
                                           [by_id[i] for i in saved["results"] if i in by_id]))

    llm = ctx.stage_llm("novelty", idea_id)
    decision: NoveltyReply | None = None
    for r in range(len(log) + 1, cfg.max_rounds + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoveltyDeadline(f"novelty check of {row.name!r} passed its "
                                  f"{cfg.deadline_s:.0f} s deadline at round {r}")
        request = LLMRequest(system=system, messages=list(messages), step=f"{row.name}/round-{r}")
        try:
            reply, resp = await asyncio.wait_for(llm.chat_json(request, NoveltyReply), remaining)
        except TimeoutError:
            raise NoveltyDeadline(f"novelty check of {row.name!r} passed its "
                                  f"{cfg.deadline_s:.0f} s deadline at round {r}") from None
        entry: dict[str, Any] = {"round": r, "reply": resp.text}
        messages.append(resp.as_message())
        if reply.Decision is not None:
            decision = reply
            entry["decision"] = reply.Decision
            log.append(entry)
            break
        query = (reply.Query or "").strip()
        entry["query"] = query
        if r < cfg.max_rounds:
            ctx.publish(ev.StageProgress(idea_id=idea_id, stage="novelty",
                                         message=f"round {r}/{cfg.max_rounds}: {query}"))
            try:
                found = await _literature(ctx).search(query, cfg.results_per_query,
                                                      deadline=deadline)
            except LiteratureUnavailable:
                _save(ctx, row.id, log, papers, complete=False)
                raise
            shown = [_evidence_paper(p, r, query) for p in found]
            for p in shown:
                if p["paper_id"] not in by_id:
                    by_id[p["paper_id"]] = p
                    papers.append(p)
            entry["results"] = [p["paper_id"] for p in shown]
            messages.append(_round_message(ctx, r + 1, cfg.max_rounds, query, shown))
        log.append(entry)
        _save(ctx, row.id, log, papers, complete=False)

    if decision is not None:
        result = NoveltyResult(novel=decision.Decision == "novel",
                               rationale=decision.Rationale or decision.Thought,
                               decided=True)
    else:
        result = NoveltyResult(novel=False, decided=False, rationale=(
            f"no decision after {cfg.max_rounds} rounds: treated as not novel"))
    result.queries = [e["query"] for e in log if e.get("query")]
    result.papers = papers
    result.rounds = len(log)
    _save(ctx, row.id, log, papers, complete=True, result=result)
    return result


def _round_message(ctx: StageContext, round_no: int, max_rounds: int, query: str,
                   shown: list[dict[str, Any]]) -> Message:
    note = (" This is the last round: you must give a Decision now."
            if round_no >= max_rounds else "")
    return Message(role="user", text=ctx.prompts.render(
        "novelty_round", round=round_no, num_rounds=max_rounds, final_note=note, query=query,
        results=format_results(shown)))


def _save(ctx: StageContext, idea_id: int, log: list[dict[str, Any]],
          papers: list[dict[str, Any]], *, complete: bool,
          result: NoveltyResult | None = None) -> None:
    evidence: dict[str, Any] = {
        "complete": complete, "log": log, "papers": papers,
        "queries": [e["query"] for e in log if e.get("query")], "rounds": len(log),
        "decided": bool(result and result.decided),
    }
    if result is None:
        ctx.store.update_idea(idea_id, novelty=evidence)
        return
    evidence.update(novel=result.novel, rationale=result.rationale, checked_at=time.time())
    row = ctx.idea(idea_id)
    status = "checked" if row.status == "proposed" else None
    verdict = "novel" if result.novel else "not novel"
    ctx.store.update_idea(idea_id, novelty=evidence, status=status, action="novelty_checked",
                          source="auto", detail={"novel": result.novel, "decided": result.decided,
                                                 "rounds": result.rounds,
                                                 "rationale": result.rationale[:500]})
    ctx.publish(ev.IdeaChanged(idea_id=idea_id, status=status or row.status,
                               detail=f"novelty: {verdict}"))
