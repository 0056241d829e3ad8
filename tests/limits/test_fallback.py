"""A Redis outage: limits are counted in process meanwhile, budgets stay spent, the outage's
spend reaches Redis when it answers again, and the gateway never answers 500 for it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from tests.limits.conftest import Clock, redis_state

from aiwire.config import simulator_config
from aiwire.limits.fallback import FallbackState
from aiwire.limits.redis_state import RedisState
from aiwire.limits.state import BudgetCheck, RateCheck
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer

#: A port nothing listens on: connecting is refused at once.
DEAD = "redis://127.0.0.1:1/0"
METHODS = ("admit", "settle", "spent", "pace", "pace_feedback")


class Outage:
    """Makes a live RedisState fail like an unreachable server, and heal again."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    def begin(self) -> None:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")

        for name in METHODS:
            setattr(self.state, name, refused)

    def end(self) -> None:
        for name in METHODS:
            self.state.__dict__.pop(name, None)


class Ticks:
    """The fallback's monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def live(clock: Clock) -> AsyncIterator[RedisState]:
    state = await redis_state(clock)
    yield state
    keys = [k async for k in state.redis.scan_iter(match=state._prefix + "*")]
    if keys:
        await state.redis.delete(*keys)
    await state.aclose()


def rpm(limit: float) -> list[RateCheck]:
    return [RateCheck("k:r", limit=limit, cost=1.0)]


async def test_an_unreachable_redis_is_replaced_by_counters_in_process() -> None:
    state = FallbackState(RedisState(DEAD, timeout=0.5))
    verdicts = [await state.admit(f"r{i}", rpm(2), [], lease=60) for i in range(3)]
    assert [v.ok for v in verdicts] == [True, True, False]  # the limit still holds
    assert verdicts[2].retry_after is not None and verdicts[2].retry_after > 0
    assert state.degraded
    # a budget already spent (per the request log) stays spent
    spent = BudgetCheck("b:1", limit=1.0, amount=0.2, initial=0.9)
    refused = await state.admit("r9", [], [spent], lease=60)
    assert not refused.ok and refused.failed == 0
    await state.aclose()


@pytest.mark.services
async def test_the_outage_spend_reaches_redis_when_it_answers_again(live: RedisState) -> None:
    ticks = Ticks()
    outage = Outage(live)
    state = FallbackState(live, retry_after=5.0, clock=ticks)
    budget = BudgetCheck("b:team", limit=10.0, amount=1.0, initial=2.0)
    assert (await state.admit("before", [], [budget], lease=60)).ok  # counter born in Redis
    await state.settle("before", [], [("b:team", 0.5)])
    assert await live.spent("b:team") == pytest.approx(2.5)

    outage.begin()
    assert (await state.admit("during", [], [budget], lease=60)).ok
    assert state.degraded
    await state.settle("during", [], [("b:team", 0.75)])
    # a request Redis admitted before the outage, settled during it
    await state.settle("straddling", [], [("b:team", 0.25)])

    outage.end()
    ticks.now += 1  # within retry_after: still in process, Redis is not asked
    assert (await state.admit("still-local", [], [], lease=60)).ok and state.degraded
    ticks.now += 5
    assert (await state.admit("after", [], [budget], lease=60)).ok
    assert not state.degraded
    assert await live.spent("b:team") == pytest.approx(2.5 + 0.75 + 0.25)


@pytest.mark.services
async def test_a_second_outage_starts_from_the_request_log_not_from_stale_counters(
    live: RedisState,
) -> None:
    ticks = Ticks()
    outage = Outage(live)
    state = FallbackState(live, retry_after=1.0, clock=ticks)
    outage.begin()
    await state.admit("a", [], [BudgetCheck("b:x", limit=5, amount=1, initial=1.0)], lease=60)
    await state.settle("a", [], [("b:x", 1.0)])
    outage.end()
    ticks.now += 2
    await state.spent("b:x")  # Redis answers: the stand-in is dropped
    assert not state.degraded
    outage.begin()
    ticks.now += 2
    # the request log now says 4.5 spent: the new stand-in seeds from it, refusing 1.0 more
    check = BudgetCheck("b:x", limit=5, amount=1, initial=4.5)
    assert not (await state.admit("b", [], [check], lease=60)).ok


@pytest.fixture
def gateway_on_dead_redis(simulator: SimulatorServer, tmp_path: Path) -> Iterator[str]:
    config = simulator_config(simulator.url)
    config.server.redis = DEAD
    master = "sk-aiwire-" + secrets.token_hex(16)
    parts = build_gateway(
        config, store_url=f"sqlite:///{tmp_path / 'a.db'}", master_key=Secret(master)
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        r = httpx.post(
            f"{server.url}/admin/keys",
            json={"name": "limited", "rpm": 2},
            headers={"authorization": f"Bearer {master}"},
        )
        assert r.status_code == 201, r.text
        yield f"{server.url}|{r.json()['key']}"


def test_the_gateway_keeps_limiting_while_redis_is_down(gateway_on_dead_redis: str) -> None:
    url, key = gateway_on_dead_redis.split("|")
    codes = []
    for _ in range(3):
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        codes.append(r.status_code)
    assert codes == [200, 200, 429], codes
    assert r.json()["error"]["type"] == "rate_limit_error" and r.headers["retry-after"]
