"""Usage reports from the request log: requests, errors, tokens, cost and latency per group.

A report groups the log rows of a time range by any of :data:`GROUPS` (key, team, model,
deployment, provider, UTC day, status), optionally filtered by key, team, model or provider. It is
one SQL statement on SQLite and PostgreSQL alike, and the database does the aggregation: the time
range is answered from the ``ts`` index, or from ``(key_id, ts)``, ``(model, ts)`` or
``(team, ts)`` when that filter is given, and no log row is fetched into Python.

Latency percentiles are exact and portable. Neither SQLite nor a plain aggregate can compute
``percentile_cont``, so the statement numbers each group's rows by latency with a window function
(``row_number`` and ``count`` over the group, both SQL:2003 and in SQLite since 3.25) and takes,
per group, the *nearest-rank* percentile: the smallest latency with at least p % of the group's
requests at or below it. Both databases therefore give the same answer, which is always a latency
some request really had. ``avg_latency_ms`` is reported beside them.

``day`` is the UTC calendar date (``YYYY-MM-DD``) on both databases: SQLite stores UTC already
(see :class:`~aiwire.store.models.UTCDateTime`), and on PostgreSQL the timestamp is converted to
UTC explicitly, so the connection's ``TimeZone`` setting cannot move a request to another day.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, func, select, true
from sqlalchemy.orm import InstrumentedAttribute

from aiwire.store.db import Database
from aiwire.store.models import ApiKey, RequestLog

#: What a report can be grouped by, in the order columns are shown.
GROUPS = ("key", "team", "model", "deployment", "provider", "day", "status")
#: What a report can be filtered by (exact match).
FILTERS = ("key", "team", "model", "provider")
#: The figures of every row, after its group columns.
METRICS = (
    "requests",
    "errors",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "p50_latency_ms",
    "p95_latency_ms",
    "avg_latency_ms",
)
_PERCENTILES = {"p50_latency_ms": 50, "p95_latency_ms": 95}
#: Sums of float costs differ in their last bits with the order of addition (and so between
#: databases); rounding to a ten-billionth of a dollar hides that noise and nothing else.
_COST_DIGITS = 10

_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "key": RequestLog.key_id,
    "team": RequestLog.team,
    "model": RequestLog.model,
    "deployment": RequestLog.deployment,
    "provider": RequestLog.provider,
    "status": RequestLog.status,
}


class UsageQueryError(ValueError):
    """A report was asked for with a bad parameter; ``param`` names it (for a 400 body)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a report. ``group`` maps each grouping to its value, in the order asked;
    grouping by ``key`` adds ``key_name`` (the key's current name; None for requests made with
    the master key or by a key since deleted)."""

    group: Mapping[str, str | int | None]
    requests: int
    errors: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    avg_latency_ms: float | None

    def public(self) -> dict[str, Any]:
        """A flat JSON-ready dict: the group columns, then :data:`METRICS`."""
        return {**self.group, **{m: getattr(self, m) for m in METRICS}}


def columns(by: Sequence[str]) -> list[str]:
    """The columns of a report grouped by ``by``, as :meth:`UsageRow.public` orders them."""
    names: list[str] = []
    for name in by:
        names += ["key", "key_name"] if name == "key" else [name]
    return [*names, *METRICS]


def check_by(by: Iterable[str]) -> list[str]:
    """``by`` without duplicates, or :class:`UsageQueryError` naming an unknown grouping."""
    checked: list[str] = []
    for name in by:
        if name not in GROUPS:
            raise UsageQueryError(
                "by", f"cannot group by {name!r}; choose from {', '.join(GROUPS)}"
            )
        if name not in checked:
            checked.append(name)
    return checked


def _check_filters(filters: Mapping[str, str | None]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in filters.items():
        if name not in FILTERS:
            raise UsageQueryError(name, f"cannot filter by {name!r}; filters: {', '.join(FILTERS)}")
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise UsageQueryError(name, f"the {name} filter must be a non-empty string")
        checked[name] = value
    return checked


def _check_range(since: datetime, until: datetime) -> None:
    for name, value in (("since", since), ("until", until)):
        if value.utcoffset() is None:
            raise UsageQueryError(name, f"{name} must be an aware datetime (UTC or with an offset)")
    if since >= until:
        raise UsageQueryError(
            "since",
            f"since ({since.astimezone(UTC).isoformat()}) must be before until "
            f"({until.astimezone(UTC).isoformat()})",
        )


def _utc_day(dialect: str) -> ColumnElement[str]:
    """The UTC date of ``ts`` as ``YYYY-MM-DD`` text on either database."""
    if dialect == "postgresql":
        # timezone('UTC', timestamptz) is the UTC wall-clock time, whatever the session's zone.
        return func.to_char(func.timezone("UTC", RequestLog.ts), "YYYY-MM-DD", type_=String())
    # SQLite holds UTC wall-clock text (UTCDateTime), which date() truncates.
    return func.date(RequestLog.ts, type_=String())


def usage_query(
    by: Sequence[str],
    since: datetime,
    until: datetime,
    filters: Mapping[str, str],
    *,
    dialect: str,
) -> Select[Any]:
    """The report's one statement (exposed so tests can check its query plan).

    ``by``, ``filters`` and the range must already be checked; :func:`usage_report` does that.
    """
    exprs = [
        (_utc_day(dialect) if name == "day" else _COLUMNS[name]).label(f"g_{name}") for name in by
    ]
    partition = [e.element for e in exprs] or None
    where = [RequestLog.ts >= since, RequestLog.ts < until]
    where += [_COLUMNS[name] == value for name, value in filters.items()]
    rows = (
        select(
            *exprs,
            RequestLog.status,
            RequestLog.cache_hit,
            RequestLog.input_tokens,
            RequestLog.output_tokens,
            RequestLog.cached_tokens,
            RequestLog.cost_usd,
            RequestLog.latency_ms,
            func.row_number()
            .over(partition_by=partition, order_by=RequestLog.latency_ms)
            .label("lat_rank"),
            func.count().over(partition_by=partition).label("group_size"),
        )
        .where(*where)
        .subquery("r")
    )
    c = rows.c
    groups: list[ColumnElement[Any] | InstrumentedAttribute[Any]] = [c[f"g_{name}"] for name in by]
    shown: list[ColumnElement[Any]] = []
    for name, column in zip(by, groups, strict=True):
        shown.append(column.label(name))
        if name == "key":
            shown.append(ApiKey.name.label("key_name"))
    cost = func.coalesce(func.sum(c.cost_usd), 0.0).label("cost_usd")
    percentiles = [
        # Nearest rank: the first row whose rank reaches p % of the group's size.
        func.min(case((c.lat_rank * 100 >= c.group_size * p, c.latency_ms))).label(name)
        for name, p in _PERCENTILES.items()
    ]
    query = select(
        *shown,
        func.count().label("requests"),
        func.coalesce(func.sum(case((c.status >= 400, 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(case((c.cache_hit.is_(true()), 1), else_=0)), 0).label("cache_hits"),
        *(
            func.coalesce(func.sum(c[n]), 0).label(n)
            for n in ("input_tokens", "output_tokens", "cached_tokens")
        ),
        cost,
        *percentiles,
        func.avg(c.latency_ms).label("avg_latency_ms"),
    )
    if "key" in by:
        query = query.select_from(rows.outerjoin(ApiKey, ApiKey.id == c.g_key))
        groups.append(ApiKey.name)
    else:
        query = query.select_from(rows)
    if groups:
        query = query.group_by(*groups)
    # NULLS LAST on both databases (their defaults differ), so the order is the same everywhere.
    tiebreak = [g.asc().nulls_last() for g in groups]
    if "day" in by:
        return query.order_by(c.g_day.asc(), cost.desc(), *tiebreak)
    return query.order_by(cost.desc(), *tiebreak)


async def usage_report(
    database: Database,
    by: Sequence[str],
    since: datetime,
    until: datetime | None = None,
    filters: Mapping[str, str | None] | None = None,
) -> list[UsageRow]:
    """The usage of ``[since, until)`` (``until`` defaults to now) grouped by ``by``.

    Rows come most expensive first, or by day (oldest first) when grouping by ``day``. An empty
    ``by`` gives exactly one row: the totals (zeros when nothing was logged). Raises
    :class:`UsageQueryError` for an unknown grouping or filter, a naive datetime, or an empty
    range.
    """
    (rows,) = await _reports(database, [by], since, until, filters)
    return rows


async def usage_report_with_totals(
    database: Database,
    by: Sequence[str],
    since: datetime,
    until: datetime,
    filters: Mapping[str, str | None] | None = None,
) -> tuple[list[UsageRow], UsageRow]:
    """:func:`usage_report` for ``by`` and its totals, read from one snapshot of the log.

    Two separate reads could disagree while the log writer inserts between them (rows without a
    request the totals already count); one snapshot keeps the report consistent.
    """
    rows, (total,) = await _reports(database, [by, []], since, until, filters)
    return rows, total


async def _reports(
    database: Database,
    groupings: Sequence[Sequence[str]],
    since: datetime,
    until: datetime | None,
    filters: Mapping[str, str | None] | None,
) -> list[list[UsageRow]]:
    """One report per grouping over the same range and filters, all from one snapshot."""
    checked_by = [check_by(by) for by in groupings]
    checked = _check_filters(filters or {})
    until = datetime.now(UTC) if until is None else until
    _check_range(since, until)
    reports = []
    async with database.snapshot() as conn:
        for by in checked_by:
            query = usage_query(by, since, until, checked, dialect=database.dialect)
            reports.append([_row(by, dict(r)) for r in (await conn.execute(query)).mappings()])
    return reports


def _row(by: Sequence[str], values: dict[str, Any]) -> UsageRow:
    group: dict[str, str | int | None] = {}
    for name in by:
        group[name] = values[name]
        if name == "key":
            group["key_name"] = values["key_name"]
    avg = values["avg_latency_ms"]
    p50, p95 = values["p50_latency_ms"], values["p95_latency_ms"]
    return UsageRow(
        group=group,
        # int(): PostgreSQL's SUM of integers is a NUMERIC (Decimal) for bigint columns.
        requests=int(values["requests"]),
        errors=int(values["errors"]),
        cache_hits=int(values["cache_hits"]),
        input_tokens=int(values["input_tokens"]),
        output_tokens=int(values["output_tokens"]),
        cached_tokens=int(values["cached_tokens"]),
        cost_usd=round(float(values["cost_usd"]), _COST_DIGITS),
        p50_latency_ms=None if p50 is None else float(p50),
        p95_latency_ms=None if p95 is None else float(p95),
        avg_latency_ms=None if avg is None else round(float(avg), 3),
    )


#: Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection);
#: model names and key names come from clients and admins, so such text cells are quoted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(records: Iterable[Mapping[str, Any]], names: Sequence[str]) -> str:
    """CSV text (RFC 4180, CRLF line ends) with a header row of ``names``, one line per record.

    Shared by ``GET /admin/usage?format=csv`` and ``aiwire usage --csv`` so both write the same
    file. Empty cells are None; text that a spreadsheet would run as a formula gets a ``'``.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(names)
    for record in records:
        writer.writerow([_cell(record.get(name)) for name in names])
    return out.getvalue()


__all__ = [
    "FILTERS",
    "GROUPS",
    "METRICS",
    "UsageQueryError",
    "UsageRow",
    "check_by",
    "columns",
    "to_csv",
    "usage_query",
    "usage_report",
]
