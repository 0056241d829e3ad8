"""The Redis backend: SET with a TTL under its prefix, a shared client, failures as misses."""

from __future__ import annotations

import logging

import pytest
from tests.cache.conftest import REDIS_URL, redis_cache

from aiwire.cache import CacheError, Entry, RedisCache
from aiwire.cache.entry import encode

pytestmark = pytest.mark.services  # the real Redis (skipped when down, failed in CI)

K1 = "f" * 64


def entry() -> Entry:
    return Entry.whole(b'{"ok":true}', usage=None, ttl=60)


async def test_entries_are_kept_under_the_prefix_with_redis_expiry() -> None:
    cache = await redis_cache()
    try:
        stored = entry()
        await cache.set(K1, stored, ttl=120.5)
        raw = cache.redis
        assert await raw.get(cache.prefix + K1) == encode(stored)
        ttl_ms = await raw.pttl(cache.prefix + K1)
        assert 119_000 < ttl_ms <= 120_500
    finally:
        await cache.clear()
        await cache.aclose()


async def test_clear_leaves_other_keys_alone() -> None:
    cache = await redis_cache()
    outside = cache.prefix.rstrip(":") + "-other:" + K1  # shares a beginning, not the prefix
    try:
        await cache.redis.set(outside, b"keep", ex=60)
        for i in range(1500):  # more than one SCAN/UNLINK batch
            await cache.redis.set(f"{cache.prefix}{i:064x}", b"x", ex=60)
        await cache.set(K1, entry())
        await cache.clear()
        assert [k async for k in cache.redis.scan_iter(match=cache.prefix + "*")] == []
        assert await cache.redis.get(outside) == b"keep"
    finally:
        await cache.redis.delete(outside)
        await cache.aclose()


async def test_two_replicas_share_entries_and_a_shared_client_stays_open() -> None:
    first = await redis_cache()
    second = RedisCache(client=first.redis, prefix=first.prefix)
    try:
        stored = entry()
        await first.set(K1, stored)
        assert await second.get(K1) == stored
        await second.aclose()  # not its connection to close
        assert await first.redis.ping()
    finally:
        await first.clear()
        await first.aclose()


async def test_an_unreachable_redis_is_a_miss_and_shows_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "Redis-S3cret-pw"
    cache = RedisCache(f"redis://:{password}@127.0.0.1:1/0", timeout=0.2)
    try:
        with caplog.at_level(logging.DEBUG):
            assert await cache.get(K1) is None
            assert await cache.set(K1, entry()) is False
            with pytest.raises(CacheError) as info:
                await cache.clear()
        assert not await cache.ping()
        assert (await cache.stats()).errors == 3
    finally:
        await cache.aclose()
    assert "failed reading" in caplog.text
    for text_ in (caplog.text, str(info.value)):
        assert password not in text_


def test_a_url_or_a_client_exactly() -> None:
    from aiwire.errors import ConfigError

    with pytest.raises(ConfigError):
        RedisCache()
    with pytest.raises(ConfigError):
        RedisCache(REDIS_URL, client=object())
