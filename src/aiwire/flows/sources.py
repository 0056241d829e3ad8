"""Sources that are read (the webhook source is pushed: see :mod:`aiwire.flows.webhook`).

Each yields batches of records; the runner stores a batch (records already known are skipped
by key) before asking for the next, and stores the source's cursor only after the last batch,
so a crash during a read re-reads from the old cursor and nothing is lost (the records already
stored are not stored twice).

- CSV and JSONL files (paths relative to the flow file);
- HTTP polling: GET with a cursor parameter (the highest ``cursor.field`` seen, e.g.
  ``updated_since``) and pagination by next URL, next token or page number;
- SQL: a query on any SQLAlchemy URL, incremental on a column (``WHERE col > :cursor``).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aiwire.flows import paths, templates
from aiwire.flows.context import RecordContext, StepFailure
from aiwire.flows.definition import CsvSource, HttpSource, JsonlSource, SqlSource
from aiwire.flows.loader import Flow
from aiwire.flows.sinks import Engines, HttpClients, db_detail, guard_url, http_failure, shown
from aiwire.flows.store import FlowStore

BATCH = 500


@dataclass
class Item:
    """A record read from a source, or (``error`` set) something that could not be read as one."""

    data: dict[str, Any]
    error: str | None = None


@dataclass
class Batch:
    items: list[Item]
    #: Saved as the source's cursor once this (last) batch is stored.
    cursor: dict[str, Any] | None = None


class SourceError(StepFailure):
    """A source could not be read (the run fails; nothing after the failure is lost)."""


async def read(
    flow: Flow, store: FlowStore, clients: HttpClients, engines: Engines
) -> AsyncIterator[Batch]:
    source = flow.spec.source
    if isinstance(source, CsvSource):
        async for batch in _csv(flow, source):
            yield batch
    elif isinstance(source, JsonlSource):
        async for batch in _jsonl(flow, source):
            yield batch
    elif isinstance(source, HttpSource):
        async for batch in _http(flow, source, store, clients):
            yield batch
    elif isinstance(source, SqlSource):
        async for batch in _sql(flow, source, store, engines):
            yield batch


def _open(flow: Flow, path: str, encoding: str) -> Any:
    target = flow.resolve_path(path)
    try:
        return open(
            target,
            encoding="utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding,
            newline="",
        )
    except OSError as exc:
        raise SourceError(f"cannot read source file {target}: {exc.strerror}") from None


async def _csv(flow: Flow, source: CsvSource) -> AsyncIterator[Batch]:
    with _open(flow, source.path, source.encoding) as fh:
        reader = csv.DictReader(fh, delimiter=source.delimiter)
        items: list[Item] = []
        for row in reader:
            extra = row.pop(None, None)
            if extra:
                items.append(
                    Item(
                        {"_line": reader.line_num},
                        f"line {reader.line_num} has more values than the header",
                    )
                )
            else:
                items.append(Item({k: v for k, v in row.items() if k is not None}))
            if len(items) >= BATCH:
                yield Batch(items)
                items = []
        yield Batch(items)


async def _jsonl(flow: Flow, source: JsonlSource) -> AsyncIterator[Batch]:
    with _open(flow, source.path, source.encoding) as fh:
        items: list[Item] = []
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                items.append(
                    Item({"_line": n, "_text": line[:2000]}, f"line {n} is not JSON: {exc}")
                )
                continue
            if not isinstance(value, dict):
                items.append(Item({"_line": n}, f"line {n} is not a JSON object"))
                continue
            items.append(Item(value))
            if len(items) >= BATCH:
                yield Batch(items)
                items = []
        yield Batch(items)


# --- HTTP polling ---------------------------------------------------------------------------------


def _later(a: Any, b: Any) -> bool:
    """Whether cursor value ``a`` is after ``b`` (numbers by value, anything else as text)."""
    if b is None:
        return True
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a > b
    return str(a) > str(b)


async def _http(
    flow: Flow, source: HttpSource, store: FlowStore, clients: HttpClients
) -> AsyncIterator[Batch]:
    allow = tuple(sorted({*flow.spec.allow_hosts, *source.allow}))
    saved = await store.cursor(flow.name, "http") if source.cursor else None
    cursor = saved["value"] if saved else (source.cursor.initial if source.cursor else None)
    ctx = RecordContext(flow, "", {}, {})
    try:
        headers = {
            k: templates.render(v, ctx.names_with_secrets()) for k, v in source.headers.items()
        }
    except templates.TemplateError as exc:
        raise SourceError(exc.message) from None
    params: dict[str, Any] = {k: str(v) for k, v in source.params.items()}
    if source.cursor is not None and cursor is not None:
        params[source.cursor.param] = str(cursor)
    url: str | None = source.url
    highest = cursor
    pages = 0
    pagination = source.pagination
    if pagination is not None and pagination.style == "page":
        params[str(pagination.param)] = str(pagination.start)
    session = clients.session(allow)
    while url is not None:
        pages += 1
        body = await _get(session, url, params, headers, allow, source.timeout)
        items = body if source.items is None else paths.get(body, source.items)
        if not isinstance(items, list):
            raise SourceError(
                f"{shown(url)}: the response has no list at {source.items or '(the body)'}"
            )
        batch = [
            Item(i) if isinstance(i, dict) else Item({"value": i}, "an item that is not an object")
            for i in items
        ]
        if source.cursor is not None:
            for item in items:
                value = (
                    paths.get(item, source.cursor.field)
                    if isinstance(item, dict)
                    else paths.MISSING
                )
                if value is not paths.MISSING and value is not None and _later(value, highest):
                    highest = value
        yield Batch(batch)
        url = None
        if pagination is None or pages >= pagination.max_pages:
            break
        if pagination.style == "next_url":
            nxt = paths.get(body, str(pagination.path))
            if nxt:
                url, params = urljoin(source.url, str(nxt)), {}
        elif pagination.style == "next_token":
            token = paths.get(body, str(pagination.path))
            if token not in (None, "", paths.MISSING):
                url = source.url
                params = {**params, str(pagination.param): str(token)}
        elif items:
            url = source.url
            params = {**params, str(pagination.param): str(pagination.start + pages)}
    yield Batch([], {"value": highest} if source.cursor is not None else None)


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, Any],
    headers: dict[str, str],
    allow: tuple[str, ...],
    timeout: float,
) -> Any:
    await guard_url(url, allow)
    try:
        async with session.get(
            url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                failure = http_failure(resp.status, shown(url))
                raise SourceError(
                    failure.message, error_class=failure.error_class, retryable=failure.retryable
                )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SourceError(
            f"{shown(url)}: {type(exc).__name__}", error_class="transient", retryable=True
        ) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SourceError(f"{shown(url)} did not answer with JSON") from None


# --- SQL ------------------------------------------------------------------------------------------


def _typed(value: Any) -> dict[str, Any]:
    """A cursor value with its type, so it is bound back as the same type."""
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, bool | int | float | str):
        return {"type": type(value).__name__, "value": value}
    return {"type": "str", "value": str(value)}


def _untyped(saved: dict[str, Any]) -> Any:
    kind, value = saved.get("type"), saved.get("value")
    if kind == "datetime":
        return dt.datetime.fromisoformat(str(value))
    if kind == "date":
        return dt.date.fromisoformat(str(value))
    if kind == "decimal":
        return Decimal(str(value))
    return value


async def _sql(
    flow: Flow, source: SqlSource, store: FlowStore, engines: Engines
) -> AsyncIterator[Batch]:
    url = engines.url(source.url, f"{flow.name}: source.url")
    engine = engines.get(url)
    query = source.query.strip().rstrip(";")
    params: dict[str, Any] = {}
    inc = source.incremental
    if inc is not None:
        saved = await store.cursor(flow.name, "sql")
        cursor = _untyped(saved) if saved else inc.initial
        column = inc.column
        where = f" WHERE {column} > :aiwire_cursor" if cursor is not None else ""
        query = f"SELECT * FROM ({query}) AS aiwire_source{where} ORDER BY {column}"
        if cursor is not None:
            params["aiwire_cursor"] = cursor
    try:
        if isinstance(engine, AsyncEngine):
            async with engine.connect() as conn:
                rows = [
                    dict(r._mapping) for r in (await conn.execute(sa.text(query), params)).all()
                ]
        else:
            with engine.connect() as sync_conn:
                rows = [dict(r._mapping) for r in sync_conn.execute(sa.text(query), params).all()]
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        retryable = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | OSError)
        raise SourceError(
            f"sql source: {type(exc).__name__}: {db_detail(exc, url)}",
            error_class="transient" if retryable else "permanent",
            retryable=retryable,
        ) from None
    for i in range(0, len(rows), source.batch_size):
        yield Batch([Item(r) for r in rows[i : i + source.batch_size]])
    last = rows[-1].get(inc.column) if inc is not None and rows else None
    yield Batch([], _typed(last) if last is not None else None)
