"""The model catalog: shipped data, lookups, cost arithmetic, context checks and overrides."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aiwire import catalog, errors
from aiwire.catalog import CatalogConfig, ModelInfo, UnknownModelError
from aiwire.config import SIMULATOR_MODELS
from aiwire.types import EmbeddingUsage, Usage


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.load()


# --- shipped data --------------------------------------------------------------------------------


REQUIRED = [
    # OpenAI
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
    # Anthropic 4.x and 3.x
    "claude-sonnet-4-5",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "claude-3-7-sonnet",
    "claude-3-5-haiku",
    "claude-3-haiku",
    # Gemini
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-embedding-001",
]


def test_shipped_catalog_covers_the_current_models(cat: catalog.Catalog) -> None:
    missing = [m for m in REQUIRED if getattr(cat.lookup(m), "id", None) != m]
    assert not missing
    assert cat.as_of == "2026-12-02"
    assert "LiteLLM" in cat.source and "OpenAI" in cat.source


def test_simulator_models_carry_the_real_models_figures(cat: catalog.Catalog) -> None:
    for name, _provider, upstream in SIMULATOR_MODELS:
        sim, real = cat.lookup(name), cat.lookup(upstream)
        assert sim is not None and real is not None, name
        assert sim.provider == "simulator"
        for field in ("input_per_1m", "cached_input_per_1m", "output_per_1m", "context_window"):
            assert getattr(sim, field) == getattr(real, field), (name, field)
        assert not sim.deprecated  # the simulator never retires


def test_every_entry_is_consistent(cat: catalog.Catalog) -> None:
    seen: set[str] = set()
    for info in cat:
        assert info.max_output_tokens <= info.context_window, info.id
        if info.cached_input_per_1m is not None:
            assert info.cached_input_per_1m < info.input_per_1m, info.id
        if info.mode == "embedding":
            assert info.modalities == ("embeddings",) and info.output_per_1m == 0, info.id
        else:
            assert info.output_per_1m > 0 and "text" in info.modalities, info.id
        if info.replacement is not None:
            assert cat.lookup(info.replacement) is not None, info.id
        for name in (info.id, *info.aliases):
            assert name.lower() not in seen, f"{name} names two entries"
            seen.add(name.lower())


def test_deprecated_models_are_marked(cat: catalog.Catalog) -> None:
    old = cat.lookup("gpt-3.5-turbo")
    assert old is not None and old.deprecated
    assert old.deprecation_date == dt.date(2026, 10, 23) and old.replacement == "gpt-4.1-mini"
    assert old.retired(dt.date(2026, 10, 24)) and not old.retired(dt.date(2026, 10, 23))
    current = cat.lookup("gpt-4o")
    assert current is not None and not current.deprecated and not current.retired()


# --- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # alias
        ("GPT-4o-Mini-2024-07-18", "gpt-4o-mini"),  # case
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20991231", "claude-haiku-4-5"),  # unlisted dated variant: prefix
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),  # not claude-opus-4
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
        ("o3-pro-2025-06-10", "o3-pro"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an own entry beats the gpt-4o prefix
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("sim-claude", "sim-claude"),
    ],
)
def test_lookup(cat: catalog.Catalog, asked: str, found: str) -> None:
    info = cat.lookup(asked)
    assert info is not None and info.id == found


@pytest.mark.parametrize(
    "asked",
    [
        "gpt-4o-mini-tts",  # another product sharing a prefix
        "gpt-4o-mini-search-preview",
        "claude-sonnet-4-9",  # a newer model must not be priced as an older one
        "gpt-6",
        "my-finetune",
        "",
    ],
)
def test_unknown_models_are_not_guessed(cat: catalog.Catalog, asked: str) -> None:
    assert cat.lookup(asked) is None
    assert asked not in cat


def test_dated_snapshot_with_its_own_price(cat: catalog.Catalog) -> None:
    old, new = cat.lookup("gpt-4o-2024-05-13"), cat.lookup("gpt-4o-2024-11-20")
    assert old is not None and new is not None
    assert (old.input_per_1m, old.output_per_1m) == (5.0, 15.0)
    assert (new.input_per_1m, new.output_per_1m) == (2.5, 10.0)


# --- cost -----------------------------------------------------------------------------------------


def test_cost_bills_cached_input_at_the_cached_price(cat: catalog.Catalog) -> None:
    # gpt-4o: 2.50 in, 1.25 cached, 10.00 out per 1M; prompt_tokens includes the cached 200.
    usage = Usage.of(input_tokens=1000, output_tokens=500, cached_input_tokens=200)
    assert cat.cost("gpt-4o", usage) == pytest.approx((800 * 2.5 + 200 * 1.25 + 500 * 10) / 1e6)
    assert cat.cost("gpt-4o-2024-08-06", usage) == cat.cost("gpt-4o", usage)
    no_cache = Usage.of(1000, 500)
    assert cat.cost("gpt-4o", no_cache) == pytest.approx(0.0075)
    assert cat.cost("gpt-4o", usage) < cat.cost("gpt-4o", no_cache)


def test_cost_without_a_cached_price_bills_cached_tokens_as_input(cat: catalog.Catalog) -> None:
    usage = Usage.of(1000, 0, cached_input_tokens=600)
    assert cat.cost("o3-pro", usage) == pytest.approx(1000 * 20 / 1e6)


def test_cached_count_above_prompt_is_clamped(cat: catalog.Catalog) -> None:
    usage = Usage(
        prompt_tokens=100, completion_tokens=0, prompt_tokens_details={"cached_tokens": 500}
    )
    assert cat.cost("gpt-4o", usage) == pytest.approx(100 * 1.25 / 1e6)


def test_embeddings_bill_input_only(cat: catalog.Catalog) -> None:
    assert cat.cost("text-embedding-3-small", EmbeddingUsage(prompt_tokens=1_000_000)) == 0.02
    assert cat.cost("text-embedding-3-small", Usage.of(1_000_000, 999)) == 0.02


def test_long_context_tier_applies_to_the_whole_request(cat: catalog.Catalog) -> None:
    at, over = Usage.of(200_000, 1000), Usage.of(200_001, 1000)
    assert cat.cost("gemini-2.5-pro", at) == pytest.approx((200_000 * 1.25 + 1000 * 10) / 1e6)
    assert cat.cost("gemini-2.5-pro", over) == pytest.approx((200_001 * 2.5 + 1000 * 15) / 1e6)


def test_cost_of_an_unknown_model_is_an_error_not_zero(cat: catalog.Catalog) -> None:
    with pytest.raises(UnknownModelError, match="catalog:") as caught:
        cat.cost("my-finetune", Usage.of(10, 10))
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, errors.ConfigError)


def test_max_cost_reserves_full_output_at_uncached_prices(cat: catalog.Catalog) -> None:
    # gpt-4o-mini: 0.15 in, 0.60 out, 16 384 max output.
    assert cat.max_cost("gpt-4o-mini", 1000, 500) == pytest.approx((1000 * 0.15 + 500 * 0.6) / 1e6)
    assert cat.max_cost("gpt-4o-mini", 1000) == pytest.approx((1000 * 0.15 + 16384 * 0.6) / 1e6)
    assert cat.max_cost("gpt-4o-mini", 1000, 10**9) == cat.max_cost("gpt-4o-mini", 1000)
    actual = cat.cost("gpt-4o-mini", Usage.of(1000, 500, cached_input_tokens=800))
    assert actual <= cat.max_cost("gpt-4o-mini", 1000, 500)
    assert cat.max_cost("text-embedding-3-large", 1000, 500) == pytest.approx(1000 * 0.13 / 1e6)


# --- context window -------------------------------------------------------------------------------


def test_context_check_passes_up_to_the_window(cat: catalog.Catalog) -> None:
    cat.context_check("gpt-4o", 120_000, 8_000)  # exactly 128 000
    cat.context_check("gpt-4o", 128_000)
    cat.context_check("my-finetune", 10**9, 10**9)  # unknown: nothing to check against


def test_context_check_refuses_before_spending(cat: catalog.Catalog) -> None:
    with pytest.raises(errors.ContextWindowExceededError) as caught:
        cat.context_check("gpt-4o-2024-08-06", 125_000, 5_000)
    err = caught.value
    assert err.code == "context_window_exceeded" and err.status == 400 and not err.retryable
    assert isinstance(err, errors.BadRequestError)
    assert "130,000" in err.message and "125,000" in err.message and "5,000" in err.message
    assert "128,000" in err.message and "max_tokens to at most 3,000" in err.message


def test_context_check_when_the_prompt_alone_is_too_long(cat: catalog.Catalog) -> None:
    with pytest.raises(errors.ContextWindowExceededError, match="shorten the messages"):
        cat.context_check("claude-haiku-4-5", 250_000)


# --- overrides ------------------------------------------------------------------------------------


def _override(data: dict[str, Any]) -> catalog.Catalog:
    return catalog.load(CatalogConfig.model_validate(data))


def test_override_changes_only_the_given_fields() -> None:
    cat = _override({"gpt-4o": {"input_per_1m": 2.0}})
    info = cat.lookup("gpt-4o-2024-11-20")
    assert info is not None
    assert (info.input_per_1m, info.output_per_1m, info.cached_input_per_1m) == (2.0, 10.0, 1.25)
    assert catalog.load().require("gpt-4o").input_per_1m == 2.5


def test_override_adds_a_model_from_a_config_file() -> None:
    text = """
catalog:
  acme-ft-1:
    provider: openai
    input_per_1m: 0.30
    output_per_1m: 1.20
    context_window: 128000
    aliases: [ft:gpt-4o-mini-2024-07-18:acme::x1]
"""
    cat = catalog.load(CatalogConfig.model_validate(yaml.safe_load(text)["catalog"]))
    info = cat.lookup("ft:gpt-4o-mini-2024-07-18:acme::x1")
    assert info is not None and info.id == "acme-ft-1"
    assert info.max_output_tokens == 128000 and info.modalities == ("text",)
    assert cat.cost("acme-ft-1", Usage.of(1_000_000, 1_000_000)) == pytest.approx(1.5)


def test_override_of_a_dated_variant_makes_its_own_entry() -> None:
    cat = _override({"gpt-4o-2024-11-20": {"output_per_1m": 12.0}})
    dated, base = cat.lookup("gpt-4o-2024-11-20"), cat.lookup("gpt-4o")
    assert dated is not None and base is not None
    assert dated.id == "gpt-4o-2024-11-20" and dated.output_per_1m == 12.0
    assert dated.input_per_1m == 2.5 and dated.aliases == ()
    assert base.output_per_1m == 10.0


def test_override_can_clear_a_deprecation() -> None:
    cat = _override({"gpt-3.5-turbo": {"deprecation_date": None, "replacement": None}})
    info = cat.lookup("gpt-3.5-turbo")
    assert info is not None and not info.deprecated and info.input_per_1m == 0.5


def test_new_model_without_its_prices_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match=r"catalog\.mine: .* needs output_per_1m$"):
        _override({"mine": {"provider": "openai", "input_per_1m": 1, "context_window": 1000}})
    with pytest.raises(errors.ConfigError, match="provider, input_per_1m, context_window"):
        _override({"mine": {"output_per_1m": 1}})
    # An embedding model has no output price to give.
    emb = _override(
        {"emb": {"provider": "x", "mode": "embedding", "input_per_1m": 1, "context_window": 512}}
    )
    assert emb.lookup("emb") is not None


def test_invalid_override_names_the_entry() -> None:
    with pytest.raises(errors.ConfigError, match=r"catalog\.gpt-4o: max_output_tokens: .*0"):
        catalog.load({"gpt-4o": {"max_output_tokens": -1}})
    with pytest.raises(errors.ConfigError, match=r"catalog\.gpt-4o: price: Extra inputs"):
        catalog.load({"gpt-4o": {"price": 1}})
    with pytest.raises(errors.ConfigError, match="more than its context window"):
        catalog.load({"gpt-4o": {"max_output_tokens": 200_000}})
    with pytest.raises(ValidationError):  # Config.from_file reports these with file and line
        CatalogConfig.model_validate({"gpt-4o": {"input_per_1m": -1}})


def test_catalog_config_defaults_to_empty() -> None:
    assert CatalogConfig().root == {}
    assert len(catalog.load(CatalogConfig())) == len(catalog.load())


def test_model_info_price_is_pure() -> None:
    info = ModelInfo(
        id="m",
        provider="p",
        input_per_1m=1,
        output_per_1m=2,
        context_window=10,
        max_output_tokens=5,
    )
    assert info.price(1_000_000, 1_000_000, 500_000) == 3.0  # no cached price: input price
