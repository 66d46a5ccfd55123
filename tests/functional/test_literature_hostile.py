"""Literature sources that misbehave: answers of the wrong shape or not HTTP at all, a
body dripped a byte at a time, redirects to another host, a hostile BibTeX string, a
half-open breaker whose trial never went out. Each ends as one bounded SourceError /
LiteratureUnavailable line, and the engine keeps working."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aisci.engine.config import Settings
from aisci.engine.literature import Literature, LiteratureUnavailable
from aisci.engine.literature.bibtex import latex_escape, parse_fields
from aisci.engine.literature.http import SourceError, get_json
from aisci.engine.literature.openalex import OpenAlexSource
from aisci.engine.literature.semantic_scholar import SemanticScholarSource

Answer = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serve(answer: Answer, host: str = "127.0.0.1") -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server answering every GET with ``answer``; yields its URL and the
    headers of every request it got."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer((host, 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://{host}:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def json_answer(payload: object) -> Answer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return answer


@pytest.mark.parametrize("payload", [
    {"data": 5}, [1, 2], {"data": {"title": "x"}},
    b"[" * 100_000, b'{"data": [' + b"9" * 5000 + b"]}",
], ids=["data-not-a-list", "a-list", "data-an-object", "nested-deep", "5000-digits"])
async def test_s2_answers_of_the_wrong_shape_are_one_source_error(payload):
    with serve(json_answer(payload)) as (url, _):
        with pytest.raises(SourceError) as err:
            await SemanticScholarSource(url, api_key="").search("grokking", 5, 2.0)
    assert "\n" not in str(err.value)


async def test_fields_of_the_wrong_type_are_dropped_and_the_limit_is_kept():
    items = [{"title": f"Paper {i}", "externalIds": [1], "authors": 7,
              "citationStyles": "x", "year": "2020"} for i in range(1000)]
    with serve(json_answer({"data": items})) as (url, _):
        papers = await SemanticScholarSource(url, api_key="").search("grokking", 5, 2.0)
    assert [p.title for p in papers] == [f"Paper {i}" for i in range(5)]
    assert papers[0].authors == [] and papers[0].year is None
    with serve(json_answer({"results": [{"display_name": "W", "authorships": 3,
                                         "abstract_inverted_index": {"a": 5}}]})) as (url, _):
        works = await OpenAlexSource(url).search("grokking", 5, 2.0)
    assert works[0].title == "W" and works[0].abstract == ""
    with serve(json_answer({"results": {}})) as (url, _):
        with pytest.raises(SourceError, match="results"):
            await OpenAlexSource(url).search("grokking", 5, 2.0)


def test_not_http_at_all_is_one_source_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def talk() -> None:
        conn, _ = sock.accept()
        conn.recv(4096)
        conn.sendall(b"HELLO THERE\r\n" + b"X" * 70_000 + b"\r\n\r\n")
        conn.close()

    threading.Thread(target=talk, daemon=True).start()
    port = sock.getsockname()[1]
    with pytest.raises(SourceError, match="not a valid HTTP answer|connection failed"):
        asyncio.run(get_json(f"http://127.0.0.1:{port}/x", {}, {}, 2.0))
    sock.close()


async def test_a_dripped_body_is_bounded_and_does_not_starve_other_requests():
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    with serve(drip) as (slow, _), serve(json_answer({"data": [{"title": "ok"}]})) as (ok, _):
        t0 = time.monotonic()
        drips = [asyncio.create_task(get_json(slow, {}, {}, 1.0)) for _ in range(10)]
        for task in drips:
            # under load the server may not even answer the status line in time
            with pytest.raises(SourceError, match="no answer within|cannot connect"):
                await task
        assert time.monotonic() - t0 < 6.0  # each ends at its timeout, not at the drip's end
        papers = await SemanticScholarSource(ok, api_key="").search("q", 5, 2.0)
        assert [p.title for p in papers] == ["ok"]


async def test_redirects_to_another_host_are_refused_and_the_key_stays_home():
    with serve(json_answer({"data": []}), host="127.0.0.2") as (other, other_seen):
        def redirect(h: BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", f"{other}/paper/search")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with serve(redirect) as (url, _):
            with pytest.raises(SourceError, match="redirected to another host"):
                await SemanticScholarSource(url, api_key="SECRET").search("q", 5, 2.0)
    assert other_seen == []


async def test_a_half_open_trial_that_never_went_out_does_not_block_the_source(tmp_path):
    with serve(json_answer({"data": [{"title": "back"}]})) as (url, _):
        s = Settings()
        s.literature.semantic_scholar_url = url
        s.literature.openalex_url = url
        s.literature.breaker_threshold = 1
        s.literature.breaker_cooldown_s = 0.0
        s.literature.cache_ttl_days = 0
        lit = Literature(s, None)
        breaker = lit.breakers["semantic_scholar"]
        breaker.record_failure()  # open; with no cooldown the next request is a trial
        with pytest.raises(LiteratureUnavailable, match="deadline"):
            await lit.search("grokking", 2, deadline=time.monotonic())
        papers = await lit.search("grokking", 2)
        assert [p.title for p in papers] == ["back"]
        assert breaker.state == "closed"


def test_hostile_bibtex_and_titles():
    # a word run after the key used to take quadratic time (64 KB: a minute)
    assert parse_fields("@article{k," + "a" * 15_000) == {}
    assert parse_fields("@article{k," + "a" * 30_000 + "}") == {}  # over the bound: not read
    assert parse_fields("@article{k, volume = {3}, pages = {1--2}}") == {
        "volume": "3", "pages": "1--2"}
    # BibTeX counts braces whatever escapes them, and control characters are never printed
    text = latex_escape("Sets {x} and the } symbol\x00\x1b[2J\x07")
    assert "\\{" not in text and "\\}" not in text and text.count("{") == text.count("}")
    assert not any(ord(c) < 32 for c in text)
