"""Store fixtures: every store test runs on SQLite (a file under tmp_path) and on PostgreSQL.

PostgreSQL: one fresh database ``aiwire_test_<random>`` for the session (tables emptied before
each test), plus throw-away empty databases for the migration tests; all dropped at the end.
The server is ``AIWIRE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.conftest import require_service

from aiwire.store import Database

PG_ADMIN_URL = os.environ.get(
    "AIWIRE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PG_HOW_TO_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
TABLES = (
    "api_keys",
    "request_log",
    "audit_log",
    "budgets",
    "response_cache",
    "batch_files",
    "batches",
    "batch_lines",
    *("flow_definitions", "flow_records", "flow_steps", "flow_deliveries", "flow_dead_letters"),
    *("flow_runs", "flow_reviews", "flow_events", "flow_cursors"),
    "console_sessions",
)


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _database_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable PostgreSQL server, or skip/fail as tests/conftest.py says."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        require_service(f"PostgreSQL at {make_url(PG_ADMIN_URL)!r} ({exc})", PG_HOW_TO_START)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_databases(pg_server: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases; every one is dropped at the end of the session."""
    created: list[str] = []

    def create() -> str:
        name = f"aiwire_test_{secrets.token_hex(6)}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return _database_url(name)

    yield create
    if created:
        asyncio.run(_admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in created)))


@pytest.fixture(scope="session")
def pg_session_url(pg_databases: Callable[[], str]) -> str:
    return pg_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of the test's database (migrated by the ``database`` fixture)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store/aiwire.db"
    return str(request.getfixturevalue("pg_session_url"))


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a database no migration has touched yet."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/empty/aiwire.db"
    factory: Callable[[], str] = request.getfixturevalue("pg_databases")
    return factory()


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """A migrated database with empty tables."""
    db = Database(db_url)
    await db.migrate()
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
        else:
            for table in TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
    yield db
    await db.aclose()
