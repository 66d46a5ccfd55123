"""A loopback HTTP server that speaks the Semantic Scholar Graph API paper search and the
OpenAlex works search with their real response shapes, with fault injection (429 with
Retry-After, 500, slow answers) and a record of every request, for the literature tests.

    with LiteratureServer() as srv:
        srv.fail("s2", "429", times=10)          # next 10 S2 requests answer 429
        settings.literature.semantic_scholar_url = srv.s2_url
        settings.literature.openalex_url = srv.openalex_url
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[2] / "engine" / "data" / "literature_offline.json"


def load_corpus(path: Path = FIXTURE) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["papers"]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _matches(query: str, corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    q = _words(query)
    scored = [(-len(q & _words(p["title"] + " " + p["abstract"])), i, p)
              for i, p in enumerate(corpus)]
    return [p for s, _, p in sorted(scored, key=lambda t: (t[0], t[1])) if s < 0]


def to_s2(p: dict[str, Any]) -> dict[str, Any]:
    """A paper in the Graph API shape (fields=title,authors,venue,year,abstract,...)."""
    ext: dict[str, Any] = {}
    if p["paper_id"].startswith("arXiv:"):
        ext["ArXiv"] = p["paper_id"][6:]
    if p.get("doi"):
        ext["DOI"] = p["doi"]
    pid = hashlib.sha1(p["paper_id"].encode()).hexdigest()
    return {
        "paperId": pid,
        "externalIds": ext,
        "url": f"https://www.semanticscholar.org/paper/{pid}",
        "title": p["title"],
        "abstract": p["abstract"],
        "venue": p["venue"],
        "year": p["year"],
        "citationCount": p.get("citation_count") or 100,
        # S2's real BibTeX quirks: list-like entry types and its own key style.
        "citationStyles": {"bibtex": re.sub(
            r"^@\w+\{\w+,", "@['JournalArticle', 'Conference']{" + _s2_key(p) + ",",
            p["bibtex"]).replace("\n", " ")},
        "authors": [{"authorId": str(1000 + i), "name": a} for i, a in enumerate(p["authors"])],
    }


def _s2_key(p: dict[str, Any]) -> str:
    surname = re.sub(r"[^A-Za-z]", "", p["authors"][0].split()[-1]) if p["authors"] else "Anon"
    words = re.findall(r"[A-Za-z]+", p["title"])
    return f"{surname}{p['year']}{words[0] if words else ''}{''.join(w[0] for w in words[1:3])}"


def inverted_index(text: str) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i, w in enumerate(text.split()):
        idx.setdefault(w, []).append(i)
    return idx


def to_openalex(p: dict[str, Any], n: int) -> dict[str, Any]:
    """A work in the OpenAlex shape (no BibTeX; abstract as an inverted index)."""
    wid = f"https://openalex.org/W{4000000000 + n}"
    return {
        "id": wid,
        "doi": f"https://doi.org/{p['doi']}" if p.get("doi") else None,
        "title": p["title"],
        "display_name": p["title"],
        "publication_year": p["year"],
        "publication_date": f"{p['year']}-01-01",
        "type": "article",
        "authorships": [
            {"author_position": "first" if i == 0 else "middle",
             "author": {"id": f"https://openalex.org/A{5000 + i}", "display_name": a},
             "institutions": []}
            for i, a in enumerate(p["authors"])],
        "primary_location": {"is_oa": True, "landing_page_url": p.get("url"),
                             "source": {"id": "https://openalex.org/S1",
                                        "display_name": p["venue"], "type": "journal"}},
        "cited_by_count": p.get("citation_count") or 80,
        "abstract_inverted_index": inverted_index(p["abstract"]),
        "biblio": {"volume": None, "issue": None, "first_page": None, "last_page": None},
    }


@dataclass
class Recorded:
    api: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    ts: float = field(default_factory=time.monotonic)


class LiteratureServer:
    def __init__(self, corpus: list[dict[str, Any]] | None = None) -> None:
        self.corpus = corpus if corpus is not None else load_corpus()
        self.requests: list[Recorded] = []
        self._faults: dict[str, list[tuple[str, float]]] = {"s2": [], "openalex": []}
        self._default_fault: dict[str, tuple[str, float] | None] = {"s2": None, "openalex": None}
        self._lock = threading.Lock()
        self.retry_after = "0"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # -- control -------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def s2_url(self) -> str:
        return f"{self.base}/graph/v1"

    @property
    def openalex_url(self) -> str:
        return self.base

    def fail(self, api: str, kind: str, times: int = 1, delay: float = 0.0) -> None:
        """Queue ``times`` faults for ``api`` ("s2"|"openalex"): "429", "500", "slow"."""
        with self._lock:
            self._faults[api].extend([(kind, delay)] * times)

    def fail_always(self, api: str, kind: str | None, delay: float = 0.0) -> None:
        with self._lock:
            self._default_fault[api] = (kind, delay) if kind else None

    def count(self, api: str) -> int:
        return sum(1 for r in self.requests if r.api == api)

    def __enter__(self) -> LiteratureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- serving -------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/graph/v1/paper/search":
            api = "s2"
        elif url.path == "/works":
            api = "openalex"
        else:
            self._send(h, 404, {"error": f"no route {url.path}"})
            return
        with self._lock:
            self.requests.append(Recorded(api, url.path, params,
                                          {k.lower(): v for k, v in h.headers.items()}))
            fault = self._faults[api].pop(0) if self._faults[api] else self._default_fault[api]
        if fault:
            kind, delay = fault
            if kind == "429":
                self._send(h, 429, {"message": "Too Many Requests. Please wait and try again "
                                    "or apply for a key for higher rate limits."},
                           {"Retry-After": self.retry_after})
                return
            if kind == "500":
                self._send(h, 500, {"message": "Internal Server Error"})
                return
            if kind == "slow":
                time.sleep(delay)
        if api == "s2":
            limit = int(params.get("limit", 10))
            hits = _matches(params.get("query", ""), self.corpus)
            body = {"total": len(hits), "offset": 0,
                    "next": limit if len(hits) > limit else None,
                    "data": [to_s2(p) for p in hits[:limit]]}
        else:
            per_page = int(params.get("per-page", params.get("per_page", 25)))
            hits = _matches(params.get("search", ""), self.corpus)
            body = {"meta": {"count": len(hits), "db_response_time_ms": 12, "page": 1,
                             "per_page": per_page, "groups_count": None},
                    "results": [to_openalex(p, i) for i, p in enumerate(hits[:per_page])],
                    "group_by": []}
        self._send(h, 200, body)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: Any,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
