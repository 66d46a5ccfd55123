"""The write stage end to end: grokking's real paper skeleton filled by a scripted model,
citations added by code from fake literature results, compiled with real TeX."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pymupdf
import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.literature import Paper
from aisci.engine.llm.chaos import Chaos
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.paper.citations import Bibliography
from aisci.engine.resources import templates_dir
from aisci.engine.run.executor import Executor
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.write import write_paper

pytestmark = pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")

ENV = {"python": "3.11.7", "torch": "2.13.0+cpu", "cuda": None, "cudnn": None, "gpus": [],
       "driver": None, "cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "platform": "Linux",
       "hostname_sha256": "ab", "numpy": "2.1.0", "seeds": [0]}
FIGS = ["val_loss_x_plus_y.png", "val_acc_x_plus_y.png"]


class FakeLiterature:
    """Answers every query with two real papers; one has a source BibTeX under another key
    and the same title as an entry the template already has."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        self.queries.append(query)
        return [
            Paper("p1", "SGDR: Stochastic Gradient Descent with Warm Restarts",
                  ["Ilya Loshchilov", "Frank Hutter"], "International Conference on "
                  "Learning Representations", 2017, "Warm restarts for SGD.", 900),
            Paper("p2", "Grokking: Generalization Beyond Overfitting on Small Algorithmic "
                  "Datasets", ["Alethea Power"], "arXiv", 2022, "Grokking.", 500,
                  bibtex="@article{Power2022Grok,\n title={Grokking: Generalization Beyond "
                         "Overfitting on Small Algorithmic Datasets},\n year={2022}\n}"),
        ]


def replace(old: str, new: str) -> dict:
    return {"name": "replace_text", "arguments": {"path": "latex/template.tex",
                                                  "old_text": old, "new_text": new}}


def section(slug: str, *calls: dict) -> list[dict]:
    key = f"write/warm_restarts/section-{slug}/draft"
    return [{"match": f"{key}/turn-1", "tool_calls": list(calls)},
            {"match": f"{key}/turn-2", "text": "Done."}]


RESULTS = r"""With warm restarts the final validation loss on modular addition rises from
1.20 to 1.35, which is worse than the baseline (\cref{fig:loss}).
\begin{figure}[t]
\centering
\includegraphics[width=0.45\linewidth]{val_loss_x_plus_y.png}
\includegraphics[width=0.45\linewidth]{val_acc_x_plus_y.png}
\caption{Validation loss and accuracy on modular addition.}
\label{fig:loss}
\end{figure}"""


def cassette() -> list[dict]:
    r = []
    r += section("title-abstract", replace("TITLE HERE", "Warm Restarts Delay Grokking"),
                 replace("ABSTRACT HERE", "We study learning-rate warm restarts in grokking."))
    r += section("introduction", replace("INTRO HERE", "Grokking is delayed generalization."))
    r += section("background", replace("\\section{Method}",
                                       "\\section{Background}\nModular arithmetic tasks.\n\n"
                                       "\\section{Method}"))
    r += section("method", replace("METHOD HERE", "We restart the learning rate schedule."))
    r += section("experimental-setup", replace("EXPERIMENTAL SETUP HERE",
                                               "A 2-layer Transformer trained on a CPU."))
    r += section("results", replace("RESULTS HERE", RESULTS))
    r += section("conclusion", replace("CONCLUSIONS HERE", "Warm restarts delay grokking."))
    r += section("related-work", replace("RELATED WORK HERE", "% CITE: warm restarts\n"
                                         "Learning-rate schedules matter."))
    r += [{"match": "write/warm_restarts/section-*/refine-1/turn-1", "text": "No changes."},
          {"match": "write/warm_restarts/cite-1",
           "text": '```json\n{"done": false, "query": "warm restarts sgd", "reason": "method"}\n```'},
          {"match": "write/warm_restarts/cite-1/insert/turn-1",
           "tool_calls": [{"name": "add_citations", "arguments": {"indices": [0, 1]}}]},
          {"match": "write/warm_restarts/cite-1/insert/turn-2", "tool_calls": [
              replace("We restart the learning rate schedule.",
                      "We restart the learning rate schedule \\citep{loshchilov2017sgdr}, "
                      "as studied for grokking by \\citet{power2022grokking}.")]},
          {"match": "write/warm_restarts/cite-1/insert/turn-3", "text": "Cited."},
          {"match": "write/warm_restarts/cite-2", "text": '{"done": true, "reason": "enough"}'},
          {"match": "write/warm_restarts/refine-paper/turn-1", "text": "Nothing to tighten."},
          {"match": "write/warm_restarts/fix-*", "text": "Nothing to fix."},
          {"match": "write/warm_restarts/section-*/placeholder/turn-*", "text": "Done."}]
    return r


def make_lab(tmp_path: Path):
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea_id = store.add_idea("warm_restarts", "grokking", {
        "Name": "warm_restarts", "Title": "Warm restarts and grokking",
        "Experiment": "Add cosine warm restarts to the learning rate schedule."})
    idea_dir = lab / "ideas" / f"{idea_id}-warm_restarts"
    shutil.copytree(templates_dir() / "grokking" / "latex", idea_dir / "latex")
    for i, loss in ((0, 1.2), (1, 1.35)):
        d = idea_dir / f"run_{i}"
        d.mkdir(parents=True)
        (d / "final_info.json").write_text(json.dumps({"x_plus_y": {
            "means": {"final_val_loss": loss, "final_val_acc": 0.4},
            "stderrs": {"final_val_loss": 0.01, "final_val_acc": 0.02}}}))
        (d / "run_env.json").write_text(json.dumps(ENV))
    (idea_dir / "notes.txt").write_text("Warm restarts every 500 steps.\n")
    for name in FIGS:  # real PNG files, as plot.py writes them
        doc = pymupdf.open()
        doc.new_page(width=160, height=100).insert_text((10, 50), name)
        doc[0].get_pixmap().save(idea_dir / name)
    path = tmp_path / "cassette.json"
    path.write_text(json.dumps({"responses": cassette()}))
    settings = Settings.model_validate({
        "models": {"default": f"scripted:{path}"},
        "writeup": {"citation_rounds": 3, "compile_timeout_s": 120}})
    bus = EventBus()
    provider = ScriptedProvider(str(path))
    llm = LLMClient(settings, store, bus, provider_factory=lambda spec: provider)
    lit = FakeLiterature()
    ctx = StageContext(lab, settings, store, bus, llm, PromptLibrary(lab),
                       executor=Executor(settings, bus, store), literature=lit)
    return ctx, idea_id, idea_dir, provider, lit


async def test_writeup_compiles_paper_with_run_figures_and_code_added_bibtex(tmp_path):
    ctx, idea_id, idea_dir, provider, lit = make_lab(tmp_path)
    outcome = await write_paper(ctx, idea_id)
    assert outcome.ok, [p.format() for p in outcome.problems]
    assert outcome.draft == idea_dir / "latex" / "draft-1.pdf"
    assert outcome.citations_added == ["loshchilov2017sgdr"]
    assert lit.queries == ["warm restarts sgd"]

    bib = Bibliography(idea_dir / "latex")
    assert "loshchilov2017sgdr" in bib.entries()
    assert bib.text().count("Generalization Beyond Overfitting") == 1  # reused, not duplicated

    with pymupdf.open(outcome.draft) as doc:
        text = "".join(page.get_text() for page in doc)
        images = [img for page in doc for img in page.get_images(full=True)]
    assert "Warm Restarts Delay Grokking" in text
    assert "Loshchilov" in text and "SGDR" in text  # bibliography entry added by code
    assert "HERE" not in text.replace("THERE", "")
    assert len(images) == len(FIGS)
    pngs = [pymupdf.Pixmap(str(idea_dir / f)) for f in FIGS]
    assert sorted((img[2], img[3]) for img in images) == sorted((p.width, p.height) for p in pngs)

    keys = [k for k, _ in provider.requests]
    order = [k.split("/")[2] for k in keys if k.endswith("/draft/turn-1")]
    assert order == ["section-title-abstract", "section-introduction", "section-background",
                     "section-method", "section-experimental-setup", "section-results",
                     "section-conclusion", "section-related-work"]
    results_prompt = dict(provider.requests)["write/warm_restarts/section-results/draft/turn-1"]
    fed = results_prompt.messages[0].text
    assert "final_val_loss=1.35" in fed and "CPU only" in fed and "val_loss_x_plus_y.png" in fed

    # Resume: finished steps are not asked again.
    calls = len(provider.requests)
    again = await write_paper(ctx, idea_id)
    assert again.ok and len(provider.requests) == calls
    assert again.draft.name == "draft-2.pdf" and outcome.draft.is_file()


async def test_broken_latex_is_refused_at_the_edit_and_the_stage_ends_clearly(tmp_path):
    ctx, idea_id, idea_dir, provider, _ = make_lab(tmp_path)
    # Every edit carrying LaTeX loses a closing brace and gains an undefined macro.
    provider.chaos = Chaos("latex", seed=2, rate=1.0)
    protected = {p: p.read_bytes() for p in idea_dir.rglob("*") if p.is_file()
                 and "latex" not in p.parts}
    outcome = await write_paper(ctx, idea_id)
    # The model was told precisely, at the edit, and the broken text never landed.
    refused = {r.content for _, req in provider.requests for m in req.messages
               for r in m.tool_results if r.is_error}
    assert refused and all("\n" not in e.strip() for e in refused)
    assert any(e.startswith("error: latex/template.tex: the edit would leave unbalanced "
                            "braces (") for e in refused)
    tex = (idea_dir / "latex" / "template.tex").read_text()
    assert tex.count("{") - tex.count("\\{") == tex.count("}") - tex.count("\\}")
    if outcome.ok:
        assert outcome.draft is not None and outcome.draft.is_file()
    else:
        assert outcome.reason and "\n" not in outcome.reason
    assert {p: p.read_bytes() for p in protected} == protected


async def test_a_section_left_as_placeholder_is_asked_once_then_fails_the_stage(tmp_path):
    ctx, idea_id, idea_dir, provider, _ = make_lab(tmp_path)
    key = "write/warm_restarts/section-{}/{}/turn-{}"
    provider.exact.update({  # exact keys win over patterns: these replace two sections
        key.format("method", "draft", 1): {"text": "I can't help with that."},
        key.format("method", "placeholder", 1): {"tool_calls": [
            replace("METHOD HERE", "We restart the learning rate schedule.")]},
        key.format("method", "placeholder", 2): {"text": "Done."},
        key.format("results", "draft", 1): {"text": ""},
        key.format("results", "placeholder", 1): {"text": "I can't help with that."},
    })
    outcome = await write_paper(ctx, idea_id)
    asked = dict(provider.requests)
    assert "'METHOD HERE'" in asked[key.format("method", "placeholder", 1)].messages[0].text
    assert "'RESULTS HERE'" in asked[key.format("results", "placeholder", 1)].messages[0].text
    assert not any("introduction/placeholder" in k for k in asked)  # written: not asked
    assert not outcome.ok
    assert outcome.reason == ("sections left as placeholders: Results; "
                              "kept: latex/template.tex and draft-1.pdf")
    tex = (idea_dir / "latex" / "template.tex").read_text()
    assert "We restart the learning rate schedule" in tex and "\nRESULTS HERE\n" in tex
    assert outcome.draft is not None and outcome.draft.is_file()
    # a retry of the stage asks for the unfinished section again, not for the others
    calls = len(provider.requests)
    again = await write_paper(ctx, idea_id)
    keys = [k for k, _ in provider.requests[calls:]]
    assert key.format("results", "draft", 1) in keys and not any("method" in k for k in keys)
    assert not again.ok and again.reason.startswith("sections left as placeholders: Results;")
