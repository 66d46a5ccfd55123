"""The literature service every stage uses: cache first, then the configured sources in
order, each behind its own rate limiter, bounded retries and circuit breaker, within the
caller's deadline. When no source can answer, :class:`LiteratureUnavailable` is raised
promptly so the pipeline can ask the human (skip / retry) instead of hanging."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Protocol

from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.errors import ExternalServiceError, bounded_line
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.literature.bibtex import ensure_bibtex
from aisci.engine.literature.breaker import CircuitBreaker
from aisci.engine.literature.http import SourceError
from aisci.engine.literature.offline import OfflineSource
from aisci.engine.literature.openalex import OpenAlexSource
from aisci.engine.literature.paper import Paper
from aisci.engine.literature.ratelimit import DeadlinePassed, TokenBucket
from aisci.engine.literature.semantic_scholar import SemanticScholarSource


class LiteratureUnavailable(ExternalServiceError):
    """No literature source could answer (all down, breakers open, or deadline passed)."""

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class _NothingSent(SourceError):
    """The request was not sent (the deadline came first): a failure of nobody."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Source(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def has_key(self) -> bool: ...

    async def search(self, query: str, limit: int, timeout: float) -> list[Paper]: ...


def make_sources(settings: Settings) -> list[Source]:
    cfg = settings.literature
    out: list[Source] = []
    for name in cfg.sources:
        if name == "semantic_scholar":
            out.append(SemanticScholarSource(cfg.semantic_scholar_url))
        elif name == "openalex":
            out.append(OpenAlexSource(cfg.openalex_url, cfg.openalex_email))
        else:
            out.append(OfflineSource(cfg.offline_fixture))
    return out


def normalise_query(query: str) -> str:
    return " ".join(query.lower().split())


class Literature:
    """``await literature.search(query, limit=10, deadline=None)`` -> list[Paper]."""

    def __init__(self, settings: Settings, store: LabStore | None = None,
                 bus: EventBus | None = None, *, sources: list[Source] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.sources = sources if sources is not None else make_sources(settings)
        cfg = settings.literature
        self.breakers = {s.name: CircuitBreaker(cfg.breaker_threshold, cfg.breaker_cooldown_s)
                         for s in self.sources}
        self.limiters = {
            s.name: TokenBucket(cfg.requests_per_s_with_key if s.has_key
                                else cfg.requests_per_s_without_key)
            for s in self.sources}
        self.cache_hits = 0
        self.requests = 0
        self.last_source = ""

    # -- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"sources": {s.name: self.breakers[s.name].state for s in self.sources},
                "last_source": self.last_source, "cache_hits": self.cache_hits,
                "requests": self.requests}

    def _publish(self, source: str, detail: str) -> None:
        if self.bus is None:
            return
        breaker = self.breakers[source].state if source in self.breakers else "closed"
        self.bus.publish(ev.LiteratureStatus(source=source, breaker=breaker,
                                             cache_hits=self.cache_hits,
                                             requests=self.requests, detail=detail))

    # -- cache ---------------------------------------------------------------------------
    def _cache_key(self, query: str, limit: int) -> str:
        return f"{limit}|{normalise_query(query)}"

    def _from_cache(self, query: str, limit: int) -> list[Paper] | None:
        if self.store is None or self.settings.literature.cache_ttl_days <= 0:
            return None
        ttl = self.settings.literature.cache_ttl_days * 86400
        key = self._cache_key(query, limit)
        for s in self.sources:
            hit = self.store.cache_get(s.name, key, ttl)
            if hit is not None:
                results, age = hit
                self.cache_hits += 1
                self._publish(s.name, f"cache hit ({age / 3600:.1f} h old): {query!r}")
                return [Paper.from_dict(d) for d in results]
        return None

    # -- search --------------------------------------------------------------------------
    async def search(self, query: str, limit: int = 10, *,
                     deadline: float | None = None) -> list[Paper]:
        """Top ``limit`` papers for ``query``, each with BibTeX. ``deadline`` is a
        ``time.monotonic()`` value; without one, ``novelty.deadline_s`` from now."""
        if not query.strip():
            raise ValueError("literature search: the query is empty")
        cached = self._from_cache(query, limit)
        if cached is not None:
            return cached
        if deadline is None:
            deadline = time.monotonic() + self.settings.novelty.deadline_s
        errors: dict[str, str] = {}
        for source in self.sources:
            try:
                papers = await self._search_source(source, query, limit, deadline)
            except SourceError as exc:
                errors[source.name] = str(exc)
                continue
            self.last_source = source.name
            papers = [ensure_bibtex(p) for p in papers]
            if self.store is not None:
                self.store.cache_put(source.name, self._cache_key(query, limit),
                                     [p.to_dict() for p in papers])
            self._publish(source.name, f"{len(papers)} results for {query!r}")
            return papers
        summary = "; ".join(f"{k}: {v}" for k, v in errors.items()) or "no source configured"
        raise LiteratureUnavailable(f"literature unavailable for {bounded_line(query, 120)!r} "
                                    f"({bounded_line(summary, 600)})", errors)

    async def _search_source(self, source: Source, query: str, limit: int,
                             deadline: float) -> list[Paper]:
        cfg = self.settings.literature
        breaker = self.breakers[source.name]
        last: SourceError | None = None
        for attempt in range(cfg.max_retries + 1):
            if not breaker.allow():
                raise SourceError(
                    f"circuit open after {breaker.failures} failures, next trial in "
                    f"{breaker.seconds_until_trial():.0f} s" + (f" (last: {last})" if last else ""))
            try:
                papers = await self._request(source, query, limit, deadline, last)
            except _NothingSent:
                breaker.cancel_trial()  # nothing was sent, so nothing was learned
                raise
            except SourceError as exc:
                last = exc
                opened = breaker.record_failure()
                self._publish(source.name, f"request failed ({exc})"
                              + ("; circuit opened, failing over" if opened else ""))
                if not exc.retryable or breaker.state != "closed" or attempt >= cfg.max_retries:
                    raise
                wait = self._backoff(attempt, exc)
                if exc.retry_after is not None and exc.retry_after > cfg.retry_after_cap_s:
                    raise SourceError(f"{exc}; asked to wait {exc.retry_after:.0f} s") from None
                if time.monotonic() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
                continue
            breaker.record_success()
            return papers
        assert last is not None
        raise last

    async def _request(self, source: Source, query: str, limit: int, deadline: float,
                       last: SourceError | None) -> list[Paper]:
        try:
            if deadline - time.monotonic() <= 0.05:
                raise _NothingSent("deadline reached" + (f" (last: {last})" if last else ""))
            try:
                await self.limiters[source.name].acquire(deadline)
            except DeadlinePassed as exc:
                raise _NothingSent(str(exc)) from None
            self.requests += 1
            timeout = max(0.05, min(self.settings.literature.request_timeout_s,
                                    deadline - time.monotonic()))
            return await source.search(query, limit, timeout)
        except SourceError:
            raise
        except Exception as exc:  # a source's answer its parser could not take
            raise SourceError(f"{source.name}: unreadable answer ({type(exc).__name__})",
                              retryable=False) from exc
        except BaseException:  # cancelled: the half-open trial must not stay taken
            self.breakers[source.name].cancel_trial()
            raise

    def _backoff(self, attempt: int, exc: SourceError) -> float:
        cfg = self.settings.literature
        if exc.retry_after is not None:
            return min(exc.retry_after, cfg.retry_after_cap_s)
        return cfg.backoff_base_s * (2.0 ** attempt) * (0.75 + random.random() / 2)
