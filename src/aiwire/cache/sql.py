"""The cache in the gateway's store (``cache.backend: sql``): SQLite or PostgreSQL, one code path.

Entries are rows of ``response_cache`` (key, serialised entry, expires_at, created_at). A read
ignores a row past its expiry and deletes it (lazily; only if it is still that expired row, so a
concurrent fresh write is never lost). :meth:`SQLCache.purge` deletes every expired row, and
``set`` runs it by itself at most once per ``purge_interval`` seconds, so rows nobody asks for
again do not pile up. Writes are upserts (``INSERT ... ON CONFLICT (key) DO UPDATE``), which
both dialects spell the same way in SQLAlchemy.

Shared by replicas through PostgreSQL; on SQLite a second process sees the same file. Expiry
times come from this process's clock, so replicas should keep their clocks in sync (NTP).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from aiwire.cache.base import CacheStats, RemoteCache
from aiwire.cache.entry import DEFAULT_MAX_ENTRY_BYTES
from aiwire.store.db import Database
from aiwire.store.models import CachedResponse

_Row = CachedResponse

#: Seconds between two automatic purges of expired rows (run by ``set``).
DEFAULT_PURGE_INTERVAL = 300.0


class SQLCache(RemoteCache):
    """Entries in the store's ``response_cache`` table (migrated by :meth:`Database.migrate`).

    ``clock`` gives wall-clock seconds (``time.time``; tests move it by hand). The database is
    the gateway's and is not closed by :meth:`aclose`.
    """

    name = "sql"
    failures = (SQLAlchemyError, OSError, TimeoutError)

    def __init__(
        self,
        database: Database,
        *,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        clock: Callable[[], float] = time.time,
        purge_interval: float = DEFAULT_PURGE_INTERVAL,
    ) -> None:
        super().__init__(max_entry_bytes=max_entry_bytes)
        self.database = database
        self._clock = clock
        self.purge_interval = purge_interval
        self._purged_at = clock()
        self._insert = pg_insert if database.dialect == "postgresql" else sqlite_insert
        self._select = select(_Row.value, _Row.expires_at).where(_Row.key == bindparam("k"))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _load(self, key: str) -> bytes | None:
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(self._select, {"k": key})).first()
            if row is None:
                return None
            now = self._now()
            if row.expires_at > now:
                return bytes(row.value)
            # Only this expired row: a fresh one written meanwhile has a later expiry.
            await conn.execute(delete(_Row).where(_Row.key == key, _Row.expires_at <= now))
            await conn.commit()
        self._stats.expired += 1
        return None

    async def _save(self, key: str, blob: bytes, ttl: float) -> None:
        now = self._now()
        stmt = self._insert(_Row).values(
            key=key, value=blob, expires_at=now + timedelta(seconds=ttl), created_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[_Row.key],
            set_={
                "value": stmt.excluded.value,
                "expires_at": stmt.excluded.expires_at,
                "created_at": stmt.excluded.created_at,
            },
        )
        async with self.database.engine.begin() as conn:
            await conn.execute(stmt)
        if self._clock() - self._purged_at >= self.purge_interval:
            try:
                await self._purge()
            except self.failures as exc:  # the entry is written; the purge waits for next time
                self._failed("purging expired entries", exc)

    async def delete(self, key: str) -> bool:
        try:
            async with self.database.engine.begin() as conn:
                result = await conn.execute(delete(_Row).where(_Row.key == key))
        except self.failures as exc:
            raise self._error("deleting an entry", exc) from None
        return bool(result.rowcount)

    async def clear(self) -> None:
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(delete(_Row))
        except self.failures as exc:
            raise self._error("clearing", exc) from None

    async def purge(self) -> int:
        """Delete every expired row; how many."""
        try:
            return await self._purge()
        except self.failures as exc:
            raise self._error("purging expired entries", exc) from None

    async def _purge(self) -> int:
        self._purged_at = self._clock()
        async with self.database.engine.begin() as conn:
            result = await conn.execute(delete(_Row).where(_Row.expires_at <= self._now()))
        self._stats.expired += result.rowcount
        return int(result.rowcount)

    async def stats(self) -> CacheStats:
        out = self._snapshot()
        query = select(func.count(), func.coalesce(func.sum(func.length(_Row.value)), 0)).where(
            _Row.expires_at > self._now()
        )
        try:
            async with self.database.engine.connect() as conn:
                count, size = (await conn.execute(query)).one()
        except self.failures as exc:
            self._failed("counting entries", exc)
            return out
        out.entries, out.bytes = int(count), int(size)
        return out

    def _describe(self, exc: BaseException) -> str:
        # The database's own redaction also hides the URL's password.
        return self.database.describe(exc)
