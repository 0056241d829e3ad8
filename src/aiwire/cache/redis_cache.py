"""The cache in Redis (``cache.backend: redis``), shared by every gateway replica.

One key per entry under a prefix (default ``aiwc:``, apart from the limit counters' ``aiw:``),
written with ``SET key value PX ttl`` so Redis expires it by itself; a read is one ``GET``. The
TTL is given in milliseconds (``PX``, Redis's ``EX`` in finer units) so fractional seconds hold.
``clear`` removes only keys under this cache's prefix (``SCAN`` + ``UNLINK``), never the rest
of the database.

The client is made from ``server.redis`` with short socket timeouts, so a stalled Redis turns
into a miss after ``timeout`` seconds instead of holding requests; or an existing
``redis.asyncio.Redis`` (the limit counters' connection pool) is passed in and left open.
"""

from __future__ import annotations

from typing import Any

from aiwire.cache.base import RemoteCache
from aiwire.cache.entry import DEFAULT_MAX_ENTRY_BYTES
from aiwire.errors import ConfigError

DEFAULT_PREFIX = "aiwc:"
#: Seconds a cache read or write may take before it counts as failed (a miss / a dropped set).
DEFAULT_TIMEOUT = 0.5

_GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


class RedisCache(RemoteCache):
    """Entries in Redis at ``url`` (``redis://host:6379/0``), or through ``client``."""

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = DEFAULT_PREFIX,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:  # pragma: no cover - redis is a dependency
            raise ConfigError("cache.backend: redis needs the redis package") from None
        if (url is None) == (client is None):
            raise ConfigError("RedisCache needs a Redis URL or a client (exactly one)")
        super().__init__(max_entry_bytes=max_entry_bytes)
        self.failures = (RedisError, OSError, TimeoutError)
        self._owned = url is not None
        if url is not None:
            client = aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self._redis: Any = client
        self.prefix = prefix

    @property
    def redis(self) -> Any:
        return self._redis

    async def _load(self, key: str) -> bytes | None:
        value = await self._redis.get(self.prefix + key)
        return None if value is None else bytes(value)

    async def _save(self, key: str, blob: bytes, ttl: float) -> None:
        await self._redis.set(self.prefix + key, blob, px=max(1, round(ttl * 1000)))

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self.prefix + key))
        except self.failures as exc:
            raise self._error("deleting an entry", exc) from None

    async def clear(self) -> None:
        pattern = self.prefix.translate(_GLOB_SPECIAL) + "*"
        try:
            batch: list[Any] = []
            async for name in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    await self._redis.unlink(*batch)
                    batch = []
            if batch:
                await self._redis.unlink(*batch)
        except self.failures as exc:
            raise self._error("clearing", exc) from None

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except self.failures:  # a readiness probe answers yes or no
            return False

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()
