"""The auth guard: failures from one address are slowed, then blocked; successes reset; memory is
bounded; addresses that may be many clients are never throttled; with Redis, replicas count
together. Then the same through a gateway, on its model endpoints and its admin API."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from tests.conftest import require_service

from aiwire import errors
from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.authguard import AuthGuard
from aiwire.server.build import build_gateway

REDIS_URL = os.environ.get("AIWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_HOW_TO_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'
MASTER = "sk-aiwire-master-guard-test-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scope(host: str | None = "203.0.113.7") -> dict[str, Any]:
    return {"type": "http", "client": None if host is None else (host, 50000), "headers": []}


def refusal(guard: AuthGuard, where: dict[str, Any]) -> errors.RateLimitError | None:
    try:
        guard.check(where)
    except errors.RateLimitError as exc:
        return exc
    return None


def test_free_failures_then_growing_delays_then_a_block() -> None:
    clock = Clock()
    guard = AuthGuard(free=3, max_delay=8, block_after=10, block_seconds=600, clock=clock)
    client = scope()
    for _ in range(3):  # typos cost nothing
        assert refusal(guard, client) is None
        guard.failed(client)
    assert refusal(guard, client) is None
    delays = []
    for _ in range(6):
        guard.failed(client)
        exc = refusal(guard, client)
        assert exc is not None and exc.status == 429 and exc.code == "auth_throttled"
        assert exc.retryable  # waiting helps
        delays.append(exc.retry_after)
        clock.now += exc.retry_after or 0  # the client waits as told ...
        assert refusal(guard, client) is None  # ... and may try again
    assert delays == [1, 2, 4, 8, 8, 8]  # doubling, capped at max_delay
    guard.failed(client)  # the 10th failure
    blocked = refusal(guard, client)
    assert blocked is not None and blocked.code == "auth_blocked" and not blocked.retryable
    assert blocked.retry_after == 600 and "blocked" in blocked.message
    clock.now += 599
    assert refusal(guard, client) is not None
    clock.now += 1.5
    assert refusal(guard, client) is None  # the block ends


def test_a_success_resets_and_quiet_time_forgets() -> None:
    clock = Clock()
    guard = AuthGuard(free=2, block_after=5, window=60, clock=clock)
    client = scope()
    for _ in range(4):
        guard.failed(client)
    assert refusal(guard, client) is not None
    clock.now += 10
    guard.succeeded(client)  # a good key from there: everything forgiven
    assert refusal(guard, client) is None
    for _ in range(3):
        guard.failed(client)
    assert refusal(guard, client) is not None  # counting started again from zero: 3 > free
    clock.now += 61  # a minute without failures: forgotten
    guard.failed(client)
    assert refusal(guard, client) is None


def test_only_the_failing_address_waits() -> None:
    guard = AuthGuard(free=0, block_after=2, clock=Clock())
    guard.failed(scope("203.0.113.7"))
    guard.failed(scope("203.0.113.7"))
    assert refusal(guard, scope("203.0.113.7")) is not None
    assert refusal(guard, scope("203.0.113.8")) is None
    assert refusal(guard, scope("198.51.100.1")) is None


def test_addresses_that_may_be_everyone_are_never_throttled() -> None:
    guard = AuthGuard(free=0, block_after=1, clock=Clock())
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", None, "testclient"):
        for _ in range(5):
            guard.failed(scope(host))
        assert refusal(guard, scope(host)) is None, host
    assert not guard._records  # nothing remembered either
    exempting = AuthGuard(free=0, block_after=1, exempt=["10.0.0.0/8"], clock=Clock())
    exempting.failed(scope("10.1.2.3"))  # the reverse proxy's address, configured
    assert refusal(exempting, scope("10.1.2.3")) is None
    exempting.failed(scope("127.0.0.1"))  # loopback no longer exempt once a list is given
    assert refusal(exempting, scope("127.0.0.1")) is not None


def test_ipv6_clients_are_counted_by_their_64() -> None:
    guard = AuthGuard(free=0, block_after=2, clock=Clock())
    guard.failed(scope("2001:db8:1:2::1"))
    guard.failed(scope("2001:db8:1:2:ffff::9"))  # same /64, another address: still counted
    assert refusal(guard, scope("2001:db8:1:2::abcd")) is not None
    assert refusal(guard, scope("2001:db8:1:3::1")) is None  # the neighbouring /64
    guard.failed(scope("::ffff:198.51.100.4"))  # IPv4-mapped is the IPv4 address
    guard.failed(scope("198.51.100.4"))
    assert refusal(guard, scope("198.51.100.4")) is not None


def test_memory_is_bounded() -> None:
    guard = AuthGuard(free=0, block_after=5, max_clients=100, clock=Clock())
    for i in range(1000):
        guard.failed(scope(f"198.51.{i // 256}.{i % 256}"))
    assert len(guard._records) == 100
    assert refusal(guard, scope("198.51.3.231")) is not None  # the most recent are kept
    assert refusal(guard, scope("198.51.0.0")) is None  # the oldest forgotten


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="free < block_after"):
        AuthGuard(free=5, block_after=5)


# -- replicas sharing Redis ---------------------------------------------------------------------


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError):
        await client.aclose()
        require_service(f"Redis at {REDIS_URL}", REDIS_HOW_TO_START)
    yield client
    await client.aclose()


async def test_replicas_count_failures_together(redis: Any) -> None:
    clock = Clock()
    host = f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(250)}"  # unique per run
    replicas = [AuthGuard(free=2, block_after=6, redis=redis, clock=clock) for _ in range(3)]
    client = scope(host)
    try:
        for i in range(5):  # spread over the replicas: none sees more than two of its own
            replicas[i % 3].failed(client)
            await asyncio.gather(*(r.aclose() for r in replicas))  # let the counts land
        assert await redis.get(f"aiw:authfail:{host}") == b"5"
        # Replica 0 saw failures 1 and 4, replica 1 failures 2 and 5: each waits as for the
        # whole count at its last failure (alone, two failures would cost nothing).
        assert [getattr(refusal(r, client), "retry_after", None) for r in replicas[:2]] == [2, 4]
        replicas[2].failed(client)  # the sixth, on a replica that had seen one: a block
        await replicas[2].aclose()
        blocked = refusal(replicas[2], client)
        assert blocked is not None and blocked.code == "auth_blocked"
        replicas[1].succeeded(client)  # a success clears the shared count too
        await replicas[1].aclose()
        assert await redis.get(f"aiw:authfail:{host}") is None
        ttl_probe = AuthGuard(free=2, block_after=6, redis=redis, window=30, clock=clock)
        ttl_probe.failed(client)
        await ttl_probe.aclose()
        assert 0 < await redis.ttl(f"aiw:authfail:{host}") <= 30  # forgotten with the window
    finally:
        await redis.delete(f"aiw:authfail:{host}")


async def test_an_unreachable_redis_delays_nothing() -> None:
    broken = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    guard = AuthGuard(free=0, block_after=3, redis=broken, clock=Clock())
    try:
        guard.failed(scope())  # returns at once; the Redis update fails in the background
        assert refusal(guard, scope()) is not None  # local counting still protects
        await guard.aclose()
    finally:
        await broken.aclose()


# -- through a gateway --------------------------------------------------------------------------


async def test_the_gateway_slows_and_blocks_bad_keys_on_every_route(tmp_path: Path) -> None:
    parts = build_gateway(
        simulator_config("http://127.0.0.1:9"),
        store_url=f"sqlite:///{tmp_path}/aiwire.db",
        master_key=Secret(MASTER),
    )
    gateway = parts.gateway
    assert isinstance(gateway.auth_guard, AuthGuard)  # installed by build_gateway
    gateway.auth_guard.free, gateway.auth_guard.block_after = 3, 8

    def client(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=gateway, client=(host, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://gw")

    chat = {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}
    bad = {"authorization": "Bearer aiw-not-a-real-key-000000000000000"}
    await gateway.startup()
    try:
        async with client("203.0.113.50") as attacker, client("203.0.113.51") as admin:
            codes = []
            for path in ("/v1/chat/completions", "/admin/keys", "/v1/messages"):
                r = await attacker.post(path, json=chat, headers=bad)
                codes.append(r.status_code)
            # The admin API counts too (a wrong master key is the prize worth guessing).
            r = await attacker.get("/admin/keys", headers={"authorization": "Bearer sk-guess"})
            codes.append(r.status_code)
            assert codes == [401, 401, 401, 401]
            slowed = await attacker.get(
                "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}
            )
            assert slowed.status_code == 429  # even the right key waits: the address is slowed
            assert slowed.json()["error"]["code"] == "auth_throttled"
            assert slowed.headers["retry-after"] == "1"
            anthropic = await attacker.post("/v1/messages", json=chat, headers=bad)
            assert anthropic.status_code == 429
            assert anthropic.json()["error"]["type"] == "rate_limit_error"  # Anthropic's shape
            # Another address is untouched, and its good key works.
            ok = await admin.get("/admin/keys", headers={"authorization": f"Bearer {MASTER}"})
            assert ok.status_code == 200
            for _ in range(4):  # the attacker keeps going (waiting as told): blocked
                gateway.auth_guard._records["203.0.113.50"].until = 0
                await attacker.post("/v1/chat/completions", json=chat, headers=bad)
            blocked = await attacker.post("/v1/chat/completions", json=chat, headers=bad)
            assert blocked.status_code == 429
            assert blocked.json()["error"]["code"] == "auth_blocked"
            assert int(blocked.headers["retry-after"]) == 900
            assert blocked.headers["x-should-retry"] == "false"
            assert (await admin.get("/v1/models", headers=bad)).status_code == 401
    finally:
        await gateway.shutdown()
