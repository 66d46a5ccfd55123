"""Cost of a call from a dated price table shipped as data (``engine/data/prices.toml``).

Unknown models cost ``None`` ("unknown"), never a guess.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aisci.engine.resources import data_dir

# A dated snapshot suffix: -20250929, -2024-08-06, @20250929 (Vertex).
_SNAPSHOT = re.compile(r"[-@](\d{8}|\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float
    """US dollars per million tokens."""
    long_prompt: Price | None = None
    """Rates for every token of a call whose prompt (input + cache reads + cache writes)
    exceeds ``long_prompt_tokens`` (some models are priced in two bands)."""
    long_prompt_tokens: int = 0

    def for_prompt(self, prompt_tokens: int) -> Price:
        if self.long_prompt is not None and prompt_tokens > self.long_prompt_tokens:
            return self.long_prompt
        return self


def _price(p: dict[str, Any]) -> Price:
    inp = float(p["input"])
    return Price(input=inp, output=float(p["output"]),
                 cache_write=float(p.get("cache_write", inp)),
                 cache_read=float(p.get("cache_read", inp)))


class PriceTable:
    def __init__(self, prices: dict[str, Price], as_of: str, free_providers: set[str]) -> None:
        self.prices = prices
        self.as_of = as_of
        self.free_providers = free_providers

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        path = path or data_dir() / "prices.toml"
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
        prices: dict[str, Price] = {}
        for key, p in raw.get("models", {}).items():
            price = _price(p)
            long = p.get("long_prompt")
            if isinstance(long, dict):
                price = replace(price, long_prompt=_price(long),
                                long_prompt_tokens=int(long["threshold_tokens"]))
            prices[key] = price
        return cls(prices, str(raw.get("as_of", "")), set(raw.get("free_providers", [])))

    def lookup(self, provider: str, model: str) -> Price | None:
        for key in (f"{provider}:{model}", model):
            if key in self.prices:
                return self.prices[key]
        # Dated snapshots ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06") price like
        # their family; nothing else does ("claude-sonnet-5-5" is not "claude-sonnet-5",
        # "gpt-5-nano" is not "gpt-5").
        for key, price in self.prices.items():
            if ":" in key and not key.startswith(f"{provider}:"):
                continue
            name = key.split(":", 1)[-1]
            if model.startswith(name) and _SNAPSHOT.fullmatch(model[len(name):]):
                return price
        return None

    def cost(self, provider: str, model: str, *, input_tokens: int = 0, output_tokens: int = 0,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> float | None:
        if provider in self.free_providers:
            return 0.0
        price = self.lookup(provider, model)
        if price is None:
            return None
        price = price.for_prompt(input_tokens + cache_read_tokens + cache_write_tokens)
        return (input_tokens * price.input + output_tokens * price.output
                + cache_read_tokens * price.cache_read
                + cache_write_tokens * price.cache_write) / 1_000_000
