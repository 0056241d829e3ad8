"""The database handle: one async engine for SQLite (embedded default) and PostgreSQL (replicas).

Users write ordinary URLs (``sqlite:///aiwire.db``, ``postgresql://user@host/db``);
:func:`async_url` turns them into the async drivers the gateway runs on (aiosqlite, asyncpg), so
every query goes through one code path. :meth:`Database.migrate` runs Alembic's ``upgrade head``
at every start; it is a no-op when the schema is current and is serialized between processes (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so replicas can start together.

A URL's password never reaches a log line or an exception message: URLs are rendered with the
password hidden, and driver error texts are scrubbed of it before they are re-raised.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from aiwire.errors import AIWireError, ConfigError, scrub

log = logging.getLogger("aiwire.store")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Arbitrary constant ids for PostgreSQL advisory locks (one per purpose, shared by all replicas).
MIGRATION_LOCK_ID = 0x6169_7769_7265_0001
AUDIT_LOCK_ID = 0x6169_7769_7265_0002

#: How long SQLite waits for another writer before giving up (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class StoreError(AIWireError):
    """The store could not be reached or migrated. The message never contains a password."""


def async_url(url: str | URL) -> URL:
    """The async-driver form of a user's database URL.

    ``sqlite:///path`` becomes ``sqlite+aiosqlite:///path`` and ``postgresql://`` /
    ``postgres://`` (any driver) become ``postgresql+asyncpg://``; libpq's ``sslmode=`` is
    renamed to asyncpg's ``ssl=``. Any other database is refused with a :class:`ConfigError`.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        # The text may well contain a password: do not echo it.
        raise ConfigError(
            "store: cannot parse the database URL; expected sqlite:///path/to/aiwire.db "
            "or postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.drivername.partition("+")[0]
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ConfigError(
            f"store: unsupported database {backend!r} in "
            f"{parsed.render_as_string(hide_password=True)}; aiwire stores to SQLite "
            "(sqlite:///path) or PostgreSQL (postgresql://...)"
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("postgresql") and "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _set_sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """WAL lets readers run while the log writer writes; ``synchronous=NORMAL`` is durable
    across application crashes in WAL mode and much faster than FULL."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    try:
        # The timeout first: switching a new file to WAL needs a lock another process starting
        # at the same moment may hold, and without a timeout SQLite answers "locked" at once.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic configured in code: no ``alembic.ini`` is needed at run time, and the scripts are
    found inside the installed package."""
    cfg = AlembicConfig()
    # configparser interpolation: a literal % must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this version of aiwire."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise StoreError("no migration revisions found in the aiwire package")
    return head


def _upgrade_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


class Database:
    """An async engine plus the operations the gateway needs around it.

    ``session()`` gives a transaction-scoped ORM session; the log writer and the key store use
    the engine directly. Call :meth:`aclose` at shutdown (after the log writer has flushed).
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        # hide_parameters: bound values (prompts, key hashes) stay out of error messages.
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        self._password = self.url.password
        if self.dialect == "sqlite":
            database = self.url.database
            if database and not _is_memory(self.url) and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                self.url, echo=echo, hide_parameters=True
            )
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        else:
            # pre-ping: a replica keeps working after PostgreSQL restarts or fails over.
            self.engine = create_async_engine(
                self.url, echo=echo, hide_parameters=True, pool_pre_ping=True
            )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL with its password replaced by ``***``: the only form ever shown."""
        return self.redact(self.url.render_as_string(hide_password=True))

    def __repr__(self) -> str:
        return f"Database({self.display_url})"

    def redact(self, message: str) -> str:
        """``message`` with the URL's password (raw or URL-encoded) and key-shaped text removed."""
        if self._password:
            pw = self._password
            for value in (pw, quote_plus(pw), quote(pw, safe="")):
                message = message.replace(value, "***")
        return scrub(message)

    def describe(self, exc: BaseException) -> str:
        """A one-line, password-free description of a driver or Alembic error."""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return self.redact(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)

    def _store_error(self, doing: str, exc: Exception) -> StoreError:
        # The full traceback helps debugging but driver texts may carry connection details:
        # scrub it and keep it at debug level; the raised error is cut from the original chain.
        log.debug("%s failed:\n%s", doing, self.redact("".join(traceback.format_exception(exc))))
        return StoreError(f"{doing} at {self.display_url} failed: {self.describe(exc)}")

    # -- schema --

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is already there.

        Safe at every start and from several processes at once: the upgrade runs in one
        transaction that first takes a PostgreSQL advisory lock (transaction-scoped, so it is
        released by the commit or by a dropped connection) or SQLite's write lock
        (``BEGIN IMMEDIATE``). A process that waited finds the schema current and does nothing.
        """
        try:
            async with self.engine.connect() as conn:
                await self._lock_for_migration(conn)
                await conn.run_sync(_upgrade_head)
                await conn.commit()
        except Exception as exc:  # driver, network and Alembic errors alike: re-raised scrubbed
            raise self._store_error("migrating the store", exc) from None

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        else:
            # pysqlite leaves transaction control to us for non-DML statements: this BEGIN makes
            # the whole upgrade one transaction holding the write lock from its first statement.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")

    async def revision(self) -> str | None:
        """The schema revision the database is at (``None`` before the first migration)."""
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(_current_revision)
        except Exception as exc:  # same reasoning as migrate()
            raise self._store_error("reading the schema revision", exc) from None

    # -- use --

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers ``SELECT 1`` within ``timeout`` seconds (/health/ready)."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # a readiness probe answers yes or no; it never raises
            log.warning("store %s is not ready: %s", self.display_url, self.describe(exc))
            return False
        return True

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        async with self._sessions.begin() as session:
            yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection whose statements all see the same committed data.

        For reports made of several queries (rows and their totals) while the log writer is
        inserting: REPEATABLE READ on PostgreSQL; on SQLite an explicit ``BEGIN`` (pysqlite would
        otherwise run each SELECT on its own), so WAL gives the first read's snapshot to all.
        """
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                # asyncpg starts the transaction itself, at this isolation level.
                await conn.execution_options(isolation_level="REPEATABLE READ")
            else:
                await conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                await conn.rollback()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
