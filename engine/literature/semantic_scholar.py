"""Semantic Scholar Graph API paper search (``/paper/search``), mapped to :class:`Paper`."""

from __future__ import annotations

import os
from typing import Any

from aisci.engine.literature.http import SourceError, get_json
from aisci.engine.literature.paper import Paper, json_dict, json_list

FIELDS = "title,authors,venue,year,abstract,citationCount,citationStyles,externalIds,url"


class SemanticScholarSource:
    name = "semantic_scholar"

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("S2_API_KEY") or None

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)

    async def search(self, query: str, limit: int, timeout: float) -> list[Paper]:
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        data = await get_json(f"{self.base_url}/paper/search",
                              {"query": query, "limit": limit, "fields": FIELDS}, headers, timeout)
        if not isinstance(data, dict):
            raise SourceError("semantic scholar: expected a JSON object with a 'data' list")
        items = data.get("data") or []  # no match: S2 leaves "data" out
        if not isinstance(items, list):
            raise SourceError("semantic scholar: expected a JSON object with a 'data' list")
        return [p for p in (parse_paper(item) for item in items[:limit]) if p]


def parse_paper(item: Any) -> Paper | None:
    """One search hit; None when it has no title. Fields of the wrong type are dropped."""
    if not isinstance(item, dict) or not item.get("title"):
        return None
    ext = json_dict(item.get("externalIds"))
    doi = str(ext.get("DOI") or "")
    styles = json_dict(item.get("citationStyles"))
    url = str(item.get("url") or "")
    if not url and ext.get("ArXiv"):
        url = f"https://arxiv.org/abs/{ext['ArXiv']}"
    return Paper(
        paper_id=str(item.get("paperId") or doi or item["title"]),
        title=str(item["title"]).strip(),
        authors=[str(a.get("name")) for a in json_list(item.get("authors"))
                 if isinstance(a, dict) and a.get("name")],
        venue=str(item.get("venue") or ""),
        year=item.get("year") if isinstance(item.get("year"), int) else None,
        abstract=str(item.get("abstract") or ""),
        citation_count=item.get("citationCount") if isinstance(item.get("citationCount"), int)
        else None,
        bibtex=str(styles.get("bibtex") or ""),
        url=url,
        doi=doi,
        source="semantic_scholar",
    )
