"""The dated price table: exact models, dated snapshots of a family, and nothing else."""

from __future__ import annotations

import pytest
from aisci.engine.llm.pricing import PriceTable


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_default_model_is_priced(table):
    from aisci.engine.config import Settings

    provider, model = Settings().models.default.split(":", 1)
    assert table.lookup(provider, model) is not None, "the default model must have a price"


@pytest.mark.parametrize("provider,model,family", [
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
])
def test_dated_snapshots_price_like_their_family(table, provider, model, family):
    assert table.lookup(provider, model) == table.lookup(provider, family)


@pytest.mark.parametrize("provider,model", [
    ("openai", "gpt-5-nano"),          # not gpt-5
    ("anthropic", "claude-haiku-5-9"),  # a model not in the table
    ("openai", "claude-sonnet-5-5"),    # another provider's key does not match
])
def test_no_guessing_from_a_name_prefix(table, provider, model):
    assert table.lookup(provider, model) is None
    assert table.cost(provider, model, input_tokens=1000) is None


def test_sonnet_5_5_is_not_priced_as_sonnet_5(table):
    assert table.lookup("anthropic", "claude-sonnet-5-5").cache_read == 0.1
    assert table.lookup("anthropic", "claude-sonnet-5").cache_read == 0.2
    cost = table.cost("anthropic", "claude-sonnet-5-5", input_tokens=1_000_000,
                      output_tokens=100_000, cache_read_tokens=2_000_000,
                      cache_write_tokens=400_000)
    assert cost == pytest.approx(2.0 + 1.0 + 0.2 + 1.0)


def test_two_band_model_prices_the_whole_call_by_prompt_length(table):
    short = table.cost("anthropic", "claude-haiku-5-5", input_tokens=50_000,
                       cache_read_tokens=50_000, output_tokens=10_000)
    assert short == pytest.approx((50_000 * 0.1 + 50_000 * 0.01 + 10_000 * 0.5) / 1e6)
    long = table.cost("anthropic", "claude-haiku-5-5", input_tokens=50_001,
                      cache_read_tokens=50_000, output_tokens=10_000)
    assert long == pytest.approx((50_001 * 0.5 + 50_000 * 0.05 + 10_000 * 2.5) / 1e6)
