"""The semantic cache with real local embeddings: a paraphrased question is served from the cache
above its threshold and not below, only within its model, context and tenant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.breadth.conftest import MASTER, Gateway, breadth_config, require_local

from aiwire.cache import (
    CacheConfig,
    Entry,
    SemanticCache,
    SemanticConfig,
    open_semantic,
    scope_for,
)
from aiwire.config import Config, ConfigError, DeploymentConfig, ProviderConfig
from aiwire.providers.base import Timeouts
from aiwire.providers.local import MODEL, LocalEmbeddingProvider
from aiwire.router import Router
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer
from aiwire.types import ChatRequest, EmbeddingRequest, ImagePart, ImageURL, Message, TextPart

QUESTION = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I change it?"
UNRELATED = "What is the weather in Oslo today?"
KEY_A, KEY_B = scope_for("key", "key-a", None), scope_for("key", "key-b", None)


@pytest.fixture(autouse=True)
def _local(local_type: None) -> None:
    require_local()


async def embed(texts: list[str]) -> list[list[float]]:
    provider = LocalEmbeddingProvider(name="local")
    return (await provider.embed(EmbeddingRequest(model=MODEL, input=texts), Timeouts())).vectors


def ask(text: str, model: str = "sim-gpt", system: str | None = None, **params: Any) -> ChatRequest:
    messages = [Message(role="system", content=system)] if system else []
    return ChatRequest(
        model=model, messages=[*messages, Message(role="user", content=text)], **params
    )


def answer(text: str) -> Entry:
    return Entry.whole(f'{{"answer":"{text}"}}'.encode(), usage=None, ttl=60)


async def similarity(a: str, b: str) -> float:
    va, vb = await embed([a, b])
    return sum(x * y for x, y in zip(va, vb, strict=True))


async def test_a_paraphrase_is_served_above_the_threshold_and_not_below() -> None:
    measured = await similarity(QUESTION, PARAPHRASE)
    assert 0.6 < measured < 0.95  # the premise: a close paraphrase, not the same text
    for threshold, served in ((measured - 0.05, True), (measured + 0.05, False)):
        cache = SemanticCache(embed, threshold=threshold)
        assert await cache.store(KEY_A, "openai", ask(QUESTION), False, answer("reset it"))
        hit = await cache.find(KEY_A, "openai", ask(PARAPHRASE), False)
        assert (hit is not None) is served, threshold
        if hit is not None:
            assert hit.entry.body == b'{"answer":"reset it"}' and hit.question == QUESTION
            assert hit.similarity == pytest.approx(measured, abs=1e-3)
        # an unrelated question never is, whatever the threshold here
        assert await cache.lookup(KEY_A, "openai", ask(UNRELATED), False) is None


async def test_entries_stay_within_their_model_context_and_tenant() -> None:
    cache = SemanticCache(embed, threshold=0.7)
    await cache.store(KEY_A, "openai", ask(QUESTION, system="Be brief."), False, answer("a"))
    same = ask(PARAPHRASE, system="Be brief.")
    assert await cache.lookup(KEY_A, "openai", same, False) is not None
    misses = [
        (KEY_B, "openai", same, False),  # another key
        (KEY_A, "openai", ask(PARAPHRASE, model="sim-claude", system="Be brief."), False),
        (KEY_A, "openai", ask(PARAPHRASE, system="Answer in French."), False),
        (KEY_A, "openai", ask(PARAPHRASE, system="Be brief.", temperature=0.9), False),
        (KEY_A, "anthropic", same, False),  # another client protocol: other bytes
        (KEY_A, "openai", same, True),  # a stream's entry is SSE, not a body
    ]
    for args in misses:
        assert await cache.lookup(*args) is None, args[:2]


async def test_a_global_scope_shares_across_keys_when_configured() -> None:
    shared = scope_for("global", "key-a", None)
    assert shared == scope_for("global", "key-b", None)
    cache = SemanticCache(embed, threshold=0.7)
    await cache.store(shared, "openai", ask(QUESTION), False, answer("a"))
    assert await cache.lookup(shared, "openai", ask(PARAPHRASE), False) is not None


async def test_questions_it_cannot_judge_are_not_cached() -> None:
    cache = SemanticCache(embed, threshold=0.7, max_question_chars=100)
    with_image = ChatRequest(
        model="m",
        messages=[
            Message(
                role="user",
                content=[
                    TextPart(text="What is this?"),
                    ImagePart(image_url=ImageURL(url="data:image/png;base64,AAAA")),
                ],
            )
        ],
    )
    long = ask("Summarise: " + "the quarterly report says many things. " * 10)
    after_tool = ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi"), Message(role="assistant", content="yo")],
    )
    for request in (with_image, long, after_tool):
        assert cache.question(request) is None
        assert not await cache.store(KEY_A, "openai", request, False, answer("x"))
        assert await cache.lookup(KEY_A, "openai", request, False) is None
    assert cache.stats().skipped == 3


async def test_entries_expire_and_the_oldest_go_first() -> None:
    now = [0.0]
    cache = SemanticCache(embed, threshold=0.7, ttl=10, max_entries=2, clock=lambda: now[0])
    short = Entry.whole(b"{}", usage=None, ttl=5)
    await cache.store(KEY_A, "openai", ask(QUESTION), False, short)
    now[0] = 6
    assert await cache.lookup(KEY_A, "openai", ask(PARAPHRASE), False) is None  # expired
    for i, text in enumerate((QUESTION, UNRELATED, "The cat is sleeping on the sofa.")):
        await cache.store(KEY_A, "openai", ask(text), False, answer(str(i)))
    assert cache.stats().entries == 2 and cache.stats().evictions == 1
    assert await cache.lookup(KEY_A, "openai", ask(PARAPHRASE), False) is None  # evicted
    assert await cache.lookup(KEY_A, "openai", ask("A kitten naps on the couch."), False)


async def test_a_failing_embedder_is_a_miss_not_an_error() -> None:
    down = [False]

    async def flaky(texts: list[str]) -> list[list[float]]:
        if down[0]:
            raise ConnectionError("embedding service down")
        return await embed(texts)

    cache = SemanticCache(flaky, threshold=0.7)
    assert await cache.lookup(KEY_A, "openai", ask(QUESTION), False) is None
    assert cache.stats().misses == 1  # nothing stored there yet: not even embedded
    assert await cache.store(KEY_A, "openai", ask(QUESTION), False, answer("a"))
    down[0] = True
    assert await cache.lookup(KEY_A, "openai", ask(PARAPHRASE), False) is None
    assert not await cache.store(KEY_A, "openai", ask(UNRELATED), False, answer("b"))
    assert cache.stats().embed_errors == 2


async def test_config_builds_it_over_a_router_embeddings_model() -> None:
    config = Config.from_dict(
        {
            "providers": {"local": {"type": "local"}},
            "models": [{"name": "local-embed", "provider": "local", "model": MODEL}],
            "cache": {"semantic": {"model": "local-embed", "threshold": 0.75}},
        }
    )
    assert isinstance(config.cache.semantic, SemanticConfig)
    router = Router.from_config(config)
    cache = open_semantic(config.cache.semantic, router, ttl=config.cache.ttl)
    assert cache is not None and cache.threshold == 0.75
    await cache.store(KEY_A, "openai", ask(QUESTION), False, answer("a"))
    assert await cache.lookup(KEY_A, "openai", ask(PARAPHRASE), False) is not None
    assert open_semantic(None, router, ttl=60) is None
    await router.aclose()


def test_the_gateway_serves_a_paraphrase_from_the_semantic_cache(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = breadth_config(
        simulator.url,
        providers={"local": ProviderConfig(type="local")},
        models=[DeploymentConfig(name="local-embed", provider="local", model=MODEL)],
        cache=CacheConfig(semantic=SemanticConfig(model="local-embed", threshold=0.6)),
    )
    parts = build_gateway(
        config, store_url=f"sqlite:///{tmp_path / 'a.db'}", master_key=Secret(MASTER)
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        gw = Gateway(server, parts, tmp_path / "a.db")
        alice, bob = gw.key(), gw.key()

        def ask_gw(text: str, key: str) -> httpx.Response:
            body = {"model": "sim-gpt", "temperature": 0, "max_tokens": 20,
                    "messages": [{"role": "user", "content": text}]}  # fmt: skip
            r = httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
            assert r.status_code == 200, r.text
            return r

        first = ask_gw(QUESTION, alice)
        assert first.headers["x-aiwire-cache"] == "miss"
        again = ask_gw(PARAPHRASE, alice)
        assert again.headers["x-aiwire-cache"] == "hit" and again.content == first.content
        assert gw.row(again.headers["x-request-id"], "cache_hit, cost_usd") == (1, 0.0)
        assert ask_gw(UNRELATED, alice).headers["x-aiwire-cache"] == "miss"
        # never across keys (cache.scope defaults to the key)
        assert ask_gw(PARAPHRASE, bob).headers["x-aiwire-cache"] == "miss"
    assert parts.gateway.semantic is not None and parts.gateway.semantic.stats().hits == 1


def test_a_semantic_cache_must_name_a_configured_model() -> None:
    with pytest.raises(ConfigError, match=r"cache\.semantic\.model: .nope. is not a model name"):
        Config.from_dict({"cache": {"semantic": {"model": "nope"}}})
