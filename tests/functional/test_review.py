"""The reviewer: form schema, ensemble aggregation, meta-review, reflections, JSON repair,
PDF reading errors."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from aisci.engine.config import Settings
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.paper.review_form import ReviewForm, aggregate, round_half_up
from aisci.engine.stages.review import PaperText, ReviewError, read_pdf, review_text, scorecard


def form(overall: int, decision: str = "Reject", **kw) -> dict:
    base = {"Summary": f"summary {overall}", "Strengths": [f"s{overall}", "shared"],
            "Weaknesses": [f"w{overall}"], "Originality": 2, "Quality": 2, "Clarity": 3,
            "Significance": 2, "Questions": ["q?"], "Limitations": ["small scale"],
            "Ethical Concerns": False, "Soundness": 2, "Presentation": 3, "Contribution": 2,
            "Overall": overall, "Confidence": 4, "Decision": decision}
    base.update(kw)
    return base


def answer(match: str, data: dict | None, text: str = "THOUGHT: fine") -> dict:
    body = text + ("\n```json\n" + json.dumps(data) + "\n```" if data is not None else "")
    return {"match": match, "text": body}


def make_client(tmp_path: Path, responses: list[dict], **settings) -> tuple[LLMClient, Settings]:
    cassette = tmp_path / "cassette.json"
    cassette.write_text(json.dumps({"responses": responses}))
    s = Settings.model_validate({"models": {"default": "scripted:test"}, **settings})
    return LLMClient(s, None, None, provider_factory=lambda spec: ScriptedProvider(
        str(cassette))), s


PAPER = PaperText("A paper about grokking with warm restarts. Results: loss 1.12.", 1)


def test_form_uses_reference_keys_and_validates_ranges():
    f = ReviewForm.model_validate(form(4))
    assert set(f.to_json()) == {
        "Summary", "Strengths", "Weaknesses", "Originality", "Quality", "Clarity",
        "Significance", "Questions", "Limitations", "Ethical Concerns", "Soundness",
        "Presentation", "Contribution", "Overall", "Confidence", "Decision"}
    with pytest.raises(ValueError):
        ReviewForm.model_validate(form(11))
    with pytest.raises(ValueError):
        ReviewForm.model_validate(form(4, Decision="Maybe"))


def test_aggregate_rounds_means_and_merges_without_meta():
    reviews = [ReviewForm.model_validate(form(o, d)) for o, d in
               ((3, "Reject"), (4, "Reject"), (6, "Accept"), (6, "Accept"))]
    agg = aggregate(reviews, None)
    assert agg.Overall == round_half_up(19 / 4) == 5  # 4.75
    assert agg.Decision == "Reject"  # 2 vs 2: a tie rejects
    assert agg.Strengths[:2] == ["s3", "shared"] and agg.Strengths.count("shared") == 1
    assert round_half_up(2.5) == 3


async def test_ensemble_meta_review_and_reflections(tmp_path):
    responses = [
        answer("review/p/reviewer-1", form(3)),
        answer("review/p/reviewer-2", form(4)),
        answer("review/p/reviewer-3", form(6, "Accept")),
        # reviewer 1 revises once, then is done; the others are done at once
        answer("review/p/reviewer-1/reflect-1", form(2), "THOUGHT: the baseline is weak"),
        answer("review/p/reviewer-1/reflect-2", form(2), "THOUGHT: ok. I am done"),
        answer("review/p/reviewer-*/reflect-1", form(4), "THOUGHT: nothing to add. I am done"),
        answer("review/p/meta", form(5, "Reject", Summary="meta summary")),
    ]
    client, s = make_client(tmp_path, responses, review={"ensemble": 3, "reflection_rounds": 3})
    result = await review_text(client, s, PAPER, name="p")
    assert [r.Overall for r in result.reviewers] == [2, 4, 4]
    assert result.reflections == [2, 1, 1]
    assert result.review.Overall == 3  # rounded mean of 2, 4, 4 = 3.33, not the meta's 5
    assert result.review.Summary == "meta summary"
    assert result.meta is not None and result.meta.Overall == 5
    data = result.to_json()
    assert data["scores_mean"]["Overall"] == pytest.approx(3.333, abs=1e-3)
    assert len(data["reviewers"]) == 3 and data["review"]["Ethical Concerns"] is False
    assert "Overall" in scorecard(result) and "[2, 4, 4]" in scorecard(result)


async def test_malformed_json_repaired_once(tmp_path):
    responses = [
        {"match": "review/p/reviewer-1", "text": "THOUGHT: hmm\n```json\n{\"Summary\": \"x\",}\n```"},
        answer("review/p/reviewer-1/repair-1", form(4)),
    ]
    client, s = make_client(tmp_path, responses,
                            review={"ensemble": 1, "reflection_rounds": 0, "meta_review": False})
    result = await review_text(client, s, PAPER, name="p")
    assert result.review.Overall == 4


async def test_malformed_json_twice_is_a_clear_error(tmp_path):
    bad = {"Summary": "x", "Overall": 4}
    responses = [answer("review/p/reviewer-1", bad), answer("review/p/reviewer-1/repair-1", bad)]
    client, s = make_client(tmp_path, responses,
                            review={"ensemble": 1, "reflection_rounds": 0, "meta_review": False})
    with pytest.raises(ReviewError) as exc:
        await review_text(client, s, PAPER, name="p")
    msg = str(exc.value)
    assert "reviewer 1" in msg and "ReviewForm" in msg and "repair" in msg
    assert "\n" not in msg


async def test_one_failing_reviewer_keeps_the_others(tmp_path):
    responses = [answer("review/p/reviewer-1", form(5)),
                 answer("review/p/reviewer-2", {"nope": 1}),
                 answer("review/p/reviewer-2/repair-1", {"nope": 1})]
    client, s = make_client(tmp_path, responses,
                            review={"ensemble": 2, "reflection_rounds": 0, "meta_review": False})
    result = await review_text(client, s, PAPER, name="p")
    assert len(result.reviewers) == 1 and result.failed[0].startswith("reviewer 2")


def test_read_pdf_errors(tmp_path):
    with pytest.raises(ReviewError, match="no such PDF"):
        read_pdf(tmp_path / "missing.pdf")
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(ReviewError, match="junk.pdf"):
        read_pdf(junk)
    blank = tmp_path / "blank.pdf"
    doc = pymupdf.open()
    doc.new_page()
    doc.save(blank)
    with pytest.raises(ReviewError, match="no extractable text"):
        read_pdf(blank)
    enc = tmp_path / "enc.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(enc, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    with pytest.raises(ReviewError, match="encrypted"):
        read_pdf(enc)


def test_read_pdf_text_and_images(tmp_path):
    p = tmp_path / "ok.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Grokking with warm restarts")
    doc.save(p)
    paper = read_pdf(p, images=True)
    assert "warm restarts" in paper.text and paper.pages == 1
    assert paper.images[0][:8] == b"\x89PNG\r\n\x1a\n"



# -- the review and improve stages on a compiled paper -------------------------------------

SIMPLE_TEX = r"""\documentclass{article}
\begin{document}
\section{Results}
In Run 2 the validation loss rises from 1.20 to 1.35.
\end{document}
"""


def stage_ctx(tmp_path: Path, responses: list[dict]):
    import shutil

    from aisci.engine.events import EventBus
    from aisci.engine.lab.store import LabStore
    from aisci.engine.llm.prompts import PromptLibrary
    from aisci.engine.run.executor import Executor
    from aisci.engine.stages.context import StageContext

    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex not installed")
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea_id = store.add_idea("warm_restarts", "grokking", {"Name": "warm_restarts"})
    idea_dir = lab / "ideas" / f"{idea_id}-warm_restarts"
    (idea_dir / "latex").mkdir(parents=True)
    (idea_dir / "latex" / "template.tex").write_text(SIMPLE_TEX)
    for i, loss in ((0, 1.2), (1, 1.35)):
        (idea_dir / f"run_{i}").mkdir()
        (idea_dir / f"run_{i}" / "final_info.json").write_text(
            json.dumps({"x_plus_y": {"means": {"final_val_loss": loss}}}))
    client, s = make_client(tmp_path, responses, review={"ensemble": 2, "reflection_rounds": 1},
                            writeup={"chktex_rounds": 0})
    client.store = store
    ctx = StageContext(lab, s, store, EventBus(), client, PromptLibrary(lab),
                       executor=Executor(s, None, store))
    return ctx, idea_id, idea_dir


async def test_integrity_review_and_improve_stages(tmp_path):
    from aisci.engine.paper.latex import compile_with_fixes
    from aisci.engine.stages.improve import improve_paper
    from aisci.engine.stages.integrity import check_integrity
    from aisci.engine.stages.review import review_paper

    responses = [
        # integrity correction round: the model renames the run
        {"match": "integrity/warm_restarts/integrity-fix-1/turn-1", "tool_calls": [
            {"name": "replace_text", "arguments": {"path": "latex/template.tex",
             "old_text": "In Run 2 the", "new_text": "With warm restarts the"}}]},
        {"match": "integrity/warm_restarts/integrity-fix-1/turn-2", "text": "Fixed."},
        answer("review/warm_restarts/reviewer-*", form(3), "THOUGHT: weak. I am done"),
        answer("review/warm_restarts/meta", form(3)),
        {"match": "improve/warm_restarts/revise/turn-1", "tool_calls": [
            {"name": "replace_text", "arguments": {"path": "latex/template.tex",
             "old_text": "rises from 1.20 to 1.35.",
             "new_text": "rises from 1.20 to 1.35, which is worse. We state this limitation."}}]},
        {"match": "improve/warm_restarts/revise/turn-2", "text": "Revised."},
        answer("review/warm_restarts/improved/reviewer-*", form(4), "THOUGHT: better. I am done"),
        answer("review/warm_restarts/improved/meta", form(4)),
    ]
    ctx, idea_id, idea_dir = stage_ctx(tmp_path, responses)
    assert (await compile_with_fixes(ctx, idea_id)).ok

    checked = await check_integrity(ctx, idea_id)
    assert checked.ok and checked.findings == [] and checked.summary == "0 finding(s)"
    report = json.loads((idea_dir / "integrity.json").read_text())
    assert report["final"] and report["findings"] == []
    assert "Run 2" not in (idea_dir / "latex" / "template.tex").read_text()
    assert (await check_integrity(ctx, idea_id)).findings == []  # unchanged: not re-done

    result = await review_paper(ctx, idea_id)
    saved = json.loads((idea_dir / "review.json").read_text())
    assert saved["pdf"] == "latex/draft-2.pdf" and saved["review"]["Overall"] == 3
    assert saved["integrity"]["count"] == 0 and len(saved["reviewers"]) == 2
    assert result.reflections == [1, 1]

    improved = await improve_paper(ctx, idea_id)
    assert improved.compiled and improved.draft.name == "draft-3.pdf"
    assert improved.before.review.Overall == 3 and improved.after.review.Overall == 4
    assert (idea_dir / "review.json").is_file() and (idea_dir / "review-improved.json").is_file()
    with pymupdf.open(improved.draft) as doc:
        assert "limitation" in doc[0].get_text()
