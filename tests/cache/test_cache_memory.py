"""The in-process LRU: bounded by entries and by bytes, O(1) hits that never yield."""

from __future__ import annotations

import pytest
from tests.cache.conftest import Clock

from aiwire.cache import Entry, MemoryCache


def entry(size: int = 100) -> Entry:
    """An entry of exactly ``size`` serialised bytes."""
    overhead = Entry.whole(b"", usage=None, ttl=60).size
    return Entry.whole(b"x" * (size - overhead), usage=None, ttl=60)


def key(i: int) -> str:
    return f"{i:064x}"


async def test_the_least_recently_used_entry_goes_first_when_entries_run_out(
    clock: Clock,
) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    for i in range(3):
        await cache.set(key(i), entry())
    assert await cache.get(key(0)) is not None  # 0 is now the most recently used
    await cache.set(key(3), entry())
    assert len(cache) == 3
    assert await cache.get(key(1)) is None  # the least recently used went
    assert all([await cache.get(key(i)) for i in (0, 2, 3)])
    stats = await cache.stats()
    assert stats.evictions == 1 and stats.entries == 3


async def test_bytes_are_bounded_too(clock: Clock) -> None:
    cache = MemoryCache(max_entries=100, max_bytes=1000, clock=clock)
    for i in range(10):
        assert await cache.set(key(i), entry(100))
    assert (await cache.stats()).bytes == 1000
    await cache.set(key(10), entry(250))  # three of the oldest make room for it
    stats = await cache.stats()
    assert stats.bytes == 950 and stats.entries == 8 and stats.evictions == 3
    assert [await cache.get(key(i)) is None for i in range(4)] == [True, True, True, False]


async def test_replacing_an_entry_counts_its_bytes_once(clock: Clock) -> None:
    cache = MemoryCache(max_bytes=1000, clock=clock)
    for _ in range(20):
        await cache.set(key(0), entry(400))
    assert (await cache.stats()).bytes == 400
    await cache.set(key(0), entry(200))
    assert (await cache.stats()).bytes == 200
    await cache.delete(key(0))
    assert (await cache.stats()).bytes == 0


async def test_an_entry_larger_than_the_whole_cache_is_refused(clock: Clock) -> None:
    cache = MemoryCache(max_bytes=500, max_entry_bytes=10_000, clock=clock)
    assert cache.max_entry_bytes == 500
    await cache.set(key(0), entry(300))
    assert not await cache.set(key(1), entry(501))
    assert await cache.get(key(0)) is not None  # and nothing was evicted for it


async def test_expired_entries_leave_on_read_and_on_purge(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    for i in range(4):
        await cache.set(key(i), entry(), ttl=10 if i % 2 else 100)
    clock.now += 10
    assert await cache.get(key(1)) is None  # expired exactly at its TTL
    assert await cache.purge() == 1  # key(3); key(1) already went on read
    stats = await cache.stats()
    assert stats.entries == 2 and stats.expired == 2 and stats.bytes == 200


async def test_a_hit_completes_without_ever_yielding_to_the_event_loop() -> None:
    """No await inside get: the coroutine finishes on its first step (far below 1 ms)."""
    cache = MemoryCache()
    stored = entry()
    await cache.set(key(0), stored)
    for k in (key(0), key(1)):  # a hit and a miss
        coroutine = cache.get(k)
        with pytest.raises(StopIteration) as done:
            coroutine.send(None)
        assert done.value.value is (stored if k == key(0) else None)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryCache(max_entries=0)
