"""The one paper record every literature source returns, whatever its wire format."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_KEY_RE = re.compile(r"@\w+\s*\{\s*([^,\s]+)\s*,")


@dataclass
class Paper:
    paper_id: str
    title: str
    authors: list[str] = field(default_factory=list)
    venue: str = ""
    year: int | None = None
    abstract: str = ""
    citation_count: int | None = None
    bibtex: str = ""
    url: str = ""
    doi: str = ""
    source: str = ""
    """Which source answered: semantic_scholar | openalex | offline."""

    @property
    def cite_key(self) -> str:
        """The BibTeX key of :attr:`bibtex` ('' when there is none)."""
        m = _KEY_RE.search(self.bibtex)
        return m.group(1) if m else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Paper:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def short(self) -> str:
        """``Power et al. (2022) Grokking: ...`` for lists and logs."""
        if not self.authors:
            who = "Anonymous"
        elif len(self.authors) == 1:
            who = self.authors[0].split()[-1]
        else:
            who = f"{self.authors[0].split()[-1]} et al."
        return f"{who} ({self.year or 'n.d.'}) {self.title}"


def json_dict(value: Any) -> dict[str, Any]:
    """A field of a source's JSON answer that should be an object ({} when it is not)."""
    return value if isinstance(value, dict) else {}


def json_list(value: Any) -> list[Any]:
    """A field of a source's JSON answer that should be a list ([] when it is not)."""
    return value if isinstance(value, list) else []
