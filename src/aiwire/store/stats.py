"""Traffic over time from the request log: requests, errors, tokens, cost and latency per hour or
per UTC day, split by model, provider or key - what the console's charts draw.

Two statements per series, both answered from the ``ts`` index and aggregated by the database:
the range's busiest groups (at most ``top``), then one row per time bucket and group with every
other group folded into ``(other)``. The answer is therefore bounded by buckets x (top + 1)
rows whatever the traffic, and the range itself is bounded (:data:`MAX_BUCKETS`). Buckets are
UTC on both databases (see :mod:`aiwire.store.usage` for why PostgreSQL converts explicitly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, case, false, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from aiwire.store.db import Database
from aiwire.store.models import ApiKey, RequestLog

Bucket = Literal["hour", "day"]
SeriesBy = Literal["model", "provider", "key"]
BUCKETS: tuple[Bucket, ...] = ("hour", "day")
SERIES_BY: tuple[SeriesBy, ...] = ("model", "provider", "key")
#: The most buckets one series may span (a week of hours, about a quarter of days).
MAX_BUCKETS = {"hour": 24 * 7, "day": 92}
#: The name of the group every group beyond the busiest ``top`` is folded into.
OTHER = "(other)"
NONE = "(none)"

_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "model": RequestLog.model,
    "provider": RequestLog.provider,
    "key": RequestLog.key_id,
}
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class StatsQueryError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Point:
    bucket: str
    group: str
    requests: int
    errors: int
    tokens: int
    cost_usd: float
    avg_latency_ms: float | None


@dataclass(frozen=True, slots=True)
class Series:
    bucket: Bucket
    by: SeriesBy
    since: datetime
    until: datetime
    #: Every bucket of the range, oldest first (empty ones included, so charts need no gaps).
    buckets: list[str]
    #: The groups shown, busiest first; their display names (a key's name) in ``labels``.
    groups: list[str]
    labels: dict[str, str]
    points: list[Point]


def bucket_of(when: datetime, bucket: Bucket) -> str:
    """A time's bucket label, as the database writes it (``2030-01-31T13:00:00Z`` or
    ``2030-01-31``)."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:00:00Z") if bucket == "hour" else when.strftime("%Y-%m-%d")


def _bucket_expr(bucket: Bucket, dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        fmt = 'YYYY-MM-DD"T"HH24:00:00"Z"' if bucket == "hour" else "YYYY-MM-DD"
        return func.to_char(func.timezone("UTC", RequestLog.ts), fmt, type_=String())
    fmt = "%Y-%m-%dT%H:00:00Z" if bucket == "hour" else "%Y-%m-%d"
    return func.strftime(fmt, RequestLog.ts, type_=String())


def _floor(when: datetime, bucket: Bucket) -> datetime:
    when = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0) if bucket == "day" else when


async def series(
    database: Database,
    bucket: Bucket,
    by: SeriesBy,
    since: datetime,
    until: datetime,
    *,
    top: int = 8,
) -> Series:
    """The traffic of ``[since, until)`` per ``bucket``, split by ``by``; ``since`` is rounded
    down to its bucket."""
    if bucket not in BUCKETS:
        raise StatsQueryError("bucket", f"bucket must be one of {', '.join(BUCKETS)}")
    if by not in SERIES_BY:
        raise StatsQueryError("by", f"by must be one of {', '.join(SERIES_BY)}")
    start = _floor(since, bucket)
    if start >= until:
        raise StatsQueryError("since", "since must be before until")
    labels_of = _labels(start, until, bucket)
    if len(labels_of) > MAX_BUCKETS[bucket]:
        raise StatsQueryError(
            "since",
            f"at most {MAX_BUCKETS[bucket]} {bucket}s per series; narrow the range "
            f"{'or chart by day' if bucket == 'hour' else ''}".strip(),
        )
    column = _COLUMNS[by]
    in_range = (RequestLog.ts >= start, RequestLog.ts < until)
    busiest = (
        select(column, func.count().label("n"))
        .where(*in_range)
        .group_by(column)
        .order_by(func.count().desc(), column.asc().nulls_last())
        .limit(top + 1)
    )
    async with database.session() as session:
        ranked = [(g, int(n)) for g, n in (await session.execute(busiest)).all()]
        shown = [g for g, _ in ranked[:top]]
        folded = len(ranked) > top
        group: ColumnElement[Any] = func.coalesce(column, literal(NONE))
        if folded:
            kept = [g for g in shown if g is not None]
            keep = or_(column.in_(kept), column.is_(None) if None in shown else false())
            group = case((keep, func.coalesce(column, literal(NONE))), else_=literal(OTHER))
        # Grouped in an outer query over named columns: PostgreSQL would not match the same
        # expression in SELECT and GROUP BY once each has its own bound parameters.
        rows_of = (
            select(
                _bucket_expr(bucket, database.dialect).label("b"),
                group.label("g"),
                RequestLog.status,
                (RequestLog.input_tokens + RequestLog.output_tokens).label("tokens"),
                RequestLog.cost_usd,
                RequestLog.latency_ms,
            )
            .where(*in_range)
            .subquery("r")
        )
        c = rows_of.c
        rows = await session.execute(
            select(
                c.b,
                c.g,
                func.count().label("requests"),
                func.coalesce(func.sum(case((c.status >= 400, 1), else_=0)), 0).label("errors"),
                func.coalesce(func.sum(c.tokens), 0).label("tokens"),
                func.coalesce(func.sum(c.cost_usd), 0.0).label("cost_usd"),
                func.avg(c.latency_ms).label("avg_latency_ms"),
            )
            .group_by(c.b, c.g)
            .order_by(c.b, c.g)
        )
        points = [_point(dict(r)) for r in rows.mappings()]
        groups = [NONE if g is None else str(g) for g in shown] + ([OTHER] if folded else [])
        labels = {g: g for g in groups}
        if by == "key":
            ids = [g for g in groups if g not in (NONE, OTHER)]
            if ids:
                names = await session.execute(
                    select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids))
                )
                labels.update({i: f"{n} ({i})" for i, n in names.all()})
            if NONE in labels:
                labels[NONE] = "master key"
    return Series(bucket, by, start, until, labels_of, groups, labels, points)


def _labels(start: datetime, until: datetime, bucket: Bucket) -> list[str]:
    out: list[str] = []
    at = start
    step = _STEP[bucket]
    while at < until and len(out) <= MAX_BUCKETS[bucket]:
        out.append(bucket_of(at, bucket))
        at += step
    return out


def _point(row: dict[str, Any]) -> Point:
    avg = row["avg_latency_ms"]
    return Point(
        bucket=str(row["b"]),
        group=str(row["g"]),
        requests=int(row["requests"]),
        errors=int(row["errors"]),
        tokens=int(row["tokens"]),
        cost_usd=round(float(row["cost_usd"]), 10),
        avg_latency_ms=None if avg is None else round(float(avg), 3),
    )


def ranges(now: datetime) -> Sequence[tuple[str, datetime]]:
    """The overview's periods: today and this month (UTC), with where each starts."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (("today", day), ("month", day.replace(day=1)))


__all__ = [
    "BUCKETS",
    "MAX_BUCKETS",
    "NONE",
    "OTHER",
    "SERIES_BY",
    "Point",
    "Series",
    "StatsQueryError",
    "bucket_of",
    "ranges",
    "series",
]
