"""The write stage: fill the template's LaTeX section by section from the recorded facts
only (notes.txt, the runs' final_info.json, the figures, run_env.json), sketch related
work, add citations from real search results, refine the whole paper, then lint and
compile with bounded fix rounds (engine.latex).

Resumable: every finished step is recorded in the store (kv ``writeup/<idea_id>``) and
committed to the idea's git repository; a restarted stage skips finished steps.

LLM steps (stage ``write``; each tool loop adds ``/turn-<k>``), for cassettes:
  ``<name>/section-<slug>/draft``      slug in title-abstract, introduction, background,
                                       method, experimental-setup, results, conclusion
  ``<name>/section-<slug>/refine-<i>`` i = 1..writeup.section_refinements
  ``<name>/section-related-work/draft``  related work sketch
  ``<name>/cite-<r>``  and  ``<name>/cite-<r>/insert``   citation round r (engine.citations)
  ``<name>/refine-paper``              whole-paper refinement
  ``<name>/fix-<n>``                   compile fix round n (engine.latex)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.events import StageProgress
from aisci.engine.lab import safe_files
from aisci.engine.lab.store import IdeaRow, LabStore
from aisci.engine.lab.templates import find_template
from aisci.engine.lab.workspace import IdeaWorkspace, WorkspaceError
from aisci.engine.llm.base import Message
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.paper.citations import Bibliography, citation_round
from aisci.engine.paper.latex import (
    MAIN_TEX,
    TEX_MISSING_NOTICE,
    CompileOutcome,
    compile_with_fixes,
    main_tex_path,
)
from aisci.engine.paper.lint import LatexProblem
from aisci.engine.paper.run_facts import (
    RESULTS_TABLE,
    environment_summary,
    figures,
    load_run_facts,
    notes,
    results_summary,
    results_table_tex,
)
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome

STAGE = "write"


@dataclass(frozen=True)
class SectionSpec:
    slug: str
    title: str
    placeholders: tuple[str, ...]


#: The reference's order: title+abstract, introduction, background, method,
#: experimental setup, results, conclusion.
SECTIONS = (
    SectionSpec("title-abstract", "title and abstract", ("TITLE HERE", "ABSTRACT HERE")),
    SectionSpec("introduction", "Introduction", ("INTRO HERE", "INTRODUCTION HERE")),
    SectionSpec("background", "Background", ("BACKGROUND HERE",)),
    SectionSpec("method", "Method", ("METHOD HERE",)),
    SectionSpec("experimental-setup", "Experimental Setup", ("EXPERIMENTAL SETUP HERE",)),
    SectionSpec("results", "Results", ("RESULTS HERE",)),
    SectionSpec("conclusion", "Conclusion", ("CONCLUSIONS HERE", "CONCLUSION HERE")),
)
RELATED = SectionSpec("related-work", "Related Work", ("RELATED WORK HERE",))


@dataclass(kw_only=True)
class WriteupOutcome(StageOutcome):
    """``ok``: a draft PDF was compiled by this stage (problems may remain, see
    ``problems``)."""

    draft: Path | None = None
    problems: list[LatexProblem] = field(default_factory=list)
    steps_done: list[str] = field(default_factory=list)
    citations_added: list[str] = field(default_factory=list)
    compile: CompileOutcome | None = None

    def __post_init__(self) -> None:
        left = [p for p in self.problems if p.blocking]
        tail = f"; {len(left)} problem(s) left, first: {left[0].format()}" if left else ""
        name = self.draft.name if self.draft else "no PDF"
        if self.compile is not None and self.compile.tex_missing:
            name = "LaTeX source kept without a PDF (TeX is not installed)"
        self.summary = self.summary or (
            f"{name}, {len(self.citations_added)} citation(s) added" + tail)[:300]
        if not self.ok and not self.reason:
            kept = f"; earlier draft kept: {self.draft.name}" if self.draft else ""
            self.reason = ("the paper did not compile within the fix rounds"
                           + (f": {left[0].format()}" if left else "") + kept)[:300]


class WriteupProgress:
    """Finished steps of one idea's writeup, kept in the store (survives a crash)."""

    def __init__(self, store: LabStore, idea_id: int) -> None:
        self.store = store
        self.key = f"writeup/{idea_id}"
        data = store.kv_get(self.key, {}) or {}
        self.done: list[str] = list(data.get("done", []))

    def has(self, step: str) -> bool:
        return step in self.done

    def mark(self, step: str) -> None:
        if step not in self.done:
            self.done.append(step)
            self.store.kv_set(self.key, {"done": self.done})

    def forget(self, prefix: str) -> None:
        """Unmark the steps starting with ``prefix`` (a retry runs them again)."""
        self.done = [s for s in self.done if not s.startswith(prefix)]
        self.store.kv_set(self.key, {"done": self.done})

    def reset(self) -> None:
        self.done = []
        self.store.kv_set(self.key, {"done": []})


def section_tips(prompts: PromptLibrary) -> dict[str, str]:
    raw = prompts.raw("write_section_tips")
    out: dict[str, str] = {}
    for m in re.finditer(r"^## (\S+)\n(.*?)(?=^## |\Z)", raw, re.MULTILINE | re.DOTALL):
        out[m.group(1)] = m.group(2).strip()
    return out


def ensure_latex(ctx: StageContext, row: IdeaRow, idea_dir: Path) -> Path:
    """latex/template.tex in the idea (copied from the template when the workspace did not;
    never through a symlink the experiment left in the idea folder)."""
    tex = main_tex_path(idea_dir)
    if safe_files.is_file(idea_dir, f"latex/{MAIN_TEX}"):
        return tex
    src = Path(find_template(row.template, ctx.lab).path) / "latex"
    if not (src / "template.tex").is_file():
        raise FileNotFoundError(f"{src / 'template.tex'}: the template has no paper skeleton")
    safe_files.copy_tree(src.parent, "latex", idea_dir, "latex")
    return tex


def _commit(idea_dir: Path, message: str) -> None:
    try:
        ws = IdeaWorkspace.open(idea_dir)
    except WorkspaceError:
        return  # not a git workspace (e.g. a bare folder in tests): nothing to version
    if ws.dirty():
        ws.commit(message, allow_empty=False)


class PaperWriter:
    """Runs the write stage for one idea; see the module docstring for the steps."""

    def __init__(self, ctx: StageContext, idea_id: int) -> None:
        self.ctx = ctx
        self.idea_id = idea_id
        self.row = ctx.idea(idea_id)
        self.name = self.row.name
        self.idea_dir = ctx.idea_dir(self.row)
        self.progress = WriteupProgress(ctx.store, idea_id)
        self.tips = section_tips(ctx.prompts)
        self.llm = ctx.stage_llm(STAGE, idea_id)
        self.system = ctx.prompts.render("write_system")
        self.max_turns = ctx.settings.experiment.max_tool_turns

    def _facts(self) -> dict[str, str]:
        rf = load_run_facts(self.idea_dir)
        figs = figures(self.idea_dir)
        data = self.row.data
        results = results_summary(rf)
        table = results_table_tex(rf, self._key_metrics())
        if table:
            # The recorded numbers as a ready table, true by construction; the paper
            # includes it instead of retyping numbers.
            safe_files.write_text(self.idea_dir, f"latex/{RESULTS_TABLE}", table)
            results += (f"\n\nA table of the key metric of every run is in latex/{RESULTS_TABLE} "
                        "(label tab:results): include it in the Results with "
                        f"\\input{{{RESULTS_TABLE.removesuffix('.tex')}}} and refer to it.")
        return {
            "title": str(data.get("Title", self.name)),
            "experiment": str(data.get("Experiment", "")),
            "notes": notes(self.idea_dir), "results": results,
            "figures": "\n".join(f"- {f}" for f in figs) or "(no figures)",
            "environment": environment_summary(rf),
        }

    def _key_metrics(self) -> list[str]:
        """The template's metrics in order of interest (higher-, then lower-is-better)."""
        try:
            t = find_template(self.row.template, self.ctx.lab)
        except Exception:  # a deleted or renamed template: the first recorded metric
            return []
        return [*t.higher_is_better, *t.lower_is_better]

    def _progress(self, message: str) -> None:
        self.ctx.publish(StageProgress(idea_id=self.idea_id, stage=STAGE, message=message))

    async def _loop(self, step: str, prompt: str, tools: EditTools | None = None) -> None:
        await run_tool_loop(self.llm, system=self.system,
                            messages=[Message(role="user", text=prompt)],
                            tools=tools or EditTools(self.idea_dir, ["latex/*.tex"]),
                            step=step, max_turns=self.max_turns)

    async def _step(self, step: str, prompt: str) -> None:
        """One tool-loop step, skipped when already finished (progress key = step)."""
        if self.progress.has(step):
            return
        self._progress(step)
        await self._loop(f"{self.name}/{step}", prompt)
        _commit(self.idea_dir, f"write: {step}")
        self.progress.mark(step)

    def _where(self, spec: SectionSpec, tex: str) -> str:
        present = [p for p in spec.placeholders if p in tex]
        if present:
            return ("Replace the placeholder(s) " + ", ".join(f"'{p}'" for p in present)
                    + " in latex/template.tex (and the %% FILL comments that follow it) with "
                    "the text.")
        return (f"The paper has no placeholder for the {spec.title}; view latex/template.tex "
                "and write it in the right place (add the section if it does not exist).")

    async def write_section(self, spec: SectionSpec, facts: dict[str, str]) -> None:
        tex = safe_files.read_text(self.idea_dir, f"latex/{MAIN_TEX}", errors="replace")
        await self._step(f"section-{spec.slug}/draft", self.ctx.prompts.render(
            "write_section", section=spec.title, where=self._where(spec, tex),
            tips=self.tips.get(spec.slug, ""), **facts))
        for i in range(1, self.ctx.settings.writeup.section_refinements + 1):
            await self._step(f"section-{spec.slug}/refine-{i}", self.ctx.prompts.render(
                "write_refine_section", section=spec.title, round=i))
        await self._placeholder_round(spec)

    def _unwritten(self) -> str:
        """"Method, Results" (the sections whose placeholder remains), or ""."""
        tex = self._tex()
        return ", ".join(spec.title for spec in (*SECTIONS, RELATED)
                         if placeholders_left(spec, tex))

    def _tex(self) -> str:
        return safe_files.read_text(self.idea_dir, f"latex/{MAIN_TEX}", errors="replace")

    async def _placeholder_round(self, spec: SectionSpec) -> None:
        """One bounded feedback round naming the section's placeholders still in the paper."""
        left = placeholders_left(spec, self._tex())
        if left:
            await self._step(f"section-{spec.slug}/placeholder", self.ctx.prompts.render(
                "write_placeholder", section=spec.title,
                placeholders=", ".join(f"'{p}'" for p in left)))

    async def citations(self) -> list[str]:
        lit = self.ctx.literature
        rounds = self.ctx.settings.writeup.citation_rounds
        if self.progress.has("citations") or rounds == 0:
            return []
        if lit is None:
            self._progress("citations skipped: no literature service configured")
            return []
        before = set(Bibliography(self.idea_dir / "latex").entries())
        for r in range(1, rounds + 1):
            step = f"cite-{r}"
            if self.progress.has(step):
                continue
            self._progress(f"citation round {r}/{rounds}")
            status = await citation_round(self.ctx, self.idea_id, self.name, self.idea_dir,
                                          r, rounds)
            if status == "unavailable":
                break  # not marked: a resumed stage retries the literature
            _commit(self.idea_dir, f"write: citations round {r}")
            if status == "done":
                self.progress.mark("citations")
                break
            self.progress.mark(step)
        else:
            self.progress.mark("citations")
        return sorted(set(Bibliography(self.idea_dir / "latex").entries()) - before)

    async def run(self) -> WriteupOutcome:
        ensure_latex(self.ctx, self.row, self.idea_dir)
        facts = self._facts()
        for spec in SECTIONS:
            await self.write_section(spec, facts)
        await self._step(f"section-{RELATED.slug}/draft", self.ctx.prompts.render(
            "write_related_sketch", title=facts["title"], experiment=facts["experiment"]))
        await self._placeholder_round(RELATED)
        added = await self.citations()
        await self._step("refine-paper", self.ctx.prompts.render(
            "write_refine_paper", results=facts["results"], environment=facts["environment"]))
        self._progress("compiling")
        outcome = await compile_with_fixes(self.ctx, self.idea_id, stage=STAGE,
                                           step_prefix=self.name)
        unwritten = self._unwritten()
        if outcome.tex_missing and not unwritten:
            # No TeX on this machine: the paper is the LaTeX source (reviewed as text);
            # done, with a notice saying how to get PDFs.
            _commit(self.idea_dir, "write: paper source (TeX not installed, not compiled)")
            return WriteupOutcome(ok=True, draft=outcome.draft, problems=outcome.problems,
                                  steps_done=list(self.progress.done),
                                  citations_added=added, compile=outcome,
                                  notice=TEX_MISSING_NOTICE)
        _commit(self.idea_dir, "write: paper source (TeX not installed)" if outcome.tex_missing
                else "write: compiled paper"
                + (f" ({outcome.draft.name})" if outcome.draft else " (compile failed)"))
        if unwritten and (outcome.compiled_any or outcome.tex_missing):
            # Compiled (or kept as source) but unfinished: not a paper to review. A retry
            # of the stage writes the unfinished sections again.
            for spec in (*SECTIONS, RELATED):
                if placeholders_left(spec, self._tex()):
                    self.progress.forget(f"section-{spec.slug}/")
            kept = f"; kept: latex/{MAIN_TEX}" + (
                f" and {outcome.draft.name}" if outcome.draft else "")
            return WriteupOutcome(ok=False, draft=outcome.draft, problems=outcome.problems,
                                  steps_done=list(self.progress.done), citations_added=added,
                                  compile=outcome, reason=(
                                      f"sections left as placeholders: {unwritten}"
                                      + kept)[:300])
        return WriteupOutcome(ok=outcome.compiled_any, draft=outcome.draft,
                              problems=outcome.problems, steps_done=list(self.progress.done),
                              citations_added=added, compile=outcome)


def placeholders_left(spec: SectionSpec, tex: str) -> list[str]:
    """The section's placeholders still in the paper, as a line of their own or as the
    title (where paper/lint.py flags them); a mention inside a comment does not count."""
    code = re.sub(r"(?<!\\)%[^\n]*", "", tex)
    return [p for p in spec.placeholders
            if re.search(rf"(?m)^\s*{re.escape(p)}\s*$|\\title\{{\s*{re.escape(p)}\s*\}}",
                         code)]


async def write_paper(ctx: StageContext, idea_id: int) -> WriteupOutcome:
    """The write stage (see the module docstring)."""
    return await PaperWriter(ctx, idea_id).run()
