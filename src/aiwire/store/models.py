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


class BatchFile(Base):
    """A file of the batch API (``/v1/files``): an uploaded input (``purpose=batch``) or a
    batch's output or error file (``batch_output``). ``key_id`` is the key that owns it (None:
    the master key, or a local ``aiwire batch run``)."""

    __tablename__ = "batch_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str]
    size: Mapped[int] = mapped_column("bytes")
    content: Mapped[bytes]  # LargeBinary: BLOB on SQLite, BYTEA on PostgreSQL
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_batch_files_key_id_created_at", "key_id", "created_at"),)


class Batch(Base):
    """A batch (``/v1/batches``, ``aiwire batch run``): OpenAI's batch object, plus how it runs.

    ``status`` uses OpenAI's vocabulary and each ``*_at`` timestamp is set once, on the
    transition it names. ``mode`` is ``emulate`` (each line through the router at full price)
    or ``native`` (the provider's own batch API at its batch price; ``native`` holds that
    batch's provider, id and state). ``owner``/``lease_until``: the worker submitting to or
    polling the provider; ``run_key`` identifies a local run (input hash + arguments)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(64))
    team: Mapped[str | None]
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None]
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    errors: Mapped[dict[str, Any] | None]
    total: Mapped[int]
    max_attempts: Mapped[int]
    estimate_usd: Mapped[float] = mapped_column(Float)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    native: Mapped[dict[str, Any] | None]
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    run_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    in_progress_at: Mapped[datetime | None]
    finalizing_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelling_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_batches_status", "status"),
        Index("ix_batches_key_id_created_at", "key_id", "created_at"),
        Index("ux_batches_run_key", "run_key", unique=True),
    )


class BatchLine(Base):
    """One request of a batch and its durable state: ``pending``, ``in_flight`` (claimed by
    ``owner`` until ``lease_until``), ``succeeded``, ``errored``, ``cancelled`` or ``expired``.
    ``attempts`` counts dispatches (incremented, and committed, before each upstream call); the
    outcome (``status_code``, ``response`` body or ``error``) is written in the same transaction
    as the state that says the line is done, so a restart never repeats a completed call."""

    __tablename__ = "batch_lines"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(64))
    idx: Mapped[int]
    custom_id: Mapped[str]
    model: Mapped[str]
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    not_before: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    status_code: Mapped[int | None]
    request_id: Mapped[str | None] = mapped_column(String(128))
    response: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict[str, Any] | None]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cost_usd: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ux_batch_lines_batch_id_custom_id", "batch_id", "custom_id", unique=True),
        Index("ix_batch_lines_batch_id_state_idx", "batch_id", "state", "idx"),
    )


class FlowDefinition(Base):
    """A flow file the runner has loaded (``aiwire review`` and ``flow replay`` find it again
    by name); ``digest`` is the SHA-256 of its text."""

    __tablename__ = "flow_definitions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class FlowRecord(Base):
    """One source record of a flow and its durable state: ``pending``, ``running`` (claimed by
    ``owner`` until ``lease_until``), ``waiting_review``, ``done``, ``filtered``, ``rejected``,
    ``dead``. ``data`` is the record after the last completed step and ``position`` the index
    of the next step (``len(steps)``: the sinks); both are written in the step's checkpoint
    transaction, so a restart resumes after the last completed step."""

    __tablename__ = "flow_records"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[dict[str, Any]]
    data: Mapped[dict[str, Any]]
    position: Mapped[int]
    attempts: Mapped[int]
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ux_flow_records_flow_key", "flow", "key", unique=True),
        Index("ix_flow_records_flow_state", "flow", "state"),
    )


class FlowStep(Base):
    """A step's checkpoint for one record: status, timing, tokens, cost, confidence and (for
    model, classify, chunk and review steps) its output."""

    __tablename__ = "flow_steps"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    ms: Mapped[float] = mapped_column(Float)
    calls: Mapped[int]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cost_usd: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    output: Mapped[dict[str, Any] | None]
    finished_at: Mapped[datetime]

    __table_args__ = (
        Index("ux_flow_steps_flow_key_step", "flow", "key", "step", unique=True),
        Index("ix_flow_steps_run_id", "run_id"),
    )


class FlowDelivery(Base):
    """A sink write for one record: ``pending`` (about to be written, with the payload's
    ``fingerprint``) then ``delivered``. A record never gets a second write to a sink whose
    delivery is ``delivered``; a ``pending`` one is checked against the destination first."""

    __tablename__ = "flow_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    sink: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int]
    response_status: Mapped[int | None]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ux_flow_deliveries_flow_key_sink", "flow", "key", "sink", unique=True),
    )


class FlowDeadLetter(Base):
    """A record that failed after its retries: where (``stage``: a step or sink id), why
    (``error_class``, scrubbed ``error``, ``details`` such as validation errors and the model's
    last answer) and the record as it was. ``status``: ``open``, ``replayed`` or ``discarded``."""

    __tablename__ = "flow_dead_letters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    stage: Mapped[str] = mapped_column(String(64))
    error_class: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None]
    record: Mapped[dict[str, Any]]
    attempts: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_flow_dead_letters_flow_status", "flow", "status"),)


class FlowRun(Base):
    """One run of a flow: trigger, outcome, record counts, and per step (``steps``) the count,
    time, tokens and cost; totals in their own columns for reports."""

    __tablename__ = "flow_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    #: The process running it (``host:pid:token``): a run left ``running`` by a dead process
    #: is marked ``interrupted`` by the next run.
    owner: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]]
    steps: Mapped[dict[str, Any]]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cost_usd: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_flow_runs_flow_started_at", "flow", "started_at"),)


class FlowReview(Base):
    """A record held for a person at a ``review`` step. ``draft`` is what the model proposed
    (the shown fields), ``source`` the record as it came in; the decision (``approved``,
    ``edited``, ``rejected``, ``auto_approved``, ``expired``) is audited."""

    __tablename__ = "flow_reviews"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    draft: Mapped[dict[str, Any]]
    source: Mapped[dict[str, Any]]
    editable: Mapped[list[str]]
    instructions: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None]
    reason: Mapped[str | None] = mapped_column(Text)
    edits: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ux_flow_reviews_flow_key_step", "flow", "key", "step", unique=True),
        Index("ix_flow_reviews_status_created_at", "status", "created_at"),
        Index("ix_flow_reviews_flow_status", "flow", "status"),
    )


class FlowEvent(Base):
    """A webhook event a flow accepted: the unique ``(flow, event_id)`` is what drops a
    re-sent event."""

    __tablename__ = "flow_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime]

    __table_args__ = (Index("ux_flow_events_flow_event_id", "flow", "event_id", unique=True),)


class FlowCursor(Base):
    """Where an incremental source stopped (the highest cursor value ingested), per flow."""

    __tablename__ = "flow_cursors"

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class ConsoleSession(Base):
    """A web console sign-in (``/ui``). ``id`` is the SHA-256 hex of the session id the browser
    holds in its cookie: the id itself is never stored, so reading this table signs nobody in.
    ``key_id`` is the admin-scoped key that signed in (None: the master key; ``binding`` then
    ties the session to that master key, so replacing the master key ends its sessions).
    A session ends at ``expires_at`` (absolute) or when unused for the idle time after
    ``seen_at``; signing out deletes the row."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(64))
    binding: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_console_sessions_expires_at", "expires_at"),
        Index("ix_console_sessions_key_id", "key_id"),
    )
