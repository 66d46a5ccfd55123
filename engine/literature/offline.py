"""The "offline" source: a bundled JSON file of real papers' metadata, searched by word
overlap. It lets the demo and air-gapped machines run the novelty stage for real."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aisci.engine.literature.paper import Paper
from aisci.engine.resources import data_dir

_WORD = re.compile(r"[a-z0-9]+")
_IGNORED = {"a", "an", "the", "of", "on", "in", "for", "to", "and", "with", "via", "by"}


def default_fixture() -> Path:
    return data_dir() / "literature_offline.json"


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _IGNORED}


class OfflineSource:
    name = "offline"
    has_key = True  # no remote service, so no rate limit to respect

    def __init__(self, fixture: str | Path | None = None) -> None:
        self.path = Path(fixture).expanduser() if fixture else default_fixture()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: offline literature fixture unreadable ({exc})") from None
        items = raw.get("papers") if isinstance(raw, dict) else raw
        if not isinstance(items, list):
            raise ValueError(f"{self.path}: expected a list of papers or {{'papers': [...]}}")
        self.papers = [Paper.from_dict({**p, "source": "offline"}) for p in items]

    async def search(self, query: str, limit: int, timeout: float) -> list[Paper]:
        q = _words(query)
        scored = []
        for i, p in enumerate(self.papers):
            title, body = _words(p.title), _words(p.abstract + " " + p.venue)
            score = 3 * len(q & title) + len(q & body)
            if score:
                scored.append((-score, i, p))
        scored.sort(key=lambda t: (t[0], t[1]))
        return [Paper.from_dict(p.to_dict()) for _, _, p in scored[:limit]]
