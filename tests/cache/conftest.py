"""Cache fixtures: every backend contract test runs in memory, on SQLite, on the real PostgreSQL
and on the real Redis (those two skip, or fail under AIWIRE_REQUIRE_SERVICES=1, when down).

Memory and SQL take their time from a clock the test moves; Redis expires keys on its own
clock, so there time really passes (tests keep TTLs to fractions of a second).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import require_service
from tests.store.conftest import pg_databases, pg_server, pg_session_url

from aiwire.cache import CacheBackend, MemoryCache, RedisCache, SQLCache
from aiwire.store import Database

__all__ = ["pg_databases", "pg_server", "pg_session_url"]  # fixtures, re-exported for pytest

REDIS_URL = os.environ.get("AIWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_HOW_TO_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'


class Clock:
    """Seconds that tests move by hand (wall-clock-like, so SQL timestamps look real)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A backend under test and how to let ``seconds`` pass for it."""

    cache: CacheBackend
    advance: Callable[[float], Awaitable[None]]


async def migrated(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM response_cache"))
    return db


async def redis_cache(max_entry_bytes: int = 1024 * 1024) -> RedisCache:
    """A cache on the test Redis under a prefix of its own (skips when Redis is down)."""
    prefix = f"aiwctest:{secrets.token_hex(4)}:"
    cache = RedisCache(REDIS_URL, prefix=prefix, max_entry_bytes=max_entry_bytes)
    if not await cache.ping():
        await cache.aclose()
        require_service(f"Redis at {REDIS_URL}", REDIS_HOW_TO_START)
    return cache


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL: a SQLite file, or the session's PostgreSQL database.

    A plain fixture: the PostgreSQL fixtures run ``asyncio.run`` and must not be reached from
    inside the test's event loop.
    """
    return _url(request, tmp_path, request.param)


def _url(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/cache.db"
    return str(request.getfixturevalue("pg_session_url"))


@pytest.fixture
async def database(store_url: str) -> AsyncIterator[Database]:
    """A migrated store with an empty ``response_cache`` table."""
    db = await migrated(store_url)
    yield db
    await db.aclose()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.services),
        pytest.param("redis", marks=pytest.mark.services),
    ]
)
def backend_kind(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """Which backend, and its store URL for the SQL ones (resolved outside the event loop)."""
    kind = str(request.param)
    return kind, _url(request, tmp_path, kind) if kind in ("sqlite", "postgresql") else None


@pytest.fixture
async def harness(backend_kind: tuple[str, str | None], clock: Clock) -> AsyncIterator[Harness]:
    async def tick(seconds: float) -> None:
        clock.now += seconds

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    kind, url = backend_kind
    db: Database | None = None
    cache: CacheBackend
    if kind == "memory":
        cache, advance = MemoryCache(clock=clock), tick
    elif kind == "redis":
        cache, advance = await redis_cache(), sleep
    else:
        assert url is not None
        db = await migrated(url)
        cache, advance = SQLCache(db, clock=clock), tick
    yield Harness(cache, advance)
    if isinstance(cache, RedisCache):
        await cache.clear()
    await cache.aclose()
    if db is not None:
        await db.aclose()
