"""The optional improve stage: the review and the open integrity findings go back to the
writer for one revision (edit tools on latex/*.tex), the paper is re-compiled and
re-reviewed. Both reviews are kept: ``review.json`` (before) and
``review-improved.json`` (after).

Resumable through the store (kv ``improve/<idea_id>``): a finished revision is not
redone; the re-review is skipped when ``review-improved.json`` matches the new draft.

LLM steps, for cassettes:
  stage ``improve``: ``<name>/revise/turn-<k>``, then ``<name>/improve/fix-<n>/turn-<k>``
  stage ``review``:  ``<name>/improved/reviewer-<k>`` (+ ``/reflect-<r>``),
                     ``<name>/improved/meta``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.lab import safe_files
from aisci.engine.llm.base import Message
from aisci.engine.paper.integrity_checks import format_findings, load_findings
from aisci.engine.paper.latex import compile_with_fixes, latest_draft
from aisci.engine.paper.run_facts import load_run_facts, results_summary
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome
from aisci.engine.stages.review import ReviewError, ReviewResult, review_paper

STAGE = "improve"
IMPROVED_REVIEW = "review-improved.json"


@dataclass(kw_only=True)
class ImproveOutcome(StageOutcome):
    """``ok``: the revised paper compiled."""

    before: ReviewResult
    after: ReviewResult | None = None
    """None when the revised paper did not compile or was not re-reviewed."""
    draft: Path | None = None

    def __post_init__(self) -> None:
        b = self.before.review
        if self.after is None:
            summary = f"revised; Overall {b.Overall}/10 (no re-review)"
        else:
            a = self.after.review
            summary = f"Overall {b.Overall} -> {a.Overall}/10, {b.Decision} -> {a.Decision}"
        self.summary = self.summary or summary
        if not self.ok and not self.reason:
            self.reason = ("the revised paper did not compile; the earlier draft and review "
                           "are kept")

    @property
    def compiled(self) -> bool:
        return self.ok


async def improve_paper(ctx: StageContext, idea_id: int) -> ImproveOutcome:
    row = ctx.idea(idea_id)
    idea_dir = ctx.idea_dir(row)
    review_path = idea_dir / "review.json"
    try:
        before = ReviewResult.from_json(safe_files.read_json(idea_dir, "review.json"))
    except (OSError, KeyError, ValueError, AttributeError, TypeError) as exc:
        raise ReviewError(f"{review_path}: no usable review to improve from ({exc}); "
                          "run the review stage first") from None
    key = f"improve/{idea_id}"
    progress = ctx.store.kv_get(key, {}) or {}
    if not progress.get("revised"):
        findings = load_findings(idea_dir)
        r = before.review
        prompt = ctx.prompts.render(
            "improve_revise", review=json.dumps(r.to_json(), indent=1),
            reviewers=len(before.reviewers), overall=r.Overall, decision=r.Decision,
            findings=format_findings(findings) or "(none)",
            results=results_summary(load_run_facts(idea_dir)))
        await run_tool_loop(
            ctx.stage_llm(STAGE, idea_id), system=ctx.prompts.render("write_system"),
            messages=[Message(role="user", text=prompt)],
            tools=EditTools(idea_dir, ["latex/*.tex"]), step=f"{row.name}/revise",
            max_turns=ctx.settings.experiment.max_tool_turns)
        progress["revised"] = True
        ctx.store.kv_set(key, progress)
    previous = before.pdf
    if not progress.get("compiled"):
        outcome = await compile_with_fixes(ctx, idea_id, stage=STAGE,
                                           step_prefix=f"{row.name}/improve")
        progress["compiled"] = outcome.ok
        progress["draft"] = outcome.draft.name if outcome.ok and outcome.draft else None
        ctx.store.kv_set(key, progress)
        if not outcome.ok:
            return ImproveOutcome(ok=False, before=before,
                                  draft=latest_draft(idea_dir / "latex"))
    draft = idea_dir / "latex" / progress["draft"] if progress.get("draft") else None
    if draft is None or not safe_files.is_file(idea_dir, f"latex/{draft.name}") \
            or draft.name == Path(previous).name:
        return ImproveOutcome(ok=bool(progress.get("compiled")), before=before, draft=draft)
    after = await review_paper(ctx, idea_id, out_name=IMPROVED_REVIEW, pdf=draft,
                               name=f"{row.name}/improved")
    return ImproveOutcome(ok=True, before=before, after=after, draft=draft)
