"""Reading the request log row by row: a filtered, newest-first page, and one request's detail.

Pages use keyset pagination on ``(ts, id)``: a cursor is the position of the last row shown, so
a page costs the same however deep it is and rows written meanwhile neither repeat nor go
missing. Newest first with a key or model filter walks the ``(key_id, ts)`` / ``(model, ts)``
index backwards, otherwise the ``ts`` index, and stops after ``limit`` rows (bounded by
:data:`MAX_PAGE`). Filters are exact: key id, model name, status (a code, ``ok`` for < 400 or
``error`` for >= 400) and a ``[since, until)`` time range.

Prompts and completions are in the log only where the gateway keeps content (masked as it was
sent upstream); the list never returns them, the detail does when they exist.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from aiwire.errors import scrub
from aiwire.store.db import Database
from aiwire.store.models import ApiKey, RequestLog

DEFAULT_PAGE = 50
MAX_PAGE = 200

#: Columns of a list row (everything but the content).
_LIST_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = (
    RequestLog.id,
    RequestLog.request_id,
    RequestLog.ts,
    RequestLog.key_id,
    RequestLog.model,
    RequestLog.deployment,
    RequestLog.provider,
    RequestLog.endpoint,
    RequestLog.status,
    RequestLog.error_type,
    RequestLog.input_tokens,
    RequestLog.output_tokens,
    RequestLog.cached_tokens,
    RequestLog.cost_usd,
    RequestLog.latency_ms,
    RequestLog.ttft_ms,
    RequestLog.retries,
    RequestLog.fallback,
    RequestLog.stream,
    RequestLog.cache_hit,
    RequestLog.team,
)


class LogQueryError(ValueError):
    """A bad filter or cursor; ``param`` names it (for a 400 body)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class LogFilters:
    key: str | None = None
    model: str | None = None
    #: A status code, ``ok`` (< 400) or ``error`` (>= 400).
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[dict[str, Any]]
    #: Where the next page starts (None: this was the last).
    next_cursor: str | None


def encode_cursor(ts: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, _, row_id = raw.partition("|")
        when = datetime.fromisoformat(ts)
        if when.utcoffset() is None:
            raise ValueError("naive")
        return when, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise LogQueryError("cursor", "not a cursor this API gave out") from None


def _status(value: str) -> Any:
    if value == "ok":
        return RequestLog.status < 400
    if value == "error":
        return RequestLog.status >= 400
    if value.isdigit() and 100 <= int(value) <= 599:
        return RequestLog.status == int(value)
    raise LogQueryError("status", "a status code (100-599), ok (< 400) or error (>= 400)")


def list_query(filters: LogFilters, cursor: str | None, limit: int) -> Select[Any]:
    """The page's one statement (exposed so tests can check its plan)."""
    if not 1 <= limit <= MAX_PAGE:
        raise LogQueryError("limit", f"a whole number from 1 to {MAX_PAGE}")
    where: list[Any] = []
    if filters.key:
        where.append(RequestLog.key_id == filters.key)
    if filters.model:
        where.append(RequestLog.model == filters.model)
    if filters.status:
        where.append(_status(filters.status))
    if filters.since is not None:
        where.append(RequestLog.ts >= filters.since)
    if filters.until is not None:
        where.append(RequestLog.ts < filters.until)
    if cursor is not None:
        ts, row_id = decode_cursor(cursor)
        where.append(or_(RequestLog.ts < ts, and_(RequestLog.ts == ts, RequestLog.id < row_id)))
    return (
        select(*_LIST_COLUMNS, ApiKey.name.label("key_name"))
        .select_from(RequestLog)
        .outerjoin(ApiKey, ApiKey.id == RequestLog.key_id)
        .where(*where)
        .order_by(RequestLog.ts.desc(), RequestLog.id.desc())
        .limit(limit + 1)
    )


async def list_logs(
    database: Database, filters: LogFilters, *, cursor: str | None = None, limit: int = DEFAULT_PAGE
) -> LogPage:
    """Newest first, ``limit`` rows from ``cursor`` on."""
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise LogQueryError("since", "since must be before until")
    query = list_query(filters, cursor, limit)
    async with database.session() as session:
        found = [dict(r) for r in (await session.execute(query)).mappings()]
    more = len(found) > limit
    rows = [_public(r) for r in found[:limit]]
    last = found[limit - 1] if more else None
    return LogPage(rows, encode_cursor(last["ts"], last["id"]) if last is not None else None)


async def get_log(database: Database, request_id: str) -> dict[str, Any] | None:
    """One request by its id, with its content when the log kept any."""
    query = (
        select(
            *_LIST_COLUMNS,
            RequestLog.prompt,
            RequestLog.completion,
            ApiKey.name.label("key_name"),
        )
        .select_from(RequestLog)
        .outerjoin(ApiKey, ApiKey.id == RequestLog.key_id)
        .where(RequestLog.request_id == request_id)
    )
    async with database.session() as session:
        row = (await session.execute(query)).mappings().first()
    if row is None:
        return None
    out = _public(dict(row))
    # Kept content was masked before it was stored; key-shaped text is removed here as well,
    # so a key someone pasted into a prompt is not shown back on a screen.
    out["prompt"] = None if row["prompt"] is None else scrub(row["prompt"])
    out["completion"] = None if row["completion"] is None else scrub(row["completion"])
    return out


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {c.key: row[c.key] for c in _LIST_COLUMNS if c.key != "id"}
    out["ts"] = row["ts"].isoformat()
    out["key_name"] = row["key_name"]
    out["cost_usd"] = round(float(row["cost_usd"] or 0.0), 10)
    out["latency_ms"] = round(float(row["latency_ms"]), 3)
    out["ttft_ms"] = None if row["ttft_ms"] is None else round(float(row["ttft_ms"]), 3)
    for flag in ("fallback", "stream", "cache_hit"):
        out[flag] = bool(row[flag])
    return out


__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "LogFilters",
    "LogPage",
    "LogQueryError",
    "decode_cursor",
    "encode_cursor",
    "get_log",
    "list_logs",
    "list_query",
]
