"""Limit-state fixtures: every contract test runs in process and against the real Redis."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from tests.conftest import require_service

from aiwire.limits import LimitState, MemoryState
from aiwire.limits.redis_state import RedisState

REDIS_URL = os.environ.get("AIWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_HOW_TO_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'


class Clock:
    """A wall clock tests move by hand (both backends take the time from their caller)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def redis_state(clock: Clock) -> RedisState:
    state = RedisState(REDIS_URL, prefix=f"aiwtest:{secrets.token_hex(4)}:", clock=clock)
    if not await state.ping():
        await state.aclose()
        require_service(f"Redis at {REDIS_URL}", REDIS_HOW_TO_START)
    return state


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def state(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[LimitState]:
    s: LimitState = (
        MemoryState(clock=clock) if request.param == "memory" else await redis_state(clock)
    )
    yield s
    if isinstance(s, RedisState):
        keys = [k async for k in s.redis.scan_iter(match=s._prefix + "*")]
        if keys:
            await s.redis.delete(*keys)
    await s.aclose()
