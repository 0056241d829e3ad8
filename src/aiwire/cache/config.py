"""The ``cache:`` section of the configuration, and the backend it builds.

::

    cache:
      backend: memory        # memory | sql (the server.store) | redis (server.redis) | off
      mode: deterministic    # deterministic (temperature 0 or a seed) | all | off
      ttl: 3600              # seconds an answer is served from the cache
      scope: key             # key | team | global: who shares entries
      max_entries: 10000     # memory backend: LRU bounds
      max_bytes: 134217728
      max_entry_bytes: 1048576   # larger answers are not stored (any backend)
      semantic: {model: local-embed, threshold: 0.9}   # paraphrases too (aiwire.cache.semantic)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiwire.cache.base import CacheBackend
from aiwire.cache.entry import DEFAULT_MAX_ENTRY_BYTES
from aiwire.cache.key import Scope
from aiwire.cache.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, MemoryCache
from aiwire.cache.policy import Mode
from aiwire.cache.redis_cache import DEFAULT_PREFIX, DEFAULT_TIMEOUT, RedisCache
from aiwire.cache.semantic import SemanticConfig
from aiwire.errors import ConfigError

if TYPE_CHECKING:  # SQLAlchemy loads only when the sql backend is chosen (a faster CLI start)
    from aiwire.store.db import Database


class CacheConfig(BaseModel):
    """The response cache (see :mod:`aiwire.cache`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "sql", "redis", "off"] = "memory"
    #: Which requests are cached: deterministic ones (temperature 0 or a seed), all, or none.
    mode: Mode = "deterministic"
    #: Seconds an answer is served from the cache.
    ttl: float = Field(default=3600.0, gt=0)
    #: Who shares entries: each virtual key alone, the keys of a team, or everyone.
    scope: Scope = "key"
    #: Memory backend: at most this many entries, least recently used dropped first ...
    max_entries: int = Field(default=DEFAULT_MAX_ENTRIES, ge=1)
    #: ... and at most this many bytes of entries.
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    #: A larger answer (serialised) is not stored, whatever the backend.
    max_entry_bytes: int = Field(default=DEFAULT_MAX_ENTRY_BYTES, ge=1)
    #: Redis backend: the prefix of its keys, and the seconds a read or write may take.
    redis_prefix: str = Field(default=DEFAULT_PREFIX, min_length=1)
    redis_timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    #: A second lookup for paraphrased questions (off unless set; see aiwire.cache.semantic).
    semantic: SemanticConfig | None = None

    @model_validator(mode="after")
    def _entry_fits(self) -> CacheConfig:
        if self.backend == "memory" and self.max_entry_bytes > self.max_bytes:
            raise ValueError(
                f"max_entry_bytes ({self.max_entry_bytes}) is larger than max_bytes "
                f"({self.max_bytes}): no such entry could be kept"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.backend != "off" and self.mode != "off"


def open_cache(
    config: CacheConfig,
    *,
    database: Database | None = None,
    redis_url: str | None = None,
    redis_client: Any = None,
) -> CacheBackend | None:
    """The backend ``config`` asks for, or ``None`` when the cache is off.

    ``database`` is the gateway's store (``backend: sql``); ``redis_url`` the resolved
    ``server.redis`` or ``redis_client`` a ``redis.asyncio.Redis`` to share (``backend: redis``).
    """
    if not config.enabled:
        return None
    if config.backend == "memory":
        return MemoryCache(
            max_entries=config.max_entries,
            max_bytes=config.max_bytes,
            max_entry_bytes=config.max_entry_bytes,
        )
    if config.backend == "sql":
        if database is None:
            raise ConfigError("cache.backend: sql needs the gateway's store (server.store)")
        from aiwire.cache.sql import SQLCache

        return SQLCache(database, max_entry_bytes=config.max_entry_bytes)
    if redis_url is None and redis_client is None:
        raise ConfigError(
            "cache.backend: redis needs server.redis (redis://host:6379/0); "
            "or choose backend: memory or sql"
        )
    return RedisCache(
        redis_url if redis_client is None else None,
        client=redis_client,
        prefix=config.redis_prefix,
        max_entry_bytes=config.max_entry_bytes,
        timeout=config.redis_timeout,
    )
