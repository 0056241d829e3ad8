"""``GET /admin/usage``: the request log's requests, errors, tokens, cost and latency per group,
as JSON or CSV (one GROUP BY query, plus one for the totals; see :mod:`aiwire.store.usage`).

An unknown or repeated parameter is a 400 naming it: a misspelt filter silently ignored would
report more than was asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response

from aiwire.server import admin_base as base
from aiwire.server.admin_base import Context, Timestamp, bad, parse_duration
from aiwire.store import usage

#: The report's range when ``since`` is not given.
DEFAULT_SINCE = "7d"
_PARAMS = ("by", "since", "until", "format", *usage.FILTERS)
_RANGE_HELP = "A duration back from now (7d, 12h, 90m) or an ISO date or time (UTC if no offset)."

router = APIRouter(tags=["usage"])

Cell = str | int | float | None


class UsageTotals(base.Output):
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


class UsageReport(base.Output):
    object: Literal["list"]
    by: list[str]
    since: Timestamp
    until: Timestamp
    filters: dict[str, str]
    data: list[dict[str, Cell]]
    totals: UsageTotals


_CSV = {"text/csv": {"schema": {"type": "string"}}}


@router.get(
    "/usage",
    response_model=UsageReport,
    summary="Usage report: requests, errors, tokens, cost and latency per group",
    responses={200: {"content": _CSV, "description": "The report (CSV with format=csv)"}},
)
async def usage_report(
    request: Request,
    ctx: Context,
    by: Annotated[
        list[str] | None,
        Query(description=f"Group by (repeat or comma-separate): {', '.join(usage.GROUPS)}."),
    ] = None,
    since: Annotated[str | None, Query(description=_RANGE_HELP)] = None,
    until: Annotated[str | None, Query(description=_RANGE_HELP + " Default: now.")] = None,
    format: Annotated[
        str | None,
        Query(description="json (default) or csv.", json_schema_extra={"enum": ["json", "csv"]}),
    ] = None,
    key: Annotated[str | None, Query(description="Only this key id.")] = None,
    team: Annotated[str | None, Query(description="Only this team.")] = None,
    model: Annotated[str | None, Query(description="Only this model name.")] = None,
    provider: Annotated[str | None, Query(description="Only this provider.")] = None,
) -> Any:
    # The declared parameters document the API; the raw query is read again so an unknown or
    # repeated parameter is refused rather than ignored.
    params = _query_params(request.scope.get("query_string", b""))
    now = datetime.now(UTC)
    start = _time(params.get("since", DEFAULT_SINCE), "since", now)
    end = _time(params["until"], "until", now) if "until" in params else now
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise bad("format", f"format must be json or csv, not {fmt!r}")
    filters = {name: params[name] for name in usage.FILTERS if name in params}
    # The key store's database is the gateway's one store; reports only read it.
    database = ctx.keys.database
    try:
        groups = usage.check_by(v.strip() for v in params.get("by", "key").split(",") if v.strip())
        if not groups:
            raise usage.UsageQueryError("by", "name at least one grouping")
        rows, total = await usage.usage_report_with_totals(database, groups, start, end, filters)
    except usage.UsageQueryError as exc:
        example = "; e.g. by=key or by=team,day" if exc.param == "by" else ""
        raise bad(exc.param, f"{exc}{example}") from None
    records = [row.public() for row in rows]
    if fmt == "csv":
        text = usage.to_csv(records, usage.columns(groups))
        return Response(text, media_type="text/csv")
    return {
        "object": "list",
        "by": groups,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "filters": filters,
        "data": records,
        "totals": total.public(),
    }


def _query_params(raw: bytes) -> dict[str, str]:
    """The query string as a dict; ``by`` given several times is joined with commas."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name not in _PARAMS:
            raise bad(name[:64], f"unknown parameter {name[:64]!r}; allowed: {', '.join(_PARAMS)}")
        if base.CONTROL.search(value):
            raise bad(name, "must not contain control characters")
        if name in params:
            if name != "by":
                raise bad(name, f"{name!r} is given more than once")
            value = f"{params[name]},{value}"
        params[name] = value
    return params


def _time(value: str, field: str, now: datetime) -> datetime:
    """A report bound: a duration back from now (``7d``, ``12h``; as :func:`parse_duration`)
    or an ISO 8601 date or time; a date is its midnight, and a time without an offset is UTC,
    like the report's days."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.strip())
        # A time without an offset is UTC; normalising here also catches the unrepresentable.
        return (when if when.utcoffset() is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        hint = " (in a URL, write + as %2B)" if " " in value.strip() else ""
        raise bad(
            field,
            f"{value!r} is neither a duration back from now (e.g. 7d, 12h, 90m) nor an ISO "
            f"date or time (e.g. 2030-01-31 or 2030-01-31T12:00:00Z){hint}",
        ) from None


__all__ = ["router"]
