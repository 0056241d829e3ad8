"""``cache:`` configuration: defaults, validation, and the backend each choice builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aiwire.cache import CacheConfig, MemoryCache, RedisCache, SQLCache, open_cache
from aiwire.errors import ConfigError
from aiwire.store import Database


def test_defaults() -> None:
    config = CacheConfig()
    assert config.backend == "memory" and config.mode == "deterministic"
    assert config.ttl == 3600 and config.scope == "key"
    assert config.max_entry_bytes == 1024 * 1024
    assert config.max_entries >= 1 and config.max_bytes >= config.max_entry_bytes
    assert config.redis_prefix == "aiwc:"
    assert config.enabled


@pytest.mark.parametrize(
    "data",
    [
        {"backend": "disk"},
        {"mode": "sometimes"},
        {"scope": "user"},
        {"ttl": 0},
        {"max_entries": 0},
        {"max_entry_bytes": 0},
        {"unknown": 1},
        {"max_bytes": 1000, "max_entry_bytes": 2000},
    ],
)
def test_invalid_settings_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CacheConfig.model_validate(data)


def test_off_builds_nothing() -> None:
    assert open_cache(CacheConfig(backend="off")) is None
    assert open_cache(CacheConfig(mode="off")) is None
    assert not CacheConfig(mode="off").enabled


async def test_each_backend_is_built_with_its_limits(tmp_path: Path) -> None:
    memory = open_cache(CacheConfig(max_entries=7, max_bytes=5000, max_entry_bytes=900))
    assert isinstance(memory, MemoryCache)
    assert (memory.max_entries, memory.max_bytes, memory.max_entry_bytes) == (7, 5000, 900)

    db = Database(f"sqlite:///{tmp_path}/a.db")
    try:
        sql = open_cache(CacheConfig(backend="sql", max_entry_bytes=900), database=db)
        assert isinstance(sql, SQLCache) and sql.database is db and sql.max_entry_bytes == 900
    finally:
        await db.aclose()

    redis = open_cache(
        CacheConfig(backend="redis", redis_prefix="x:"), redis_url="redis://127.0.0.1:6379/0"
    )
    assert isinstance(redis, RedisCache) and redis.prefix == "x:"
    await redis.aclose()


def test_a_backend_without_its_service_says_what_to_configure() -> None:
    with pytest.raises(ConfigError, match=r"server\.store"):
        open_cache(CacheConfig(backend="sql"))
    with pytest.raises(ConfigError, match=r"server\.redis"):
        open_cache(CacheConfig(backend="redis"))
