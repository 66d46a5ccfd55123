"""The idea schema (the reference's idea JSON) and its validation.

Field names follow the reference system so its ideas.json files import unchanged:
Name (snake_case), Title, Experiment, Interestingness, Feasibility, Novelty (1-10).
"""

from __future__ import annotations

import re
from typing import Any

from aisci.engine.errors import UsageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,79}$")

#: Triage statuses of an idea (spec: proposed -> checked -> approved | vetoed | edited).
STATUSES = ("proposed", "checked", "approved", "vetoed", "edited")


class Idea(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    Name: str
    Title: str = Field(min_length=3)
    Experiment: str = Field(min_length=10)
    Interestingness: int = Field(ge=1, le=10)
    Feasibility: int = Field(ge=1, le=10)
    Novelty: int = Field(ge=1, le=10)

    @field_validator("Name")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"Name {v!r} must be snake_case (lowercase letters, digits, "
                             "underscores; starting with a letter; 2-80 characters)")
        return v


class IdeaError(UsageError):
    """An idea object that does not fit the schema (one line: where, which field, why)."""


def validate_idea(data: Any, where: str = "idea") -> Idea:
    """Validate one idea object, raising IdeaError with a one-line message."""
    if not isinstance(data, dict):
        raise IdeaError(f"{where}: expected a JSON object with Name, Title, Experiment, "
                        f"Interestingness, Feasibility, Novelty; got {type(data).__name__}")
    try:
        return Idea.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise IdeaError(f"{where}: {loc}: {e['msg']}") from None
