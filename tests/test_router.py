"""Router behaviour: retries, backoff honouring retry-after, fallbacks, timeouts, circuit breaker,
load balancing, and the rule that a stream is never retried after its first chunk."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aiwire import errors
from aiwire.config import RouterConfig
from aiwire.providers.base import FEATURES, Capabilities, Provider, Support, Timeouts
from aiwire.router import AttemptEvent, Deployment, Router
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
)

Outcome = Exception | str  # an error to raise, or the text to answer


class Scripted(Provider):
    """A provider whose answers are a script: each call takes the next outcome."""

    type = "scripted"
    capabilities = Capabilities({k: Support.SUPPORTED for k in FEATURES})

    def __init__(self, name: str, script: list[Outcome], *, hang: float = 0.0) -> None:
        super().__init__(name=name)
        self.script = list(script)
        self.calls = 0
        self.hang = hang
        self.chunk_gap = 0.0
        self.fail_after_chunks: Exception | None = None

    def _next(self) -> Outcome:
        self.calls += 1
        return self.script.pop(0) if self.script else "ok"

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        if self.hang:
            await asyncio.sleep(self.hang)
        out = self._next()
        if isinstance(out, Exception):
            raise out
        return ChatResponse(
            model=request.model,
            choices=[Choice(message=Message(role="assistant", content=out), finish_reason="stop")],
        )

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        if self.hang:
            await asyncio.sleep(self.hang)
        out = self._next()
        if isinstance(out, Exception):
            raise out
        for word in out.split():
            yield ChatChunk(
                id="c", model=request.model, choices=[ChunkChoice(delta=Delta(content=word))]
            )
            if self.chunk_gap:
                await asyncio.sleep(self.chunk_gap)
            if self.fail_after_chunks is not None:
                raise self.fail_after_chunks
        yield ChatChunk(
            id="c", model=request.model, choices=[ChunkChoice(delta=Delta(), finish_reason="stop")]
        )

    def map_error(
        self, status: int, body: bytes, headers: httpx.Headers, model: str | None
    ) -> errors.ProviderError:
        raise NotImplementedError


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def dep(name: str, provider: Provider, **kw: Any) -> Deployment:
    timeouts = kw.pop("timeouts", Timeouts(first_byte=5, idle=5, total=10))
    return Deployment(
        name=name, provider=provider, model=f"{provider.name}-model", timeouts=timeouts, **kw
    )


def req(model: str = "m", **kw: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content="hi")], **kw)


def rate_limited(after: float | None = 1.5) -> errors.RateLimitError:
    return errors.RateLimitError("slow down", retry_after=after, provider="p")


async def test_retry_after_429_waits_at_least_retry_after() -> None:
    p = Scripted("p", [rate_limited(1.5), "fine"])
    sleeps = Sleeps()
    router = Router([dep("m", p)], RouterConfig(retries=2, backoff_base=0.01), sleep=sleeps)
    resp = await router.chat(req())
    assert resp.text == "fine"
    assert p.calls == 2
    assert len(sleeps.calls) == 1 and sleeps.calls[0] >= 1.5


async def test_backoff_is_full_jitter_and_capped() -> None:
    router = Router([], RouterConfig(backoff_base=0.5, backoff_max=2.0), rng=random.Random(1))
    for n in range(6):
        delays = [router._backoff(n, None) for _ in range(200)]
        cap = min(2.0, 0.5 * 2**n)
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # spread over the whole range: full jitter
    assert router._backoff(0, 3.0) >= 3.0


async def test_non_retryable_errors_are_not_retried() -> None:
    for exc in (
        errors.BadRequestError("bad"),
        errors.AuthenticationError("key expired"),
        errors.RateLimitError("quota", retryable=False),
    ):
        p = Scripted("p", [exc, "never"])
        router = Router(
            [dep("m", p, fallbacks=["other"]), dep("other", Scripted("q", []))], sleep=Sleeps()
        )
        with pytest.raises(type(exc)):
            await router.chat(req())
        assert p.calls == 1


async def test_retries_exhausted_then_fallback() -> None:
    primary = Scripted("primary", [errors.ServerError("boom")] * 3)
    backup = Scripted("backup", ["from backup"])
    events: list[AttemptEvent] = []
    router = Router(
        [dep("m", primary, fallbacks=["b"]), dep("b", backup)],
        RouterConfig(retries=2),
        sleep=Sleeps(),
    )
    router.on_attempt.append(events.append)
    resp = await router.chat(req())
    assert resp.text == "from backup"
    assert primary.calls == 3 and backup.calls == 1
    assert resp.deployment == "b@backup/backup-model"
    assert [e.fallback for e in events] == [False, False, False, True]
    assert events[-1].error is None


async def test_long_retry_after_goes_straight_to_fallback() -> None:
    primary = Scripted("primary", [rate_limited(3600)])
    backup = Scripted("backup", ["ok"])
    sleeps = Sleeps()
    router = Router(
        [dep("m", primary, fallbacks=["b"]), dep("b", backup)],
        RouterConfig(max_retry_after=60),
        sleep=sleeps,
    )
    await router.chat(req())
    assert primary.calls == 1 and backup.calls == 1
    assert sleeps.calls == []


async def test_all_attempts_fail_raises_last_error_with_attempt_count() -> None:
    p = Scripted("p", [errors.OverloadedError("busy")] * 5)
    router = Router([dep("m", p)], RouterConfig(retries=2), sleep=Sleeps())
    with pytest.raises(errors.OverloadedError) as info:
        await router.chat(req())
    assert p.calls == 3
    assert info.value.attempts == 3


async def test_context_window_error_moves_to_larger_model() -> None:
    small = Scripted("small", [errors.ContextWindowExceededError("too long")])
    large = Scripted("large", ["fits"])
    router = Router(
        [dep("m", small, context_window_fallbacks=["big"]), dep("big", large)], sleep=Sleeps()
    )
    assert (await router.chat(req())).text == "fits"
    # without a configured larger model the error reaches the caller
    alone = Router([dep("m", Scripted("s", [errors.ContextWindowExceededError("x")]))])
    with pytest.raises(errors.ContextWindowExceededError):
        await alone.chat(req())


async def test_unknown_model_names_known_ones() -> None:
    router = Router([dep("alpha", Scripted("p", []))])
    with pytest.raises(errors.NotFoundError, match="alpha"):
        await router.chat(req("nope"))


async def test_stream_retried_before_first_chunk() -> None:
    p = Scripted("p", [errors.ServerError("boom"), "hello there"])
    router = Router([dep("m", p)], sleep=Sleeps())
    text = "".join([c.text async for c in router.stream(req())])
    assert text == "hellothere"
    assert p.calls == 2


async def test_stream_never_retried_after_first_chunk() -> None:
    p = Scripted("p", ["one two three", "again"])
    p.fail_after_chunks = errors.IncompleteStreamError("cut")
    backup = Scripted("backup", ["backup answer"])
    router = Router([dep("m", p, fallbacks=["b"]), dep("b", backup)], sleep=Sleeps())
    got: list[str] = []
    with pytest.raises(errors.IncompleteStreamError):
        async for chunk in router.stream(req()):
            got.append(chunk.text)
    assert got == ["one"]
    assert p.calls == 1 and backup.calls == 0


async def test_hang_is_cut_by_first_byte_timeout_in_streams() -> None:
    p = Scripted("p", ["late"], hang=30)
    router = Router(
        [dep("m", p, timeouts=Timeouts(first_byte=0.1, idle=5, total=10))],
        RouterConfig(retries=0),
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(errors.TimeoutError, match="first chunk"):
        async for _ in router.stream(req()):
            pass
    assert loop.time() - start < 2


async def test_idle_gap_timeout_mid_stream() -> None:
    p = Scripted("p", ["a b c"])
    p.chunk_gap = 1.0
    router = Router(
        [dep("m", p, timeouts=Timeouts(first_byte=5, idle=0.1, total=10))], RouterConfig(retries=0)
    )
    got = []
    with pytest.raises(errors.TimeoutError, match="next chunk"):
        async for chunk in router.stream(req()):
            got.append(chunk.text)
    assert got == ["a"]


async def test_total_timeout_cuts_a_hanging_non_streamed_call_and_is_retryable() -> None:
    p = Scripted("p", ["late"], hang=30)
    router = Router([dep("m", p, timeouts=Timeouts(total=0.1))], RouterConfig(retries=0))
    with pytest.raises(errors.TimeoutError) as info:
        await router.chat(req())
    assert info.value.retryable


async def test_circuit_opens_after_consecutive_failures_and_half_opens() -> None:
    now = [100.0]
    bad = Scripted("bad", [errors.ServerError("x")] * 3 + ["recovered"])
    good = Scripted("good", [])
    router = Router(
        [dep("m", bad), dep("m", good)],
        RouterConfig(retries=0, cooldown_failures=3, cooldown_seconds=30, strategy="weighted"),
        clock=lambda: now[0],
        sleep=Sleeps(),
        rng=random.Random(0),
    )
    bad_dep = router.deployments("m")[0]
    # drive failures onto `bad` directly through the breaker bookkeeping
    for _ in range(3):
        router._record(bad_dep, errors.ServerError("x"))
    assert bad_dep.state(now[0]) == "open"
    for _ in range(20):
        await router.chat(req())
    assert bad.calls == 0  # never picked while open
    now[0] += 31
    assert bad_dep.state(now[0]) == "half-open"
    picked = router._pick("m", None)
    assert picked is not None
    if picked is bad_dep:
        assert bad_dep.probing
        # a second caller must not pile onto a half-open deployment
        assert router._pick("m", None) is not bad_dep
    router._record(bad_dep, None)
    assert bad_dep.state(now[0]) == "closed"


async def test_every_deployment_cooling_down_falls_back() -> None:
    now = [0.0]
    p = Scripted("p", [])
    backup = Scripted("backup", ["backup"])
    router = Router(
        [dep("m", p, fallbacks=["b"]), dep("b", backup)],
        RouterConfig(cooldown_failures=1),
        clock=lambda: now[0],
    )
    router._record(router.deployments("m")[0], errors.ServerError("x"))
    assert (await router.chat(req())).text == "backup"
    assert p.calls == 0


async def test_rate_limited_deployment_is_avoided_while_others_are_free() -> None:
    a, b = Scripted("a", [rate_limited(10)]), Scripted("b", [])
    router = Router([dep("m", a), dep("m", b)], sleep=Sleeps(), rng=random.Random(3))
    router._record(router.deployments("m")[0], rate_limited(10))
    for _ in range(10):
        await router.chat(req())
    assert a.calls == 0 and b.calls == 10


async def test_least_inflight_spreads_concurrent_requests() -> None:
    a, b = Scripted("a", [], hang=0.05), Scripted("b", [], hang=0.05)
    router = Router([dep("m", a), dep("m", b)], rng=random.Random(0))
    await asyncio.gather(*(router.chat(req()) for _ in range(10)))
    assert a.calls == 5 and b.calls == 5


async def test_weighted_strategy_follows_weights() -> None:
    a, b = Scripted("a", []), Scripted("b", [])
    router = Router(
        [dep("m", a, weight=9), dep("m", b, weight=1)],
        RouterConfig(strategy="weighted"),
        rng=random.Random(42),
    )
    for _ in range(500):
        await router.chat(req())
    assert 400 < a.calls < 500 and b.calls == 500 - a.calls


async def test_a_cancelled_half_open_probe_does_not_wedge_the_deployment() -> None:
    now = [0.0]
    p = Scripted("p", [], hang=30)
    router = Router(
        [dep("m", p)], RouterConfig(cooldown_failures=1, cooldown_seconds=5), clock=lambda: now[0]
    )
    d = router.deployments("m")[0]
    router._record(d, errors.ServerError("x"))
    now[0] = 10.0  # cooldown over: the next request is the half-open probe
    task = asyncio.create_task(router.chat(req()))
    await asyncio.sleep(0.01)
    assert d.probing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not d.probing and d.inflight == 0
    assert router._pick("m", None) is d  # it can be probed again


async def test_max_concurrency_caps_upstream_requests_per_deployment() -> None:
    peak = [0, 0]

    class Counting(Scripted):
        async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
            peak[0] += 1
            peak[1] = max(peak[1], peak[0])
            try:
                await asyncio.sleep(0.02)
                return await super().chat(request, timeouts)
            finally:
                peak[0] -= 1

    p = Counting("p", [])
    router = Router([dep("m", p, max_concurrency=2)])
    await asyncio.gather(*(router.chat(req()) for _ in range(8)))
    assert p.calls == 8 and peak[1] == 2


async def test_full_deployment_is_avoided_while_another_has_room() -> None:
    a, b = Scripted("a", [], hang=0.05), Scripted("b", [], hang=0.05)
    router = Router(
        [dep("m", a, max_concurrency=1, weight=100), dep("m", b)],
        RouterConfig(strategy="weighted"),
        rng=random.Random(0),
    )
    await asyncio.gather(*(router.chat(req()) for _ in range(6)))
    assert a.calls >= 1 and b.calls >= 4
