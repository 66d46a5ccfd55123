"""The results-integrity stage: scan the paper against the runs, give the findings to
the model for a bounded correction round, re-compile, and store what remains in
``<idea_dir>/integrity.json`` (shown in the TUI scorecard and in review.json).

LLM steps (stage ``integrity``), for cassettes:
  ``<name>/integrity-fix-<r>/turn-<k>``   correction round r (edit tools on latex/*.tex)
  ``<name>/integrity-fix-<r>/fix-<n>/turn-<k>``   compile fix rounds after correction r
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.lab import safe_files
from aisci.engine.lab.templates import TemplateInfo, check_argv, find_template
from aisci.engine.llm.base import Message
from aisci.engine.paper.integrity_checks import (
    INTEGRITY_FILE,
    Finding,
    format_findings,
    load_findings,
    scan,
)
from aisci.engine.paper.latex import compile_with_fixes, main_tex_path
from aisci.engine.paper.run_facts import environment_summary, load_run_facts, results_summary
from aisci.engine.run.executor import RunSpec
from aisci.engine.stages import causality
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome

CAUSALITY_FILE = "causality.json"
CAUSALITY_TIMEOUT_S = 600.0

__all__ = ["Finding", "IntegrityOutcome", "IntegrityReport", "check_integrity", "scan_paper",
           "load_findings"]


@dataclass(kw_only=True)
class IntegrityOutcome(StageOutcome):
    findings: list[Finding] = field(default_factory=list)
    """What remains after the correction rounds (also in integrity.json)."""

    def __post_init__(self) -> None:
        self.summary = self.summary or f"{len(self.findings)} finding(s)"


@dataclass
class IntegrityReport:
    findings: list[Finding] = field(default_factory=list)
    numbers_checked: int = 0
    causality: dict[str, Any] | None = None
    tex_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for f in self.findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        return {"findings": [f.to_dict() for f in self.findings], "by_kind": by_kind,
                "numbers_checked": self.numbers_checked, "causality": self.causality,
                "tex_sha256": self.tex_sha256, "checked_at": time.time()}


def scan_paper(tex_path: Path, idea_dir: Path, *, lower_is_better: list[str] | None = None,
               higher_is_better: list[str] | None = None) -> IntegrityReport:
    """Run every deterministic check on one .tex file (inside ``idea_dir``; read without
    following symlinks, bounded). No LLM, no side effects. The same code as ``aisci
    check`` (paper/integrity_checks.scan)."""
    result = scan(idea_dir, _rel(tex_path, idea_dir), lower_is_better=lower_is_better,
                  higher_is_better=higher_is_better)
    return IntegrityReport(result.findings, result.numbers_checked, None, result.tex_sha256)


def _rel(path: Path, idea_dir: Path) -> str:
    """``path`` relative to the idea folder (a path outside it is refused when used)."""
    p, root = Path(os.path.abspath(path)), Path(os.path.abspath(idea_dir))
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def _line_key(location: str) -> int:
    m = re.search(r":(\d+)$", location)
    return int(m.group(1)) if m else 0


async def run_causality_check(ctx: StageContext, idea_id: int,
                              template: TemplateInfo | None) -> dict[str, Any] | None:
    """The template checker's verdict on the idea's final code (nanogpt's causality
    check): the one the experiment stage recorded, while ``experiment.py`` is still the
    code it judged; otherwise the checker runs once more under the executor. The verdict
    comes from the store, never from the idea folder (its runs may have written any file
    there); causality.json is a copy for people to read."""
    idea_dir = ctx.idea_dir(idea_id)
    result = causality.current(ctx.store, idea_id, idea_dir)
    check = template.check_command if template is not None else None
    if result is None and check and template is not None and ctx.executor is not None:
        log_rel = "logs/check_integrity.log"
        code = causality.code_digest(idea_dir)
        since = causality.log_size(idea_dir, log_rel)
        res = await ctx.executor.run(RunSpec(
            argv=check_argv(list(check), Path(template.path), idea_dir), cwd=idea_dir,
            log_path=idea_dir / log_rel, limit_s=CAUSALITY_TIMEOUT_S, kind="check",
            run="integrity-check", idea_id=idea_id))
        causal, verdict = causality.verdict_from_check(
            idea_dir, log_rel, since=since, status=res.status, exit_code=res.exit_code,
            reason=res.reason)
        result = causality.record(ctx.store, idea_id, causal=causal, verdict=verdict,
                                  source=log_rel, code=code)
    if result is None:
        return None
    result = {"causal": result.get("causal"), "verdict": result.get("verdict"),
              "source": result.get("source")}
    safe_files.write_text(idea_dir, CAUSALITY_FILE, json.dumps(result, indent=2))
    return result


def _causality_finding(causality: dict[str, Any] | None) -> list[Finding]:
    if not causality or causality.get("causal") is not False:
        return []
    detail = json.dumps(causality.get("verdict", {}))[:300]
    return [Finding("causality", "the model leaks future tokens (causality check failed): "
                    "its reported losses are not valid", CAUSALITY_FILE, detail)]


async def check_integrity(ctx: StageContext, idea_id: int) -> IntegrityOutcome:
    """Scan, correct through the model (bounded rounds), re-compile, store, return what
    remains. Resumable: a paper already checked with the same text is not re-done."""
    row = ctx.idea(idea_id)
    idea_dir = ctx.idea_dir(row)
    tex_path = main_tex_path(idea_dir)
    tex_rel = _rel(tex_path, idea_dir)
    if not safe_files.is_file(idea_dir, tex_rel):
        raise FileNotFoundError(f"{tex_path}: no paper to check (run the write stage first)")
    sha = hashlib.sha256(safe_files.read_bytes(idea_dir, tex_rel,
                                               safe_files.MAX_TEXT_BYTES)).hexdigest()
    stored = _read_report(idea_dir)
    if stored and stored.get("tex_sha256") == sha and stored.get("final"):
        return IntegrityOutcome(findings=load_findings(idea_dir))
    template = _template(ctx, row.template)
    lower = list(template.lower_is_better) if template is not None else []
    higher = list(template.higher_is_better) if template is not None else []
    causality = await run_causality_check(ctx, idea_id, template)
    report = scan_paper(tex_path, idea_dir, lower_is_better=lower, higher_is_better=higher)
    rounds = ctx.settings.writeup.integrity_correction_rounds
    for r in range(1, rounds + 1):
        if not report.findings:
            break
        changed = await _correct(ctx, idea_id, row.name, idea_dir, report.findings, r)
        if not changed:
            break
        report = scan_paper(tex_path, idea_dir, lower_is_better=lower, higher_is_better=higher)
    report.causality = causality
    report.findings += _causality_finding(causality)
    data = report.to_dict()
    data["final"] = True
    safe_files.write_text(idea_dir, INTEGRITY_FILE, json.dumps(data, indent=2))
    return IntegrityOutcome(findings=report.findings)


def _read_report(idea_dir: Path) -> dict[str, Any] | None:
    try:
        data = safe_files.read_json(idea_dir, INTEGRITY_FILE)
    except (OSError, ValueError):  # missing, invalid, or refused (safe_files.UnsafeFile)
        return None
    return data if isinstance(data, dict) else None


def _template(ctx: StageContext, template_name: str) -> TemplateInfo | None:
    """The idea's TemplateInfo, or None (then: name heuristics, no checker)."""
    try:
        return find_template(template_name, ctx.lab)
    except Exception:  # a deleted or renamed template must not block the paper
        return None


async def _correct(ctx: StageContext, idea_id: int, name: str, idea_dir: Path,
                   findings: list[Finding], r: int) -> bool:
    facts = load_run_facts(idea_dir)
    tools = EditTools(idea_dir, ["latex/*.tex"])
    prompt = ctx.prompts.render(
        "integrity_fix", findings=format_findings(findings),
        results=results_summary(facts), environment=environment_summary(facts))
    result = await run_tool_loop(
        ctx.stage_llm("integrity", idea_id), system=ctx.prompts.render("write_system"),
        messages=[Message(role="user", text=prompt)], tools=tools,
        step=f"{name}/integrity-fix-{r}", max_turns=ctx.settings.experiment.max_tool_turns)
    if not result.changed:
        return False
    await compile_with_fixes(ctx, idea_id, stage="integrity",
                             step_prefix=f"{name}/integrity-fix-{r}")
    return True
