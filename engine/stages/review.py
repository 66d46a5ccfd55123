"""The NeurIPS-style reviewer: PDF text (PyMuPDF) -> an ensemble of critical reviews on
the 16-field form, each refined by reflection rounds, an area-chair meta-review, and a
scorecard whose scores are the rounded ensemble means (per-reviewer scores kept).

LLM steps (stage ``review``; ``<name>`` is the idea name, or the PDF's stem for
``aisci review``), for cassettes:
  ``<name>/reviewer-<k>``              review k of the ensemble (k = 1..N)
  ``<name>/reviewer-<k>/reflect-<r>``  reflection r on review k (stops on "I am done")
  ``<name>/meta``                      the area chair's meta-review
  (``.../repair-1`` follows any of these when the JSON reply was malformed)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.errors import EXIT_USAGE, StageError
from aisci.engine.lab import safe_files
from aisci.engine.llm.base import LLMRequest, Message
from aisci.engine.llm.client import BudgetExceeded, LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.paper.latex import MAIN_TEX, latest_draft, tex_available
from aisci.engine.paper.review_form import ReviewForm, aggregate, score_means
from aisci.engine.paper.texscan import paper_text
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome

MAX_PAPER_CHARS = 100_000
MAX_IMAGE_PAGES = 10
MAX_FEW_SHOT = 3
MAX_FEW_SHOT_CHARS = 8_000
DONE_MARK = "I am done"


class ReviewError(StageError):
    """The review could not be made; the message names the file or the reviewer."""


class PdfError(ReviewError):
    """The PDF cannot be read (missing, damaged, encrypted, no text): bad input."""

    exit_code = EXIT_USAGE


@dataclass
class PaperText:
    text: str
    pages: int
    images: list[bytes] = field(default_factory=list)


def read_pdf(path: Path, *, images: bool = False, dpi: int = 100,
             data: bytes | None = None) -> PaperText:
    """The PDF's text (and page PNGs when asked); a clear one-line error otherwise.
    ``data``: the PDF's bytes, already read (safe_files) from an idea folder; ``path``
    then only names it in messages."""
    import pymupdf  # deferred: PyMuPDF is heavy; only reviews read PDFs

    path = Path(path)
    if data is None and not path.is_file():
        raise PdfError(f"{path}: no such PDF file")
    try:
        doc = pymupdf.open(path) if data is None else pymupdf.open(stream=data,
                                                                   filetype="pdf")
    except Exception as exc:  # pymupdf raises FileDataError/RuntimeError subclasses
        raise PdfError(f"{path}: not a readable PDF ({exc})") from None
    with doc:
        if not doc.is_pdf:
            raise PdfError(f"{path}: not a PDF document")
        if doc.needs_pass:
            raise PdfError(f"{path}: the PDF is encrypted (password protected); "
                           "decrypt it first")
        if doc.page_count == 0:
            raise PdfError(f"{path}: the PDF has no pages")
        text = "\n".join(doc[i].get_text() for i in range(doc.page_count))
        pngs = ([doc[i].get_pixmap(dpi=dpi).tobytes("png")
                 for i in range(min(doc.page_count, MAX_IMAGE_PAGES))] if images else [])
        pages = doc.page_count
    if not text.strip():
        raise PdfError(f"{path}: no extractable text (a scanned PDF without a text layer?)")
    if len(text) > MAX_PAPER_CHARS:
        text = text[:MAX_PAPER_CHARS] + "\n[... paper text truncated]"
    return PaperText(text, pages, pngs)


@dataclass(kw_only=True)
class ReviewResult(StageOutcome):
    """The review of one paper: the review stage's outcome, and ``aisci review``'s."""

    review: ReviewForm
    """The scorecard: rounded ensemble means + meta-review text."""
    reviewers: list[ReviewForm]
    meta: ReviewForm | None
    scores_mean: dict[str, float]
    model: str
    reflections: list[int]
    """Reflection rounds used per reviewer."""
    failed: list[str] = field(default_factory=list)
    pdf: str = ""
    integrity: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        r = self.review
        self.summary = self.summary or (
            f"Overall {r.Overall}/10, {r.Decision} ({len(self.reviewers)} reviewer(s)"
            + (f", {len(self.failed)} failed" if self.failed else "") + ")")

    def to_json(self) -> dict[str, Any]:
        return {
            "review": self.review.to_json(),
            "scores_mean": {k: round(v, 3) for k, v in self.scores_mean.items()},
            "reviewers": [r.to_json() for r in self.reviewers],
            "meta_review": self.meta.to_json() if self.meta else None,
            "model": self.model, "ensemble": len(self.reviewers),
            "reflections": self.reflections, "failed_reviewers": self.failed,
            "pdf": self.pdf, "integrity": self.integrity, "created_at": time.time(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReviewResult:
        meta = data.get("meta_review")
        return cls(review=ReviewForm.model_validate(data["review"]),
                   reviewers=[ReviewForm.model_validate(r) for r in data.get("reviewers", [])],
                   meta=ReviewForm.model_validate(meta) if meta else None,
                   scores_mean=dict(data.get("scores_mean", {})),
                   model=str(data.get("model", "")),
                   reflections=list(data.get("reflections", [])),
                   failed=list(data.get("failed_reviewers", [])),
                   pdf=str(data.get("pdf", "")), integrity=data.get("integrity"))


def few_shot_examples(settings: Settings, lab: Path | None) -> str:
    """User-provided (paper text, review JSON) pairs: ``<dir>/<x>.txt`` + ``<x>.json``."""
    if not settings.review.few_shot_dir:
        return ""
    d = Path(settings.review.few_shot_dir).expanduser()
    if not d.is_absolute() and lab is not None:
        d = Path(lab) / d
    if not d.is_dir():
        raise ReviewError(f"review.few_shot_dir = {settings.review.few_shot_dir!r}: "
                          f"no folder {d}")
    blocks = []
    for txt in sorted(d.glob("*.txt"))[:MAX_FEW_SHOT]:
        js = txt.with_suffix(".json")
        if not js.is_file():
            continue
        paper = txt.read_text(encoding="utf-8", errors="replace")[:MAX_FEW_SHOT_CHARS]
        blocks.append(f"Example paper ({txt.name}):\n```\n{paper}\n```\n"
                      f"Example review:\n```json\n{js.read_text(encoding='utf-8')}\n```")
    return "\n\n".join(blocks)


class Reviewer:
    """Runs one ensemble review of one paper text."""

    def __init__(self, client: LLMClient, settings: Settings, prompts: PromptLibrary, *,
                 model: str | None, idea_id: int | None, name: str) -> None:
        self.client = client
        self.settings = settings
        self.prompts = prompts
        self.model = model or settings.models.for_stage("review")
        self.idea_id = idea_id
        self.name = name

    async def _json(self, request: LLMRequest) -> tuple[ReviewForm, str]:
        form, resp = await self.client.chat_json("review", request, ReviewForm,
                                                 idea_id=self.idea_id, model=self.model)
        return form, resp.text

    async def one_review(self, k: int, system: str, first: Message) -> tuple[ReviewForm, int]:
        temp = self.settings.review.temperature
        step = f"{self.name}/reviewer-{k}"
        convo = [first]
        form, text = await self._json(LLMRequest(system=system, messages=convo,
                                                 temperature=temp, step=step,
                                                 cache_prefix_messages=1))
        rounds = self.settings.review.reflection_rounds
        used = 0
        for r in range(1, rounds + 1):
            convo = [*convo, Message(role="assistant", text=text), Message(
                role="user", text=self.prompts.render("review_reflect", round=r, rounds=rounds,
                                                      done_mark=DONE_MARK))]
            form, text = await self._json(LLMRequest(system=system, messages=convo,
                                                     temperature=temp,
                                                     step=f"{step}/reflect-{r}",
                                                     cache_prefix_messages=1))
            used = r
            if DONE_MARK.lower() in text.lower():
                break
        return form, used

    async def meta_review(self, reviews: list[ReviewForm]) -> ReviewForm:
        body = "\n\n".join(f"Review {i}:\n```json\n{json.dumps(r.to_json(), indent=1)}\n```"
                           for i, r in enumerate(reviews, 1))
        req = LLMRequest(system=self.prompts.render("review_meta_system"),
                         messages=[Message(role="user", text=self.prompts.render(
                             "review_meta", reviews=body, count=len(reviews)))],
                         temperature=self.settings.review.temperature,
                         step=f"{self.name}/meta")
        form, _ = await self._json(req)
        return form


async def review_text(client: LLMClient, settings: Settings, paper: PaperText, *,
                      model: str | None = None, ensemble: int | None = None,
                      prompts: PromptLibrary | None = None, lab: Path | None = None,
                      idea_id: int | None = None, name: str = "paper") -> ReviewResult:
    prompts = prompts or PromptLibrary(lab)
    reviewer = Reviewer(client, settings, prompts, model=model, idea_id=idea_id, name=name)
    n = ensemble or settings.review.ensemble
    examples = few_shot_examples(settings, lab)
    system = prompts.render("review_system")
    if examples:
        system += "\n\n" + prompts.render("review_few_shot", examples=examples)
    first = Message(role="user", text=prompts.render(
        "review_paper", form=prompts.render("review_form"), paper=paper.text),
        images=tuple(paper.images) if settings.review.use_images else ())
    outcomes = await asyncio.gather(*(reviewer.one_review(k, system, first)
                                      for k in range(1, n + 1)), return_exceptions=True)
    reviews: list[ReviewForm] = []
    used: list[int] = []
    failed: list[str] = []
    for k, out in enumerate(outcomes, 1):
        if isinstance(out, BudgetExceeded):
            raise out
        if isinstance(out, BaseException):
            if not isinstance(out, Exception):
                raise out
            failed.append(f"reviewer {k}: {out}")
            continue
        reviews.append(out[0])
        used.append(out[1])
    if not reviews:
        raise ReviewError(f"every reviewer failed; first error: {failed[0]}")
    meta = await reviewer.meta_review(reviews) if settings.review.meta_review else None
    return ReviewResult(review=aggregate(reviews, meta), reviewers=reviews, meta=meta,
                        scores_mean=score_means(reviews), model=reviewer.model,
                        reflections=used, failed=failed)


async def review_pdf(llm_client: LLMClient, settings: Settings, pdf_path: Path,
                     model: str | None = None, ensemble: int | None = None, *,
                     prompts: PromptLibrary | None = None, lab: Path | None = None,
                     idea_id: int | None = None, name: str | None = None,
                     data: bytes | None = None) -> ReviewResult:
    """Review any PDF (``aisci review``, and the review stage, which passes the bytes it
    read from the idea folder as ``data``)."""
    paper = read_pdf(Path(pdf_path), images=settings.review.use_images, data=data)
    result = await review_text(llm_client, settings, paper, model=model, ensemble=ensemble,
                               prompts=prompts, lab=lab, idea_id=idea_id,
                               name=name or _step_name(Path(pdf_path)))
    result.pdf = str(pdf_path)
    return result


def _step_name(pdf: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in pdf.stem) or "paper"


def integrity_summary(idea_dir: Path) -> dict[str, Any] | None:
    try:
        data = safe_files.read_json(idea_dir, "integrity.json")
    except (OSError, ValueError):  # missing, invalid, or refused (safe_files.UnsafeFile)
        return None
    if not isinstance(data, dict):
        return None
    findings = data.get("findings", [])
    return {"count": len(findings), "by_kind": data.get("by_kind", {}),
            "items": findings[:20], "causality": data.get("causality")}


async def review_paper(ctx: StageContext, idea_id: int, *, out_name: str = "review.json",
                       pdf: Path | None = None, name: str | None = None) -> ReviewResult:
    """The review stage: review the newest draft PDF of the idea into ``review.json``.
    Resumable: an existing review of the same PDF is returned as is."""
    row = ctx.idea(idea_id)
    idea_dir = ctx.idea_dir(row)
    pdf = pdf or latest_draft(idea_dir / "latex")
    if pdf is None:
        if not tex_available() and safe_files.is_file(idea_dir, f"latex/{MAIN_TEX}"):
            return await review_source(ctx, idea_id, out_name=out_name, name=name)
        raise ReviewError(f"{idea_dir / 'latex'}: no compiled draft PDF to review")
    # The bytes are read once (no symlink, one link, bounded): the digest and the review
    # are of the same content, whatever happens to the file meanwhile.
    root, rel = (idea_dir, pdf.relative_to(idea_dir).as_posix()) \
        if pdf.is_relative_to(idea_dir) else (pdf.parent, pdf.name)
    try:
        pdf_bytes = safe_files.read_bytes(root, rel, safe_files.MAX_PDF_BYTES)
    except OSError as exc:
        raise ReviewError(f"{pdf}: cannot be read ({exc})") from None
    digest = hashlib.sha256(pdf_bytes).hexdigest()
    done = _saved_review(idea_dir, out_name, "pdf_sha256", digest)
    if done is not None:
        return done
    result = await review_pdf(ctx.llm, ctx.settings, pdf, prompts=ctx.prompts, lab=ctx.lab,
                              idea_id=idea_id, name=name or row.name, data=pdf_bytes)
    result.pdf = str(pdf.relative_to(idea_dir)) if pdf.is_relative_to(idea_dir) else str(pdf)
    _save_review(idea_dir, out_name, result, pdf_sha256=digest)
    return result


async def review_source(ctx: StageContext, idea_id: int, *, out_name: str = "review.json",
                        name: str | None = None) -> ReviewResult:
    """Review the paper's text taken from its LaTeX source (no PDF: TeX is not installed
    on this machine). Resumable like :func:`review_paper` (keyed by the source's digest)."""
    row = ctx.idea(idea_id)
    idea_dir = ctx.idea_dir(row)
    rel = f"latex/{MAIN_TEX}"
    try:
        raw = safe_files.read_bytes(idea_dir, rel, safe_files.MAX_TEXT_BYTES)
    except OSError as exc:
        raise ReviewError(f"{idea_dir / rel}: cannot be read ({exc})") from None
    digest = hashlib.sha256(raw).hexdigest()
    done = _saved_review(idea_dir, out_name, "tex_sha256", digest)
    if done is not None:
        return done
    text = paper_text(raw.decode("utf-8", errors="replace"))
    if not text.strip():
        raise ReviewError(f"{idea_dir / rel}: the paper has no text to review")
    if len(text) > MAX_PAPER_CHARS:
        text = text[:MAX_PAPER_CHARS] + "\n[... paper text truncated]"
    result = await review_text(ctx.llm, ctx.settings, PaperText(text, 0), prompts=ctx.prompts,
                               lab=ctx.lab, idea_id=idea_id, name=name or row.name)
    result.pdf = rel
    result.summary += ", from the LaTeX source (no PDF)"
    _save_review(idea_dir, out_name, result, tex_sha256=digest, source="latex")
    return result


def _saved_review(idea_dir: Path, out_name: str, key: str, digest: str) -> ReviewResult | None:
    """The review already saved for this exact paper (``key`` holds the digest of what was
    reviewed), or None: none yet, another paper, or a damaged (or refused) file."""
    try:
        data = safe_files.read_json(idea_dir, out_name)
        if data.get(key) == digest:
            return ReviewResult.from_json(data)
    except (OSError, KeyError, ValueError, AttributeError):
        pass
    return None


def _save_review(idea_dir: Path, out_name: str, result: ReviewResult, **extra: str) -> None:
    """Write the review with the integrity summary and what identifies the reviewed paper."""
    result.integrity = integrity_summary(idea_dir)
    data = result.to_json()
    data.update(extra)
    safe_files.write_text(idea_dir, out_name, json.dumps(data, indent=2))


def scorecard(result: ReviewResult) -> str:
    """A readable plain-text scorecard (``aisci review``)."""
    r = result.review
    lines = [f"Decision: {r.Decision}   Overall: {r.Overall}/10   Confidence: {r.Confidence}/5"
             f"   ({len(result.reviewers)} reviewer(s), {result.model})"]
    spread = {k: [getattr(x, k) for x in result.reviewers] for k in result.scores_mean}
    for key, mean in result.scores_mean.items():
        top = 10 if key == "Overall" else 5 if key == "Confidence" else 4
        lines.append(f"  {key:<13} {getattr(r, key):>2}/{top}  mean {mean:4.2f}  "
                     f"reviewers {spread[key]}")
    lines.append(f"Ethical concerns: {'yes' if r.Ethical_Concerns else 'no'}")
    lines += ["", "Summary:", "  " + r.Summary]
    for title, items in (("Strengths", r.Strengths), ("Weaknesses", r.Weaknesses),
                         ("Questions", r.Questions), ("Limitations", r.Limitations)):
        lines.append(f"{title}:")
        lines += [f"  - {it}" for it in items] or ["  (none)"]
    if result.failed:
        lines.append("Failed reviewers: " + "; ".join(result.failed))
    if result.integrity and result.integrity.get("count"):
        lines.append(f"Integrity findings: {result.integrity['count']} "
                     f"{result.integrity.get('by_kind')}")
    return "\n".join(lines)
