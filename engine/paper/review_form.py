"""The NeurIPS review form (the reference's 16 JSON fields, same key names) and the
aggregation of an ensemble of reviews into one scorecard."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Numeric fields and their ranges, in the order of the form.
SCORE_FIELDS: dict[str, tuple[int, int]] = {
    "Originality": (1, 4), "Quality": (1, 4), "Clarity": (1, 4), "Significance": (1, 4),
    "Soundness": (1, 4), "Presentation": (1, 4), "Contribution": (1, 4),
    "Overall": (1, 10), "Confidence": (1, 5),
}
LIST_FIELDS = ("Strengths", "Weaknesses", "Questions", "Limitations")
MAX_MERGED_ITEMS = 12


class ReviewForm(BaseModel):
    """One review. Field names are the reference's JSON keys ("Ethical Concerns")."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    Summary: str = Field(min_length=1)
    Strengths: list[str]
    Weaknesses: list[str]
    Originality: int = Field(ge=1, le=4)
    Quality: int = Field(ge=1, le=4)
    Clarity: int = Field(ge=1, le=4)
    Significance: int = Field(ge=1, le=4)
    Questions: list[str]
    Limitations: list[str]
    Ethical_Concerns: bool = Field(alias="Ethical Concerns")
    Soundness: int = Field(ge=1, le=4)
    Presentation: int = Field(ge=1, le=4)
    Contribution: int = Field(ge=1, le=4)
    Overall: int = Field(ge=1, le=10)
    Confidence: int = Field(ge=1, le=5)
    Decision: Literal["Accept", "Reject"]

    @field_validator(*LIST_FIELDS, mode="before")
    @classmethod
    def _one_string_is_a_list(cls, v: Any) -> Any:
        # Models sometimes answer a single weakness as a string; that is still a list item.
        return [v] if isinstance(v, str) else v

    @field_validator("Decision", mode="before")
    @classmethod
    def _decision_case(cls, v: Any) -> Any:
        return v.strip().capitalize() if isinstance(v, str) else v

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def round_half_up(x: float) -> int:
    """Conventional rounding (2.5 -> 3); Python's round() would give 2."""
    return int(math.floor(x + 0.5))


def score_means(reviews: list[ReviewForm]) -> dict[str, float]:
    return {k: sum(getattr(r, k) for r in reviews) / len(reviews) for k in SCORE_FIELDS}


def _merge_lists(reviews: list[ReviewForm], name: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for r in reviews:
        for item in getattr(r, name):
            key = " ".join(item.lower().split())
            if key and key not in seen:
                seen.add(key)
                out.append(item)
    return out[:MAX_MERGED_ITEMS]


def aggregate(reviews: list[ReviewForm], meta: ReviewForm | None) -> ReviewForm:
    """The scorecard: numeric scores are the rounded mean of the ensemble; text and the
    decision come from the area chair's meta-review, else are merged (majority decision,
    ties reject)."""
    if not reviews:
        raise ValueError("aggregate: no reviews to aggregate")
    means = score_means(reviews)
    scores = {k: min(hi, max(lo, round_half_up(means[k]))) for k, (lo, hi) in
              SCORE_FIELDS.items()}
    if meta is not None:
        base = meta.to_json()
    else:
        accepts = sum(r.Decision == "Accept" for r in reviews)
        base = {"Summary": reviews[0].Summary,
                **{name: _merge_lists(reviews, name) for name in LIST_FIELDS},
                "Ethical Concerns": any(r.Ethical_Concerns for r in reviews),
                "Decision": "Accept" if accepts * 2 > len(reviews) else "Reject"}
    base.update(scores)
    return ReviewForm.model_validate(base)
