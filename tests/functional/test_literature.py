"""Literature layer against the loopback S2/OpenAlex server: failover on 429 through the
circuit breaker, cache, deadline, both-down, Retry-After, the offline source."""

from __future__ import annotations

import time

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, LiteratureStatus
from aisci.engine.lab.store import LabStore
from aisci.engine.literature import Literature, LiteratureUnavailable
from aisci.engine.literature.breaker import CircuitBreaker
from aisci.engine.literature.openalex import rebuild_abstract
from aisci.engine.literature.ratelimit import DeadlinePassed, TokenBucket
from support.literature_server import LiteratureServer


@pytest.fixture
def server():
    with LiteratureServer() as srv:
        yield srv


def make_settings(srv: LiteratureServer, **lit) -> Settings:
    s = Settings()
    s.literature.semantic_scholar_url = srv.s2_url
    s.literature.openalex_url = srv.openalex_url
    s.literature.requests_per_s_without_key = 200.0
    s.literature.backoff_base_s = 0.01
    s.literature.request_timeout_s = 2.0
    for k, v in lit.items():
        setattr(s.literature, k, v)
    return s


@pytest.fixture
def store(tmp_path):
    st = LabStore(tmp_path)
    yield st
    st.close()


async def test_semantic_scholar_shape_parsed(server, store, monkeypatch):
    monkeypatch.delenv("S2_API_KEY", raising=False)
    lit = Literature(make_settings(server), store, EventBus())
    papers = await lit.search("grokking generalization small algorithmic datasets", limit=5)
    assert papers and papers[0].source == "semantic_scholar"
    top = papers[0]
    assert top.title.startswith("Grokking")
    assert top.authors[0] == "Alethea Power" and top.year == 2022
    assert top.abstract and top.citation_count
    assert top.cite_key == "power2022grokking"
    rec = server.requests[0]
    assert rec.params["limit"] == "5" and "citationStyles" in rec.params["fields"]
    assert "x-api-key" not in rec.headers


async def test_api_key_header_sent(server, store, monkeypatch):
    monkeypatch.setenv("S2_API_KEY", "k-123")
    lit = Literature(make_settings(server), store)
    await lit.search("diffusion", limit=3)
    assert server.requests[0].headers["x-api-key"] == "k-123"


async def test_429_opens_breaker_and_fails_over_to_openalex(server, store, monkeypatch):
    monkeypatch.delenv("S2_API_KEY", raising=False)
    server.fail_always("s2", "429")
    bus = EventBus()
    sub = bus.subscribe(kinds=(LiteratureStatus,))
    settings = make_settings(server, breaker_threshold=3, max_retries=5)
    lit = Literature(settings, store, bus)
    t0 = time.monotonic()
    papers = await lit.search("denoising diffusion probabilistic models", limit=4,
                              deadline=time.monotonic() + 10)
    assert time.monotonic() - t0 < 5
    assert server.count("s2") == 3  # threshold reached, no further retries
    assert lit.breakers["semantic_scholar"].state == "open"
    assert papers and all(p.source == "openalex" for p in papers)
    assert papers[0].abstract.startswith("Presents high-quality image synthesis")
    # OpenAlex gives no BibTeX: we build one under a stable key.
    assert papers[0].bibtex.startswith("@inproceedings{ho2020denoising,")
    # The open breaker sends the next query straight to OpenAlex.
    await lit.search("weight decay regularization", limit=3)
    assert server.count("s2") == 3
    states = [e.breaker for e in sub.drain() if e.source == "semantic_scholar"]
    assert "open" in states


async def test_half_open_trial_closes_breaker(server, store):
    settings = make_settings(server, breaker_threshold=2, max_retries=0,
                             breaker_cooldown_s=0.2, cache_ttl_days=0)
    server.fail("s2", "500", times=2)
    lit = Literature(settings, store)
    await lit.search("grokking", limit=2)
    await lit.search("grokking", limit=2)
    assert lit.breakers["semantic_scholar"].state == "open"
    time.sleep(0.25)
    papers = await lit.search("grokking", limit=2)
    assert papers[0].source == "semantic_scholar"
    assert lit.breakers["semantic_scholar"].state == "closed"


async def test_cached_queries_not_resent(server, store):
    lit = Literature(make_settings(server), store)
    first = await lit.search("Grokking  weight decay", limit=5)
    n = len(server.requests)
    again = await lit.search("grokking weight decay", limit=5)
    assert len(server.requests) == n
    assert [p.to_dict() for p in again] == [p.to_dict() for p in first]
    assert lit.cache_hits == 1
    # A fresh service on the same lab reuses the on-disk cache.
    lit2 = Literature(make_settings(server), store)
    await lit2.search("grokking weight decay", limit=5)
    assert len(server.requests) == n


async def test_both_down_raises_within_deadline(server, store):
    server.fail_always("s2", "500")
    server.fail_always("openalex", "slow", delay=5.0)
    lit = Literature(make_settings(server, max_retries=10, breaker_threshold=20), store)
    t0 = time.monotonic()
    with pytest.raises(LiteratureUnavailable) as info:
        await lit.search("grokking", limit=3, deadline=time.monotonic() + 1.5)
    assert time.monotonic() - t0 < 2.5
    assert set(info.value.errors) == {"semantic_scholar", "openalex"}


async def test_both_breakers_open_fails_fast(server, store):
    server.fail_always("s2", "429")
    server.fail_always("openalex", "500")
    lit = Literature(make_settings(server, breaker_threshold=2, max_retries=3), store)
    with pytest.raises(LiteratureUnavailable):
        await lit.search("grokking", limit=3)
    n = len(server.requests)
    t0 = time.monotonic()
    with pytest.raises(LiteratureUnavailable, match="circuit open"):
        await lit.search("transformers", limit=3)
    assert time.monotonic() - t0 < 0.5 and len(server.requests) == n


async def test_long_retry_after_fails_over_instead_of_waiting(server, store):
    server.retry_after = "3600"
    server.fail("s2", "429", times=1)
    lit = Literature(make_settings(server, breaker_threshold=5), store)
    t0 = time.monotonic()
    papers = await lit.search("grokking", limit=2)
    assert time.monotonic() - t0 < 2 and papers[0].source == "openalex"


async def test_openalex_polite_pool_email(server, store):
    lit = Literature(make_settings(server, sources=["openalex"], openalex_email="me@lab.org"),
                     store)
    await lit.search("double descent", limit=3)
    assert server.requests[0].params["mailto"] == "me@lab.org"
    assert server.requests[0].params["per-page"] == "3"


async def test_offline_source_uses_bundled_fixture(tmp_path):
    s = Settings()
    s.literature.sources = ["offline"]
    lit = Literature(s, None)
    papers = await lit.search("grokking modular arithmetic", limit=3)
    assert papers[0].source == "offline" and "rokking" in papers[0].title
    assert all(p.bibtex.startswith("@") for p in papers)


def test_rebuild_abstract():
    assert rebuild_abstract({"world": [1], "hello": [0, 2]}) == "hello world hello"
    assert rebuild_abstract(None) == ""


async def test_token_bucket_spaces_requests():
    bucket = TokenBucket(rate=20.0)
    t0 = time.monotonic()
    for _ in range(5):
        await bucket.acquire()
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < 0.6  # first is free, then 4 x 50 ms
    with pytest.raises(DeadlinePassed):
        slow = TokenBucket(rate=0.5)
        await slow.acquire()
        await slow.acquire(deadline=time.monotonic() + 0.1)


def test_breaker_states():
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    assert b.allow() and not b.record_failure()
    assert b.record_failure() and b.state == "open" and not b.allow()
    now[0] = 11
    assert b.state == "half-open" and b.allow() and not b.allow()
    assert b.record_failure() and b.state == "open"
    now[0] = 22
    assert b.allow()
    b.record_success()
    assert b.state == "closed"
