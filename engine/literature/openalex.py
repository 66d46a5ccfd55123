"""OpenAlex works search (``/works?search=``), mapped to :class:`Paper`; the abstract is
rebuilt from ``abstract_inverted_index`` (OpenAlex ships no plain abstract or BibTeX)."""

from __future__ import annotations

from typing import Any

from aisci.engine.literature.http import SourceError, get_json
from aisci.engine.literature.paper import Paper, json_list


class OpenAlexSource:
    name = "openalex"
    has_key = False

    def __init__(self, base_url: str, email: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email

    async def search(self, query: str, limit: int, timeout: float) -> list[Paper]:
        params: dict[str, Any] = {"search": query, "per-page": limit}
        if self.email:
            params["mailto"] = self.email  # the "polite pool": faster, more reliable
        data = await get_json(f"{self.base_url}/works", params, {}, timeout)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SourceError("openalex: expected a JSON object with a 'results' list")
        return [p for p in (parse_work(w) for w in results[:limit]) if p]


def rebuild_abstract(index: Any) -> str:
    """Words placed at their positions: {"word": [0, 5], ...} -> text."""
    if not isinstance(index, dict):
        return ""
    positions: dict[int, str] = {}
    for word, where in index.items():
        if not isinstance(where, list):
            continue
        for pos in where:
            if isinstance(pos, int) and 0 <= pos < 100_000:
                positions[pos] = word
    return " ".join(positions[i] for i in sorted(positions))


def parse_work(work: Any) -> Paper | None:
    if not isinstance(work, dict):
        return None
    title = work.get("display_name") or work.get("title")
    if not title:
        return None
    doi = str(work.get("doi") or "")
    for prefix in ("https://doi.org/", "http://doi.org/", "doi:"):
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix):]
    venue = ""
    loc = work.get("primary_location") or {}
    if isinstance(loc, dict) and isinstance(loc.get("source"), dict):
        venue = str(loc["source"].get("display_name") or "")
    url = f"https://doi.org/{doi}" if doi else str(
        (loc.get("landing_page_url") if isinstance(loc, dict) else "") or work.get("id") or "")
    year = work.get("publication_year")
    cited = work.get("cited_by_count")
    return Paper(
        paper_id=str(work.get("id") or doi or title),
        title=str(title).strip(),
        authors=[str(a["author"]["display_name"]) for a in json_list(work.get("authorships"))
                 if isinstance(a, dict) and isinstance(a.get("author"), dict)
                 and a["author"].get("display_name")],
        venue=venue,
        year=year if isinstance(year, int) else None,
        abstract=rebuild_abstract(work.get("abstract_inverted_index")),
        citation_count=cited if isinstance(cited, int) else None,
        bibtex="",
        url=url,
        doi=doi,
        source="openalex",
    )
