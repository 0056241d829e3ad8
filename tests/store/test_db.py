"""Database handle: URL handling, SQLite settings, migrations, readiness, password hygiene."""

from __future__ import annotations

import asyncio
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from aiwire.errors import ConfigError
from aiwire.store import Base, Database, StoreError, async_url, head_revision

# -- URLs --


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///aiwire.db", "sqlite+aiosqlite:///aiwire.db"),
        ("sqlite:////var/lib/aiwire/a.db", "sqlite+aiosqlite:////var/lib/aiwire/a.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_user_urls_become_async_driver_urls(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


def test_unsupported_or_unparseable_urls_are_refused_without_echoing_a_password() -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'") as info:
        async_url("mysql://root:hunter2hunter2@db/aiwire")
    assert "hunter2hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot parse") as info:
        async_url("not a url hunter2hunter2")
    assert "hunter2hunter2" not in str(info.value)


def test_display_url_and_repr_hide_the_password() -> None:
    db = Database("postgresql://aiwire:Pa55word-xyz@db.example:5432/aiwire")
    assert "Pa55word-xyz" not in db.display_url
    assert "Pa55word-xyz" not in repr(db)
    assert "***" in db.display_url


# -- SQLite specifics --


async def test_sqlite_creates_parent_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "aiwire.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 1000
        assert await db.ping()
    finally:
        await db.aclose()
    assert path.exists()


async def test_in_memory_sqlite_migrates_and_works() -> None:
    db = Database("sqlite://")
    try:
        await db.migrate()
        assert await db.revision() == head_revision()
    finally:
        await db.aclose()


# -- migrations --


def _schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    return {
        t: {
            "columns": {c["name"] for c in insp.get_columns(t)},
            "indexes": {
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(t)
            },
        }
        for t in insp.get_table_names()
    }


async def test_migrate_creates_tables_and_indexes(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        assert await db.revision() is None
        await db.migrate()
        assert await db.revision() == head_revision()
        async with db.engine.connect() as conn:
            schema = await conn.run_sync(_schema)
    finally:
        await db.aclose()
    assert {"api_keys", "request_log", "audit_log", "alembic_version"} <= set(schema)
    assert {"key_hash", "key_prefix", "models", "endpoints", "grace_until", "metadata"} <= (
        schema["api_keys"]["columns"]
    )
    assert {"prev_hash", "hash", "before", "after"} <= schema["audit_log"]["columns"]
    assert ("ux_api_keys_key_hash", ("key_hash",), True) in schema["api_keys"]["indexes"]
    log_indexes = schema["request_log"]["indexes"]
    assert ("ux_request_log_request_id", ("request_id",), True) in log_indexes
    assert ("ix_request_log_ts", ("ts",), False) in log_indexes
    assert ("ix_request_log_key_id_ts", ("key_id", "ts"), False) in log_indexes
    assert ("ix_request_log_model_ts", ("model", "ts"), False) in log_indexes
    assert not any("secret" in column for t in schema.values() for column in t["columns"])


async def test_migration_matches_the_models(database: Database) -> None:
    """The hand-written revision and the declarative models describe the same schema."""

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with database.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_migrate_twice_is_a_no_op(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(empty_db_url)
    try:
        with caplog.at_level(logging.INFO, logger="alembic"):
            await db.migrate()
            assert "Running upgrade" in caplog.text
            caplog.clear()
            await db.migrate()
            assert "Running upgrade" not in caplog.text
        async with db.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert versions == [(head_revision(),)]
    finally:
        await db.aclose()


async def test_concurrent_migrations_from_two_engines(empty_db_url: str) -> None:
    """Two replicas starting together: both succeed, the schema is created once."""
    first, second = Database(empty_db_url), Database(empty_db_url)
    try:
        await asyncio.gather(first.migrate(), second.migrate(), first.migrate())
        assert await first.revision() == head_revision()
        async with second.engine.connect() as conn:
            count = await conn.scalar(text("SELECT count(*) FROM alembic_version"))
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert count == 1
        assert {"api_keys", "request_log", "audit_log"} <= set(tables)
    finally:
        await first.aclose()
        await second.aclose()


async def test_session_commits_and_rolls_back(database: Database) -> None:
    insert = text(
        "INSERT INTO audit_log (ts, actor, action, target, prev_hash, hash) "
        "VALUES (CURRENT_TIMESTAMP, 'a', 'x', 't', 'p', :h)"
    )
    async with database.session() as session:
        await session.execute(insert, {"h": "kept"})
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            await session.execute(insert, {"h": "rolled-back"})
            raise RuntimeError("boom")
    async with database.session() as session:
        hashes = (await session.execute(text("SELECT hash FROM audit_log"))).scalars().all()
    assert hashes == ["kept"]


# -- readiness and passwords --


async def test_ping(database: Database) -> None:
    assert await database.ping() is True


PASSWORD = "Sup3r-S3cret-pw"


async def test_unreachable_postgres_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database(f"postgresql://aiwire:{PASSWORD}@127.0.0.1:1/aiwire")
    try:
        with caplog.at_level(logging.DEBUG):
            assert await db.ping(timeout=5) is False
            with pytest.raises(StoreError) as info:
                await db.migrate()
    finally:
        await db.aclose()
    rendered = "".join(traceback.format_exception(info.value))
    assert "127.0.0.1:1" in str(info.value)  # the message says where it tried ...
    for text_ in (str(info.value), repr(info.value), rendered, caplog.text):
        assert PASSWORD not in text_  # ... but not with what
    assert caplog.records, "the failed ping should have been logged"


@pytest.mark.services
async def test_driver_errors_that_echo_the_password_are_scrubbed(
    pg_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL names the missing database in its error; here that name is the password."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_server).set(password=PASSWORD, database=PASSWORD)
    db = Database(url.render_as_string(hide_password=False))
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(StoreError, match="does not exist") as info:
                await db.migrate()
            assert await db.ping() is False
    finally:
        await db.aclose()
    rendered = "".join(traceback.format_exception(info.value))
    for text_ in (str(info.value), repr(info.value), rendered, caplog.text):
        assert PASSWORD not in text_
