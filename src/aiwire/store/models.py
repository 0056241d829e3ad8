"""The gateway's tables: virtual keys, the request log and the audit trail.

One set of declarative models serves SQLite and PostgreSQL. Two portability details matter:

* timestamps go through :class:`UTCDateTime`, because SQLite has no time-zone type and would hand
  back naive datetimes; every timestamp in and out of the store is an aware UTC datetime;
* the big-integer primary key of ``request_log`` becomes ``INTEGER`` on SQLite, the only type
  SQLite auto-increments (``BIGINT PRIMARY KEY`` is not an alias of the rowid there).

No column ever holds a secret: keys are stored as a SHA-256 hash plus a short display prefix.
The first Alembic revision (``migrations/versions``) creates exactly these tables; a test compares
the two so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so later migrations (SQLite batch mode above all) can refer
#: to them by name on both dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect.

    Naive datetimes are refused rather than guessed at: a naive value is a bug in the caller, and
    storing it as if it were UTC would silently shift times written from a non-UTC clock.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused; pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: ``BIGINT`` where it exists, the rowid alias ``INTEGER`` on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        # SQL NULL for None (not the JSON literal ``null``), so ``IS NULL`` means what it says.
        dict[str, Any]: JSON(none_as_null=True),
        list[str]: JSON(none_as_null=True),
    }


class ApiKey(Base):
    """A virtual key. ``key_hash`` is the SHA-256 hex of the full secret; the secret is never
    stored. ``key_prefix`` (``aiw-`` plus the next 8 characters) is kept only for display."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str]
    key_hash: Mapped[str] = mapped_column(String(64))
    key_prefix: Mapped[str] = mapped_column(String(16))
    #: Models this key may call; empty means all.
    models: Mapped[list[str]]
    #: Endpoints this key may call; empty means all.
    endpoints: Mapped[list[str]]
    team: Mapped[str | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    #: For a rotated key this is the end of its grace period, so one comparison covers both.
    revoked_at: Mapped[datetime | None]
    rotated_from: Mapped[str | None] = mapped_column(String(64))
    grace_until: Mapped[datetime | None]
    # ``metadata`` is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    last_used_at: Mapped[datetime | None]
    #: Requests / tokens per minute this key may use (None: unlimited).
    rpm: Mapped[int | None]
    tpm: Mapped[int | None]
    #: What the gateway does differently for this key (cache opt-out, content logging, PII).
    options: Mapped[dict[str, Any]] = mapped_column(server_default="{}")

    __table_args__ = (Index("ux_api_keys_key_hash", "key_hash", unique=True),)


class RequestLog(Base):
    """One row per request that reached a provider (and per request refused before it, if the
    gateway chooses to log those). ``request_id`` is unique so batch retries stay idempotent."""

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
    key_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str]
    deployment: Mapped[str | None]
    provider: Mapped[str | None]
    endpoint: Mapped[str]
    status: Mapped[int]
    error_type: Mapped[str | None]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cached_tokens: Mapped[int]
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    retries: Mapped[int]
    fallback: Mapped[bool] = mapped_column(Boolean)
    stream: Mapped[bool] = mapped_column(Boolean)
    #: Filled only when the configuration asks for prompts and completions to be stored.
    prompt: Mapped[str | None] = mapped_column(Text)
    completion: Mapped[str | None] = mapped_column(Text)
    #: The key's team when the request was made (reports by team survive key changes).
    team: Mapped[str | None]
    #: What the provider bills for this request, by the catalog's prices (0 for a cache hit).
    cost_usd: Mapped[float] = mapped_column(Float, server_default="0")
    cache_hit: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (
        Index("ux_request_log_request_id", "request_id", unique=True),
        Index("ix_request_log_ts", "ts"),
        Index("ix_request_log_key_id_ts", "key_id", "ts"),
        Index("ix_request_log_model_ts", "model", "ts"),
        Index("ix_request_log_team_ts", "team", "ts"),
    )


class Budget(Base):
    """A spending limit in USD over a period, for one key, one team or everything (``global``,
    ``scope_id`` empty). ``soft_usd`` (optional) is where an alert fires; ``limit_usd`` is
    where requests are refused."""

    __tablename__ = "budgets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str]
    period: Mapped[str] = mapped_column(String(16))
    limit_usd: Mapped[float] = mapped_column(Float)
    soft_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ux_budgets_scope_scope_id_period", "scope", "scope_id", "period", unique=True),
    )


class AuditLog(Base):
    """Append-only trail of admin actions, hash-chained: ``hash`` is the SHA-256 of
    ``prev_hash`` + the canonical JSON of the row (see :mod:`aiwire.store.audit`)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    ts: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_ts", "ts"),)


class CachedResponse(Base):
    """One response-cache entry (:class:`aiwire.cache.SQLCache`): ``key`` is the SHA-256 hex
    of the canonical request, ``value`` the serialised entry (what the client got). Rows past
    ``expires_at`` are never served and are deleted on read and by ``purge()``."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes]  # LargeBinary: BLOB on SQLite, BYTEA on PostgreSQL
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_response_cache_expires_at", "expires_at"),)
