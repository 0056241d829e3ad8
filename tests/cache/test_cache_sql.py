"""The SQL backend: its table and migration, lazy and explicit purging, failures as misses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from tests.cache.conftest import Clock

from aiwire.cache import CacheError, Entry, SQLCache
from aiwire.store import Database

K1, K2, K3 = "1" * 64, "2" * 64, "3" * 64


def entry(body: bytes = b'{"ok":true}') -> Entry:
    return Entry.whole(body, usage=None, ttl=60)


async def rows(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        result = await conn.execute(text("SELECT key FROM response_cache ORDER BY key"))
        return [r[0] for r in result]


async def test_the_migration_creates_the_table_and_its_expiry_index(database: Database) -> None:
    def schema(conn: object) -> tuple[set[str], set[str], list[str]]:
        insp = inspect(conn)
        columns = {c["name"] for c in insp.get_columns("response_cache")}
        indexes = {i["name"] for i in insp.get_indexes("response_cache")}
        return columns, indexes, insp.get_pk_constraint("response_cache")["constrained_columns"]

    async with database.engine.connect() as conn:
        columns, indexes, pk = await conn.run_sync(schema)
    assert columns == {"key", "value", "expires_at", "created_at"}
    assert "ix_response_cache_expires_at" in indexes
    assert pk == ["key"]


async def test_an_expired_row_is_deleted_when_read(database: Database, clock: Clock) -> None:
    cache = SQLCache(database, clock=clock)
    await cache.set(K1, entry(), ttl=10)
    await cache.set(K2, entry(), ttl=100)
    clock.now += 10
    assert await cache.get(K1) is None
    assert await rows(database) == [K2]
    assert (await cache.stats()).expired == 1


async def test_purge_deletes_only_expired_rows(database: Database, clock: Clock) -> None:
    cache = SQLCache(database, clock=clock)
    await cache.set(K1, entry(), ttl=10)
    await cache.set(K2, entry(), ttl=20)
    await cache.set(K3, entry(), ttl=30)
    clock.now += 20
    assert await cache.purge() == 2
    assert await rows(database) == [K3]
    stats = await cache.stats()
    assert stats.entries == 1 and stats.bytes == entry().size


async def test_set_purges_by_itself_once_per_interval(database: Database, clock: Clock) -> None:
    cache = SQLCache(database, clock=clock, purge_interval=60)
    await cache.set(K1, entry(), ttl=5)
    clock.now += 30
    await cache.set(K2, entry(), ttl=5)
    assert await rows(database) == [K1, K2]  # K1 expired, but no purge is due yet
    clock.now += 31
    await cache.set(K3, entry(), ttl=5)
    assert await rows(database) == [K3]


async def test_a_row_from_another_replica_is_served(database: Database, clock: Clock) -> None:
    """Two caches on one store (two gateway processes) share their entries."""
    first, second = SQLCache(database, clock=clock), SQLCache(database, clock=clock)
    await first.set(K1, entry(b"shared"))
    got = await second.get(K1)
    assert got is not None and got.body == b"shared"


async def test_a_corrupt_row_is_a_miss_and_is_removed(
    database: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SQLCache(database, clock=clock)
    await cache.set(K1, entry())
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE response_cache SET value = :v WHERE key = :k"), {"v": b"junk", "k": K1}
        )
    with caplog.at_level(logging.WARNING, logger="aiwire.cache"):
        assert await cache.get(K1) is None
    assert await rows(database) == []
    assert (await cache.stats()).errors == 1
    assert "CorruptEntry" in caplog.text


async def test_a_failing_store_is_a_miss_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(f"sqlite:///{tmp_path}/never-migrated.db")  # no response_cache table
    cache = SQLCache(db)
    try:
        with caplog.at_level(logging.WARNING, logger="aiwire.cache"):
            assert await cache.get(K1) is None
            assert await cache.set(K1, entry()) is False
            assert await cache.get(K1) is None
        stats = await cache.stats()
        assert stats.errors >= 3 and stats.hits == 0 and stats.sets == 0
        # one warning for the first failure; the rest within a minute are only counted
        assert len([r for r in caplog.records if r.name == "aiwire.cache"]) == 1
        with pytest.raises(CacheError, match="clearing failed"):
            await cache.clear()
        with pytest.raises(CacheError):
            await cache.purge()
    finally:
        await db.aclose()


PASSWORD = "Cache-S3cret-pw"


async def test_an_unreachable_database_never_shows_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database(f"postgresql://aiwire:{PASSWORD}@127.0.0.1:1/aiwire")
    cache = SQLCache(db)
    try:
        with caplog.at_level(logging.DEBUG):
            assert await cache.get(K1) is None
            assert await cache.set(K1, entry()) is False
            with pytest.raises(CacheError) as info:
                await cache.delete(K1)
    finally:
        await db.aclose()
    assert caplog.records
    for text_ in (caplog.text, str(info.value), repr(info.value)):
        assert PASSWORD not in text_
