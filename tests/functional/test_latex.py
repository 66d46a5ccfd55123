"""The LaTeX compile loop: lint, compile under the executor, errors fed back, drafts kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.paper import latex as latex_mod
from aisci.engine.paper.latex import TexMissing, compile_with_fixes, drafts, latest_draft
from aisci.engine.paper.lint import lint_source, log_problems, trim_log
from aisci.engine.run.executor import Executor
from aisci.engine.stages.context import StageContext

needs_tex = pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")

GOOD = r"""\documentclass{article}
\usepackage{graphicx}
\graphicspath{{../}}
\begin{document}
\section{Results}
The loss is 1.12 \cite{power2022}.
\includegraphics[width=0.3\linewidth]{fig.png}
\bibliographystyle{plain}
\bibliography{references}
\end{document}
"""
BIB = "@article{power2022,\n  title={Grokking},\n  author={Power, A.},\n  journal={arXiv},\n  year={2022}\n}\n"


def make_ctx(tmp_path: Path, responses: list[dict], tex: str = GOOD, **writeup):
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea_id = store.add_idea("warm_restarts", "grokking", {"Name": "warm_restarts"})
    idea_dir = lab / "ideas" / f"{idea_id}-warm_restarts"
    (idea_dir / "latex").mkdir(parents=True)
    (idea_dir / "latex" / "template.tex").write_text(tex)
    (idea_dir / "latex" / "references.bib").write_text(BIB)
    import pymupdf  # a real PNG figure
    doc = pymupdf.open()
    doc.new_page(width=100, height=60).insert_text((10, 30), "fig")
    doc[0].get_pixmap().save(idea_dir / "fig.png")
    cassette = tmp_path / "cassette.json"
    cassette.write_text(json.dumps({"responses": responses}))
    settings = Settings.model_validate({
        "models": {"default": f"scripted:{cassette}"},
        "writeup": {"compile_timeout_s": 60, **writeup}})
    bus = EventBus()
    provider = ScriptedProvider(str(cassette))
    llm = LLMClient(settings, store, bus, provider_factory=lambda spec: provider)
    ctx = StageContext(lab, settings, store, bus, llm, PromptLibrary(lab),
                       executor=Executor(settings, bus, store))
    return ctx, idea_id, idea_dir, provider


def test_lint_finds_keys_figures_duplicates_underscores_placeholders(tmp_path):
    d = tmp_path / "latex"
    d.mkdir()
    (tmp_path / "fig.png").write_bytes(b"png")
    (d / "references.bib").write_text(BIB)
    (d / "template.tex").write_text(GOOD.replace(
        "The loss is", "METHOD HERE\n\\section{Results}\nThe val_loss $a_b$ \\texttt{x\\_y} is")
        .replace(r"\cite{power2022}", r"\cite{power2022,nobody2020}")
        .replace(r"\includegraphics[width=0.3\linewidth]{fig.png}",
                 "\\includegraphics{fig.png}\\includegraphics{fig}\\includegraphics{nofig.png}"))
    kinds = sorted(p.kind for p in lint_source(d))
    assert kinds == ["duplicate_figure", "duplicate_section", "missing_citation",
                     "missing_figure", "placeholder", "underscore"]


def test_log_trimmed_to_error_context_and_undefined_refs():
    log = ("This is pdfTeX\n(./template.tex\n" + "noise line\n" * 200 +
           "! Undefined control sequence.\nl.6 The loss is \\foo\n                 {1.12}\n"
           "Here is how much of TeX's memory you used:\n"
           "LaTeX Warning: Reference `fig:x' on page 1 undefined on input line 9.\n"
           "Package natbib Warning: Citation `abc' on page 1 undefined on input line 7.\n")
    problems = log_problems(log)
    assert [p.kind for p in problems] == ["tex_error", "undefined_citation",
                                          "undefined_reference"]
    assert problems[0].line == 6 and "\\foo" in problems[0].message
    trimmed = trim_log(log)
    assert "noise" not in trimmed and "l.6" in trimmed and "abc" in trimmed


@needs_tex
async def test_broken_edit_is_repaired_through_the_error_log(tmp_path):
    broken = GOOD.replace("The loss is 1.12", r"The loss is \lossvalue{1.12}")
    responses = [
        {"match": "write/warm_restarts/fix-1/turn-1", "tool_calls": [
            {"name": "replace_text", "arguments": {"path": "latex/template.tex",
             "old_text": r"\lossvalue{1.12}", "new_text": "1.12"}}]},
        {"match": "write/warm_restarts/fix-1/turn-2", "text": "Removed the undefined macro."},
    ]
    ctx, idea_id, idea_dir, provider = make_ctx(tmp_path, responses, tex=broken,
                                                chktex_rounds=0)
    outcome = await compile_with_fixes(ctx, idea_id)
    assert outcome.ok and outcome.fix_rounds == 1 and outcome.compiles == 2
    assert [p.name for p in drafts(idea_dir / "latex")] == ["draft-1.pdf"]
    fed = provider.requests[0][1].messages[0].text
    assert "Undefined control sequence" in fed and "l.6" in fed and "lossvalue" in fed
    import pymupdf
    with pymupdf.open(outcome.draft) as doc:
        text = doc[0].get_text()
        assert "1.12" in text and "Power" in text  # the bibliography was built
        assert doc[0].get_images()  # the figure is embedded


@needs_tex
async def test_earlier_draft_survives_a_failing_later_attempt(tmp_path):
    ctx, idea_id, idea_dir, _ = make_ctx(tmp_path, [], chktex_rounds=0, compile_fix_rounds=0)
    first = await compile_with_fixes(ctx, idea_id)
    assert first.ok and first.draft.name == "draft-1.pdf"
    good_bytes = first.draft.read_bytes()
    tex = idea_dir / "latex" / "template.tex"
    tex.write_text(tex.read_text().replace(r"\section{Results}",
                                           "\\section{Results}\n\\begin{itemize}\n\\item x"))
    second = await compile_with_fixes(ctx, idea_id)
    assert not second.ok
    assert any(p.kind == "tex_error" for p in second.problems)
    assert latest_draft(idea_dir / "latex") == first.draft
    assert first.draft.read_bytes() == good_bytes
    assert [p.name for p in drafts(idea_dir / "latex")] == ["draft-1.pdf"]


async def test_missing_tex_keeps_the_tex_and_says_so(tmp_path, monkeypatch):
    ctx, idea_id, idea_dir, _ = make_ctx(tmp_path, [])
    monkeypatch.setattr(latex_mod.shutil, "which", lambda name: None)
    outcome = await compile_with_fixes(ctx, idea_id)
    assert outcome.tex_missing and not outcome.ok and outcome.compiles == 0
    assert outcome.draft is None
    assert (idea_dir / "latex" / "template.tex").read_text() == GOOD
    # the compiler itself still refuses clearly
    with pytest.raises(TexMissing, match="pdflatex not found: install TeX Live"):
        latex_mod.LatexCompiler(ctx.settings, ctx.executor).check_toolchain()
