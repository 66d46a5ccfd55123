"""The LaTeX compile loop: latexmk (or pdflatex + bibtex + pdflatex x2) and chktex run
under the executor with the compile time limit, in the idea's ``latex/`` folder; every
problem (TeX errors trimmed from the log, undefined citations, missing figures, chktex)
goes back to the model for a bounded number of fix rounds.

Every successful compile is kept as ``latex/draft-<n>.pdf`` (n increasing, never
overwritten), so a failing later attempt never loses an earlier good PDF.

LLM steps (stage given by the caller, ``write`` by default), for cassettes:
  ``<prefix>/fix-<n>/turn-<k>``   fix round n (edit tools on latex/*.tex, *.bib)
"""

from __future__ import annotations

import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import run_tool_loop
from aisci.engine.errors import StageError
from aisci.engine.events import StageProgress
from aisci.engine.lab import safe_files
from aisci.engine.llm.base import Message
from aisci.engine.paper.lint import (
    CHKTEX_DISABLED,
    LatexProblem,
    blg_problems,
    lint_source,
    log_problems,
    parse_chktex,
    trim_log,
)
from aisci.engine.run.executor import Executor, RunSpec

MAIN_TEX = "template.tex"
DRAFT_RE = re.compile(r"^draft-(\d+)\.pdf$")
CHKTEX_TIMEOUT_S = 60.0


TEX_MISSING_NOTICE = (
    "TeX is not installed, so no PDF was made: the LaTeX source is kept in each idea's "
    "latex/ folder and reviewed as text. For PDFs install TeX Live (Debian/Ubuntu: "
    "`sudo apt-get install texlive-latex-extra texlive-fonts-recommended "
    "texlive-bibtex-extra latexmk chktex`, or `aisci setup`) and retry the write stage.")
"""Said once when the paper stage keeps the LaTeX without compiling it."""


class TexMissing(StageError):
    """No TeX installation: the stage stops, the .tex stays."""


def tex_available() -> bool:
    """Whether pdflatex can be run (the paper can be compiled to a PDF)."""
    return bool(shutil.which("pdflatex"))


def main_tex_path(idea_dir: Path) -> Path:
    return Path(idea_dir) / "latex" / MAIN_TEX


def drafts(latex_dir: Path) -> list[Path]:
    """The draft PDFs in ``latex_dir`` (regular files, no symlink followed; the folder is
    opened from the idea folder above it), oldest first."""
    latex_dir = Path(latex_dir)
    try:
        entries = safe_files.list_dir(latex_dir.parent, latex_dir.name)
    except OSError:  # no latex/ yet, or refused (a symlink)
        return []
    found = []
    for e in entries:
        m = DRAFT_RE.match(e.name)
        if m and e.kind == "file":
            found.append((int(m.group(1)), latex_dir / e.name))
    return [p for _, p in sorted(found)]


def latest_draft(latex_dir: Path) -> Path | None:
    d = drafts(latex_dir)
    return d[-1] if d else None


def _next_draft(latex_dir: Path) -> Path:
    last = latest_draft(latex_dir)
    m = DRAFT_RE.match(last.name) if last else None  # drafts() lists matching names only
    n = int(m.group(1)) + 1 if m else 1
    return Path(latex_dir) / f"draft-{n}.pdf"


def tex_toolchain() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in ("latexmk", "pdflatex", "bibtex", "chktex")}


@dataclass
class CompileResult:
    ok: bool
    draft: Path | None
    """The draft-<n>.pdf kept from this compile (None when it failed)."""
    problems: list[LatexProblem]
    log_excerpt: str
    status: str
    duration_s: float


class LatexCompiler:
    """Compiles one idea's latex/ folder under the executor."""

    def __init__(self, settings: Any, executor: Any, *, idea_id: int | None = None,
                 main: str = MAIN_TEX) -> None:
        self.settings = settings
        self.executor = executor
        self.idea_id = idea_id
        self.main = main
        self._attempt = 0

    def check_toolchain(self) -> dict[str, str | None]:
        tools = tex_toolchain()
        if not tools["pdflatex"]:
            raise TexMissing("pdflatex not found: install TeX Live (e.g. apt-get install "
                             "texlive-latex-extra texlive-fonts-recommended latexmk chktex); "
                             "the .tex file is kept")
        return tools

    def _spec(self, argv: list[str], latex_dir: Path, run: str, limit_s: float,
              kind: str = "latex", ok_exit_codes: tuple[int, ...] = (0,)) -> Any:
        log = latex_dir.parent / "logs" / f"{run}.log"
        # The idea folder is bound (not only latex/) so figures referenced as ../fig.png
        # are visible inside the sandbox, which masks /tmp and the user's home; TeX's own
        # openout_any=p still keeps its writes inside latex/. max_print_line keeps TeX
        # from wrapping log lines at 79 characters.
        return RunSpec(argv=argv, cwd=latex_dir, log_path=log, limit_s=limit_s, kind=kind,
                       run=run, attempt=self._attempt, idea_id=self.idea_id,
                       writable=[latex_dir.parent], env={"max_print_line": "10000"},
                       ok_exit_codes=ok_exit_codes)

    async def chktex(self, latex_dir: Path) -> list[LatexProblem]:
        if not shutil.which("chktex"):
            return []
        root, out = latex_dir.parent, f"{latex_dir.name}/chktex.out"
        safe_files.remove(root, out)
        argv = ["chktex", "-q", "-I0", *(f"-n{n}" for n in CHKTEX_DISABLED),
                "-f%l:%c:%n:%m\n", "-o", "chktex.out", self.main]
        # chktex exits 2 when it printed warnings: a result, not a failure of the tool.
        await self.executor.run(self._spec(argv, latex_dir, "chktex", CHKTEX_TIMEOUT_S, "check",
                                           ok_exit_codes=(0, 2)))
        return parse_chktex(_read(root, out))

    async def compile(self, latex_dir: Path) -> CompileResult:
        """One full compile; a success is copied to the next draft-<n>.pdf."""
        tools = self.check_toolchain()
        latex_dir = Path(latex_dir)
        self._attempt += 1
        stem = Path(self.main).stem
        root, rel_dir = latex_dir.parent, latex_dir.name
        pdf = f"{rel_dir}/{stem}.pdf"
        started = time.time()
        limit = self.settings.writeup.compile_timeout_s
        safe_files.remove(root, pdf)  # a stale PDF must never pass for this compile's result
        if tools["latexmk"]:
            steps = [["latexmk", "-pdf", "-g", "-bibtex",
                      "-pdflatex=pdflatex -interaction=nonstopmode -halt-on-error %O %S",
                      self.main]]
        else:
            pdflatex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", self.main]
            steps = [pdflatex, ["bibtex", stem], pdflatex, pdflatex]
        status, problems = "ok", []
        for argv in steps:
            remaining = limit - (time.time() - started)
            if remaining <= 1:
                status = "timeout"
                break
            res = await self.executor.run(self._spec(argv, latex_dir, "latex", remaining))
            if res.status in ("timeout", "killed", "interrupted"):
                status = res.status
                problems.append(LatexProblem("timeout", f"{argv[0]} {res.status}: {res.reason}"))
                break
            if res.status != "ok" and argv[0] != "bibtex":
                status = "failed"
                break
        log_text = _read(root, f"{rel_dir}/{stem}.log")
        problems += log_problems(log_text) + blg_problems(_read(root, f"{rel_dir}/{stem}.blg"))
        try:
            st = safe_files.lstat(root, pdf)
            made = stat.S_ISREG(st.st_mode) and st.st_mtime >= started - 1
        except OSError:
            made = False
        ok = status == "ok" and made
        if not ok and not any(p.kind == "tex_error" for p in problems) and status != "timeout":
            problems.append(LatexProblem("tex_error", f"compile {status} without a TeX error "
                                         f"message; see logs/latex.log"))
        draft = None
        if ok:
            draft = _next_draft(latex_dir)
            try:
                safe_files.copy_file(root, pdf, root, f"{rel_dir}/{draft.name}",
                                     limit=safe_files.MAX_PDF_BYTES)
            except OSError as exc:  # refused (a symlink, a hard link, too large) or gone
                ok, draft = False, None
                problems.append(LatexProblem("tex_error", f"the compiled PDF is not kept: {exc}"))
        return CompileResult(ok, draft, problems, trim_log(log_text), status,
                             time.time() - started)


@dataclass
class CompileOutcome:
    ok: bool
    """The last compile succeeded with no blocking problem left."""
    draft: Path | None
    """The newest draft PDF (may be from an earlier compile when the last one failed)."""
    problems: list[LatexProblem] = field(default_factory=list)
    fix_rounds: int = 0
    compiles: int = 0
    compiled_any: bool = False
    """At least one compile of this loop produced a draft."""
    tex_missing: bool = False
    """TeX is not installed: the source was linted, not compiled (no new PDF)."""


def format_problems(problems: list[LatexProblem], limit: int = 40) -> str:
    lines = [p.format() for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"[... {len(problems) - limit} more problems]")
    return "\n".join(lines) or "(none)"


async def compile_with_fixes(ctx: Any, idea_id: int, *, stage: str = "write",
                             step_prefix: str | None = None) -> CompileOutcome:
    """Lint + compile; feed every problem back to the model through the edit tools for
    at most ``writeup.compile_fix_rounds`` rounds (style-only problems: at most
    ``writeup.chktex_rounds``). Without TeX the source is only linted and the outcome
    says ``tex_missing`` (the caller keeps the LaTeX and says how to get PDFs)."""
    row = ctx.idea(idea_id)
    idea_dir = ctx.idea_dir(row)
    latex_dir = idea_dir / "latex"
    prefix = step_prefix or row.name
    if not tex_available():
        return CompileOutcome(False, latest_draft(latex_dir), lint_source(latex_dir),
                              tex_missing=True)
    executor = ctx.executor
    if executor is None:
        executor = Executor(ctx.settings, ctx.bus, ctx.store)
    compiler = LatexCompiler(ctx.settings, executor, idea_id=idea_id)
    w = ctx.settings.writeup
    fix_round = style_rounds = compiles = 0
    compiled_any = False
    while True:
        problems = lint_source(latex_dir)
        problems += await compiler.chktex(latex_dir)
        result = await compiler.compile(latex_dir)
        compiles += 1
        compiled_any = compiled_any or result.ok
        problems = result.problems + problems
        blocking = [p for p in problems if p.blocking]
        ctx.publish(StageProgress(
            idea_id=idea_id, stage=stage,
            message=f"LaTeX compile {compiles}: {'ok' if result.ok else result.status}, "
                    f"{len(blocking)} error(s), {len(problems) - len(blocking)} warning(s)"))
        style_only = result.ok and not blocking
        done = style_only and (not problems or style_rounds >= w.chktex_rounds)
        if done or fix_round >= w.compile_fix_rounds:
            break
        fix_round += 1
        if style_only:
            style_rounds += 1
        prompt = ctx.prompts.render(
            "write_fix", problems=format_problems(problems),
            log=result.log_excerpt or "(no errors in the TeX log)",
            status="compiled" if result.ok else f"did not compile ({result.status})")
        loop = await run_tool_loop(
            ctx.stage_llm(stage, idea_id), system=ctx.prompts.render("write_system"),
            messages=[Message(role="user", text=prompt)],
            tools=EditTools.for_stage(idea_dir, "write"), step=f"{prefix}/fix-{fix_round}",
            max_turns=ctx.settings.experiment.max_tool_turns)
        if not loop.changed:
            break  # the model changed nothing: compiling again would give the same result
    ok = result.ok and not any(p.blocking for p in problems)
    return CompileOutcome(ok, latest_draft(latex_dir), problems, fix_round, compiles,
                          compiled_any)


def _read(root: Path, rel: str) -> str:
    """A TeX log or tool output in the idea folder (bounded, no symlink); "" when absent
    or refused."""
    try:
        return safe_files.read_text(root, rel, truncate=True, errors="replace")
    except OSError:
        return ""
