"""``/admin/logs``: the request log, newest first, and one request in detail.

``GET /admin/logs?key=&model=&status=&since=&until=&cursor=&limit=`` pages through the log
(keyset pagination: ``next_cursor`` continues where the page stopped); ``GET
/admin/logs/{request_id}`` adds what a list leaves out: the content, when the gateway keeps it
(``server.store_content`` and the key's ``log_content`` option), as masked as it was sent
upstream. See :mod:`aiwire.store.logs`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from aiwire import errors
from aiwire.server import admin_base as base
from aiwire.server.admin_base import Context, Text, Timestamp, bad
from aiwire.server.admin_stats import time_bound
from aiwire.store import logs

router = APIRouter(tags=["logs"])

_RANGE_HELP = "A duration back from now (1h, 7d) or an ISO date or time (UTC if no offset)."


class LogEntry(base.Output):
    request_id: str
    ts: Timestamp
    key_id: str | None = Field(description="The key used (null: the master key).")
    key_name: str | None
    team: str | None
    model: str = Field(description="The model name the client asked for.")
    deployment: str | None = Field(description="The deployment that answered (last tried).")
    provider: str | None
    endpoint: str
    status: int
    error_type: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None = Field(description="Time to the first streamed token.")
    retries: int = Field(description="Upstream attempts after the first.")
    fallback: bool = Field(description="A fallback model answered.")
    stream: bool
    cache_hit: bool


class LogDetail(LogEntry):
    prompt: str | None = Field(description="The request as sent upstream, if content is kept.")
    completion: str | None = Field(description="The answer, if content is kept.")


class LogList(base.Output):
    object: Literal["list"]
    data: list[LogEntry]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


@router.get("/logs", response_model=LogList, summary="The request log, newest first")
async def list_logs(
    ctx: Context,
    key: Annotated[Text | None, Query(description="Only this key id.")] = None,
    model: Annotated[Text | None, Query(description="Only this model name.")] = None,
    status: Annotated[
        str | None,
        Query(
            pattern=r"^(ok|error|[1-5][0-9][0-9])$",
            description="A status code, ok (below 400) or error (400 and up).",
        ),
    ] = None,
    since: Annotated[str | None, Query(description=_RANGE_HELP, max_length=64)] = None,
    until: Annotated[str | None, Query(description=_RANGE_HELP, max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="From next_cursor.")] = None,
    limit: Annotated[int, Query(ge=1, le=logs.MAX_PAGE)] = logs.DEFAULT_PAGE,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    filters = logs.LogFilters(
        key=key,
        model=model,
        status=status,
        since=time_bound(since, "since", now) if since else None,
        until=time_bound(until, "until", now) if until else None,
    )
    try:
        page = await logs.list_logs(ctx.keys.database, filters, cursor=cursor, limit=limit)
    except logs.LogQueryError as exc:
        raise bad(exc.param, str(exc)) from None
    return {
        "object": "list",
        "data": page.rows,
        "has_more": page.next_cursor is not None,
        "next_cursor": page.next_cursor,
    }


@router.get("/logs/{request_id}", response_model=LogDetail, summary="One request in detail")
async def get_log(request_id: str, ctx: Context) -> dict[str, Any]:
    found = None
    if len(request_id) <= 128 and not base.CONTROL.search(request_id):
        found = await logs.get_log(ctx.keys.database, request_id)
    if found is None:
        raise errors.NotFoundError(
            f"no request {request_id[:64]!r} in the log (it holds requests that reached a "
            "provider or the cache)",
            code="unknown_request",
        )
    return found


__all__ = ["router"]
