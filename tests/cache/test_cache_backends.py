"""The backend contract, the same cases on every backend: memory, SQLite, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio

from tests.cache.conftest import Harness

from aiwire.cache import Entry
from aiwire.types import Usage

BODY = b'{"id":"chatcmpl-1","choices":[{"message":{"content":"Hello"}}]}'
EVENTS = [b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n', b"data: [DONE]\n\n"]
K1, K2 = "a" * 64, "b" * 64


def whole(body: bytes = BODY, **kw: object) -> Entry:
    return Entry.whole(body, usage=Usage.of(10, 2), ttl=60, **kw)  # type: ignore[arg-type]


async def test_a_miss_then_a_hit_returns_what_was_stored(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.get(K1) is None
    entry = whole()
    assert await cache.set(K1, entry)
    got = await cache.get(K1)
    assert got == entry
    assert got is not None and got.body == BODY and got.usage == Usage.of(10, 2)
    assert await cache.get(K2) is None
    stats = await cache.stats()
    assert (stats.hits, stats.misses, stats.sets) == (1, 2, 1)
    assert stats.backend == cache.name


async def test_a_stream_comes_back_event_by_event(harness: Harness) -> None:
    entry = Entry.stream(EVENTS, usage=Usage.of(5, 1), ttl=60)
    assert await harness.cache.set(K1, entry)
    got = await harness.cache.get(K1)
    assert got is not None and got.events == EVENTS and got.streamed


async def test_set_replaces_and_delete_removes(harness: Harness) -> None:
    cache = harness.cache
    await cache.set(K1, whole(b"first"))
    await cache.set(K1, whole(b"second"))
    got = await cache.get(K1)
    assert got is not None and got.body == b"second"
    assert await cache.delete(K1) is True
    assert await cache.delete(K1) is False
    assert await cache.get(K1) is None


async def test_clear_removes_everything(harness: Harness) -> None:
    cache = harness.cache
    for i in range(5):
        await cache.set(f"{i:064x}", whole())
    await cache.clear()
    assert [await cache.get(f"{i:064x}") for i in range(5)] == [None] * 5


async def test_an_entry_expires_after_its_ttl(harness: Harness) -> None:
    cache = harness.cache
    await cache.set(K1, whole(), ttl=0.3)
    await cache.set(K2, whole(), ttl=60)
    assert await cache.get(K1) is not None
    await harness.advance(0.45)
    assert await cache.get(K1) is None
    assert await cache.get(K2) is not None  # its own TTL still runs


async def test_the_ttl_defaults_to_the_entrys_own(harness: Harness) -> None:
    await harness.cache.set(K1, Entry.whole(BODY, usage=None, ttl=0.3))
    assert await harness.cache.get(K1) is not None
    await harness.advance(0.45)
    assert await harness.cache.get(K1) is None


async def test_only_200s_within_the_size_limit_are_stored(harness: Harness) -> None:
    cache = harness.cache
    assert not await cache.set(K1, whole(status=500))
    assert not await cache.set(K1, whole(status=429))
    big = whole(b"x" * cache.max_entry_bytes)  # plus the header: over the limit
    assert big.size > cache.max_entry_bytes
    assert not await cache.set(K1, big)
    assert not await cache.set(K1, whole(), ttl=0)
    assert await cache.get(K1) is None
    fitting = whole(b"x" * (cache.max_entry_bytes - whole(b"").size))
    assert fitting.size == cache.max_entry_bytes
    assert await cache.set(K2, fitting)
    assert (await cache.stats()).rejected == 4


async def test_concurrent_readers_and_writers_see_whole_entries(harness: Harness) -> None:
    cache = harness.cache
    bodies = [bytes([65 + i]) * 2000 for i in range(8)]

    async def write(i: int) -> None:
        await cache.set(K1, whole(bodies[i]))

    async def read() -> bytes | None:
        got = await cache.get(K1)
        return None if got is None else got.body

    results = await asyncio.gather(*(write(i) for i in range(8)), *(read() for _ in range(8)))
    assert all(r is None or r in bodies for r in results)
    final = await cache.get(K1)
    assert final is not None and final.body in bodies
