"""``/admin/stats``: the console's numbers - today's and this month's traffic, and time series.

- ``GET /admin/stats/overview``: requests, errors and error rate, p50/p95 latency, tokens and
  spend for today and for this month (UTC), from the request log (see
  :mod:`aiwire.store.usage`: exact nearest-rank percentiles on SQLite and PostgreSQL alike);
- ``GET /admin/stats/series?bucket=hour|day&by=model|provider|key&since=&until=``: the same
  figures per hour or day, split by model, provider or key, the busiest ``top`` groups and
  ``(other)`` (see :mod:`aiwire.store.stats`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from aiwire.server import admin_base as base
from aiwire.server.admin_base import Context, Timestamp, bad, parse_duration
from aiwire.store import stats, usage

router = APIRouter(tags=["stats"])

_RANGE_HELP = "A duration back from now (24h, 30d) or an ISO date or time (UTC if no offset)."
_DEFAULT_SINCE = {"hour": "24h", "day": "30d"}


class Figures(base.Output):
    since: Timestamp
    requests: int
    errors: int
    error_rate: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float


class Overview(base.Output):
    object: Literal["overview"]
    now: Timestamp
    today: Figures
    month: Figures


class SeriesPoint(base.Output):
    bucket: str
    group: str
    requests: int
    errors: int
    tokens: int
    cost_usd: float
    avg_latency_ms: float | None


class SeriesOut(base.Output):
    object: Literal["series"]
    bucket: stats.Bucket
    by: stats.SeriesBy
    since: Timestamp
    until: Timestamp
    buckets: list[str]
    groups: list[str]
    labels: dict[str, str]
    data: list[SeriesPoint]


@router.get("/stats/overview", response_model=Overview, summary="Today's and this month's totals")
async def overview(ctx: Context) -> dict[str, Any]:
    database = ctx.keys.database
    now = datetime.now(UTC)
    out: dict[str, Any] = {"object": "overview", "now": now.isoformat()}
    for name, start in stats.ranges(now):
        (total,) = await usage.usage_report(database, [], start, now)
        out[name] = {
            "since": start.isoformat(),
            "requests": total.requests,
            "errors": total.errors,
            "error_rate": round(total.errors / total.requests, 6) if total.requests else None,
            "p50_latency_ms": total.p50_latency_ms,
            "p95_latency_ms": total.p95_latency_ms,
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
            "cached_tokens": total.cached_tokens,
            "cost_usd": total.cost_usd,
        }
    return out


@router.get("/stats/series", response_model=SeriesOut, summary="Traffic per hour or day, split")
async def series(
    ctx: Context,
    bucket: Annotated[stats.Bucket, Query(description="hour or day (UTC).")] = "hour",
    by: Annotated[stats.SeriesBy, Query(description="Split by model, provider or key.")] = "model",
    since: Annotated[str | None, Query(description=_RANGE_HELP, max_length=64)] = None,
    until: Annotated[str | None, Query(description=_RANGE_HELP + " Default: now.")] = None,
    top: Annotated[int, Query(ge=1, le=20, description="Groups shown; the rest: (other).")] = 8,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    start = time_bound(since or _DEFAULT_SINCE[bucket], "since", now)
    end = time_bound(until, "until", now) if until else now
    try:
        found = await stats.series(ctx.keys.database, bucket, by, start, end, top=top)
    except stats.StatsQueryError as exc:
        raise bad(exc.param, str(exc)) from None
    return {
        "object": "series",
        "bucket": found.bucket,
        "by": found.by,
        "since": found.since.isoformat(),
        "until": found.until.isoformat(),
        "buckets": found.buckets,
        "groups": found.groups,
        "labels": found.labels,
        "data": [
            {
                "bucket": p.bucket,
                "group": p.group,
                "requests": p.requests,
                "errors": p.errors,
                "tokens": p.tokens,
                "cost_usd": p.cost_usd,
                "avg_latency_ms": p.avg_latency_ms,
            }
            for p in found.points
        ],
    }


def time_bound(value: str, field: str, now: datetime) -> datetime:
    """A range bound: a duration back from now (``24h``, ``7d``) or an ISO 8601 date or time
    (UTC when it has no offset); a 400 naming ``field`` otherwise."""
    if base.CONTROL.search(value):
        raise bad(field, "must not contain control characters")
    try:
        return now - parse_duration(value)
    except (ValueError, OverflowError):
        pass
    try:
        when = datetime.fromisoformat(value.strip())
        return (when if when.utcoffset() is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad(
            field,
            f"{value[:64]!r} is neither a duration back from now (e.g. 24h, 7d) nor an ISO "
            "date or time (e.g. 2030-01-31T12:00:00Z; in a URL write + as %2B)",
        ) from None


__all__ = ["router", "time_bound"]
