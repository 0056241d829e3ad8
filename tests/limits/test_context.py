"""The context-window check: refused before any money is spent, or moved to a larger model."""

from __future__ import annotations

import pytest

from aiwire import errors
from aiwire.client import AsyncClient
from aiwire.config import Config
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorServer

# ~700 000 characters of varied words: well past gpt-4o-mini's 128 000-token window.
HUGE = " ".join(f"word{i % 997} lorem{i % 13}" for i in range(60_000))


def config(url: str) -> Config:
    key = Secret("sim-key", "t")
    return Config.from_dict(
        {
            "providers": {
                "oai": {"type": "openai", "base_url": f"{url}/v1", "api_key": key},
                "gem": {"type": "gemini", "base_url": url, "api_key": key},
            },
            "models": [
                {"name": "small", "provider": "oai", "model": "gpt-4o-mini"},
                {"name": "roomy", "provider": "oai", "model": "gpt-4o-mini",
                 "context_window_fallbacks": ["big"]},
                {"name": "big", "provider": "gem", "model": "gemini-2.5-pro"},
            ],
            "router": {"retries": 0},
        },
        source="test",
    )  # fmt: skip


async def test_too_long_is_refused_before_anything_is_sent(simulator: SimulatorServer) -> None:
    counts = simulator.app.sim.limiter.counts  # type: ignore[attr-defined]
    before = sum(counts.values())
    async with AsyncClient(config(simulator.url)) as client:
        with pytest.raises(errors.ContextWindowExceededError) as info:
            await client.chat("small", HUGE)
    assert info.value.code == "context_window_exceeded"
    assert "128,000" in info.value.message and "gpt-4o-mini" in info.value.message
    assert sum(counts.values()) == before  # the provider never saw it: nothing was billed


async def test_a_request_that_fits_is_not_counted_or_refused(simulator: SimulatorServer) -> None:
    async with AsyncClient(config(simulator.url)) as client:
        resp = await client.chat("small", "short question", max_tokens=20)
    assert resp.text


async def test_too_long_moves_to_the_configured_larger_model(simulator: SimulatorServer) -> None:
    async with AsyncClient(config(simulator.url)) as client:
        resp = await client.chat("roomy", HUGE, max_tokens=10)
    assert resp.deployment is not None and resp.deployment.startswith("big@")
