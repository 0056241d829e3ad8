"""The contract every cache backend keeps, and the shared part of the remote ones.

``get`` and ``set`` sit on the request path and are best-effort: a backend that fails (Redis
down, database busy, a corrupt value) answers ``get`` with a miss and drops the ``set``, logs
a warning at most once a minute, and counts it in ``stats().errors``. A cache outage must cost
latency, never a failed request. ``delete``, ``clear`` and ``purge`` are admin operations and
raise :class:`CacheError`, so an operator learns that a clear did not happen.

Only what may be replayed is stored: status 200, at most ``max_entry_bytes`` (serialised), a
positive TTL. Anything else is counted in ``stats().rejected``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from aiwire.cache.entry import DEFAULT_MAX_ENTRY_BYTES, CorruptEntry, Entry, decode, encode
from aiwire.errors import AIWireError, scrub

log = logging.getLogger("aiwire.cache")

#: Seconds between two warnings about a failing backend (the rest are only counted).
WARN_INTERVAL = 60.0


class CacheError(AIWireError):
    """An admin operation on the cache failed; the message never holds a password."""

    default_status = 503


@dataclass(slots=True)
class CacheStats:
    """Counters of this process, plus the backend's size where it is cheap to know."""

    backend: str
    hits: int = 0
    misses: int = 0
    sets: int = 0
    #: Not stored: not a 200, larger than ``max_entry_bytes``, or no TTL.
    rejected: int = 0
    #: Dropped to stay within ``max_entries`` / ``max_bytes`` (memory).
    evictions: int = 0
    #: Removed because they expired (found so on read, or by ``purge``).
    expired: int = 0
    #: Backend failures answered as a miss or a dropped set.
    errors: int = 0
    #: Entries and bytes held (``None`` where counting would need a scan: Redis).
    entries: int | None = None
    bytes: int | None = None


class CacheBackend(ABC):
    """Where entries live. Keys are :func:`aiwire.cache.cache_key` digests."""

    name = "cache"

    def __init__(self, *, max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> None:
        self.max_entry_bytes = max_entry_bytes
        self._stats = CacheStats(self.name)

    @abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None`` (missing, expired or unreadable)."""

    @abstractmethod
    async def set(self, key: str, entry: Entry, ttl: float | None = None) -> bool:
        """Store ``entry`` for ``ttl`` seconds (default: ``entry.ttl``); whether it was."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove one entry; whether it was there."""

    @abstractmethod
    async def clear(self) -> None:
        """Remove every entry of this cache."""

    async def purge(self) -> int:
        """Remove expired entries now; how many. (Backends that expire by themselves: 0.)"""
        return 0

    async def stats(self) -> CacheStats:
        return self._snapshot()

    async def aclose(self) -> None:  # noqa: B027 - optional: only some backends own connections
        """Release connections this backend opened itself."""

    def accepts(self, entry: Entry, ttl: float) -> bool:
        """Whether ``entry`` may be stored (counted in ``rejected`` when not)."""
        if entry.status != 200 or ttl <= 0 or entry.size > self.max_entry_bytes:
            self._stats.rejected += 1
            return False
        return True

    def _snapshot(self) -> CacheStats:
        s = self._stats
        return CacheStats(
            s.backend, s.hits, s.misses, s.sets, s.rejected, s.evictions, s.expired, s.errors
        )


class RemoteCache(CacheBackend):
    """A backend holding serialised entries elsewhere (a database, Redis).

    Subclasses give :meth:`_load` / :meth:`_save` and name the exception types that mean "the
    backend failed" in ``failures``; everything else (a bug) propagates.
    """

    failures: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, *, max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> None:
        super().__init__(max_entry_bytes=max_entry_bytes)
        self._warned_at = -WARN_INTERVAL

    @abstractmethod
    async def _load(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def _save(self, key: str, blob: bytes, ttl: float) -> None: ...

    async def get(self, key: str) -> Entry | None:
        try:
            blob = await self._load(key)
        except self.failures as exc:
            self._failed("reading", exc)
            self._stats.misses += 1
            return None
        if blob is None:
            self._stats.misses += 1
            return None
        try:
            entry = decode(blob)
        except CorruptEntry as exc:
            self._failed("decoding an entry", exc)
            self._stats.misses += 1
            with contextlib.suppress(CacheError):  # counted; the next set overwrites it anyway
                await self.delete(key)
            return None
        self._stats.hits += 1
        return entry

    async def set(self, key: str, entry: Entry, ttl: float | None = None) -> bool:
        ttl = entry.ttl if ttl is None else ttl
        if not self.accepts(entry, ttl):
            return False
        try:
            await self._save(key, encode(entry), ttl)
        except self.failures as exc:
            self._failed("writing", exc)
            return False
        self._stats.sets += 1
        return True

    def _describe(self, exc: BaseException) -> str:
        """A one-line, secret-free description of a backend error."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _failed(self, doing: str, exc: BaseException) -> None:
        self._stats.errors += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_INTERVAL:
            self._warned_at = now
            log.warning(
                "response cache (%s) failed %s, answering without it: %s "
                "(further failures within %.0f s are only counted)",
                self.name,
                doing,
                self._describe(exc),
                WARN_INTERVAL,
            )

    def _error(self, doing: str, exc: BaseException) -> CacheError:
        self._stats.errors += 1
        return CacheError(f"response cache ({self.name}): {doing} failed: {self._describe(exc)}")
