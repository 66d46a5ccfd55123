"""Literature search over Semantic Scholar and OpenAlex, with cache, rate limits and failover.

``Literature(settings, store, bus).search(query, limit)`` returns :class:`Paper` records,
each with BibTeX; :class:`LiteratureUnavailable` when no source can answer in time.
"""

from aisci.engine.literature.bibtex import (
    build_bibtex,
    latex_escape,
    make_key,
    rekey,
    unique_keys,
)
from aisci.engine.literature.paper import Paper
from aisci.engine.literature.service import Literature, LiteratureUnavailable, make_sources

__all__ = [
    "Literature",
    "LiteratureUnavailable",
    "Paper",
    "build_bibtex",
    "latex_escape",
    "make_key",
    "make_sources",
    "rekey",
    "unique_keys",
]
