"""Sinks: where a finished record is written — HTTP, SQL upsert, JSONL, CSV, ``.eml`` drafts.

A sink is used in three moves, so the runner can promise one write per record and sink:

1. :meth:`prepare` renders what would be written (deterministic: the same record gives the same
   bytes), with a ``fingerprint`` the runner stores as ``pending`` before writing;
2. :meth:`present` answers, after a crash left a delivery ``pending``, whether the write did
   reach the destination (a file already holding exactly that line or file); HTTP cannot know
   and sends again with the same ``Idempotency-Key`` (the destination drops the repeat); an SQL
   upsert is idempotent by its key;
3. :meth:`write` writes; failures are :class:`StepFailure` with ``retryable`` set for what is
   worth retrying (connection errors, timeouts, 408, 429, 5xx).

Every URL is checked by the SSRF guard (:mod:`aiwire.netguard`) and connections resolve through
:class:`~aiwire.netguard.GuardedResolver`; loopback or private destinations need the flow's
``allow_hosts`` (or the sink's ``allow``). Errors name a destination by scheme and host only.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aiwire import errors, netguard
from aiwire.flows import paths, templates
from aiwire.flows.context import RecordContext, StepFailure
from aiwire.flows.definition import CsvSink, EmlSink, HttpSink, JsonlSink, Sink, SqlSink
from aiwire.secrets import is_reference, resolve

_FILE_LOCKS: dict[str, asyncio.Lock] = {}


def idempotency_key(flow: str, key: str, sink: str) -> str:
    """The same for every delivery attempt of one record to one sink, different otherwise."""
    return hashlib.sha256(f"aiwire-flow\x00{flow}\x00{key}\x00{sink}".encode()).hexdigest()


def _fingerprint(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\x00")
    return h.hexdigest()


@dataclass
class Prepared:
    """What one sink will write for one record."""

    fingerprint: str
    payload: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _render(text: str, ctx: RecordContext) -> str:
    try:
        return templates.render(text, ctx.names())
    except templates.TemplateError as exc:
        raise StepFailure(exc.message) from None


def _value(spec: str, ctx: RecordContext) -> Any:
    """A column spec: a template (rendered to text) or a field path (its value as it is)."""
    if templates.is_template(spec):
        return _render(spec, ctx)
    value = paths.get(ctx.data, spec)
    return None if value is paths.MISSING else value


# --- HTTP -----------------------------------------------------------------------------------------


class HttpClients:
    """aiohttp sessions whose connections resolve through the SSRF guard, one per allow-list."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, ...], aiohttp.ClientSession] = {}

    def session(self, allow: tuple[str, ...]) -> aiohttp.ClientSession:
        session = self._sessions.get(allow)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(resolver=netguard.GuardedResolver(allow), limit=32)
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[allow] = session
        return session

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def shown(url: str) -> str:
    """A URL as errors may show it: scheme and host (paths and queries can hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def http_failure(status: int, where: str, retry_after: str | None = None) -> StepFailure:
    if status in (408, 429) or status >= 500:
        failure = StepFailure(
            f"{where} answered HTTP {status}",
            error_class="transient",
            retryable=True,
            status=status,
        )
        if retry_after and retry_after.strip().isdigit():  # seconds; HTTP dates are ignored
            failure.retry_after = float(retry_after.strip())
        return failure
    if status in (401, 403):
        return StepFailure(
            f"{where} refused the credentials (HTTP {status}); check the flow's secrets",
            error_class="auth",
            status=status,
        )
    return StepFailure(f"{where} answered HTTP {status}", error_class="permanent", status=status)


async def guard_url(url: str, allow: tuple[str, ...]) -> None:
    try:
        await netguard.check_url_async(url, allow)
    except netguard.BlockedURLError as exc:
        raise StepFailure(
            f"{exc.message} (flow setting: allow_hosts)", error_class="blocked"
        ) from None
    except errors.ConnectionError as exc:
        raise StepFailure(exc.message, error_class="transient", retryable=True) from None


class HttpWriter:
    def __init__(self, sink: HttpSink, allow: tuple[str, ...], clients: HttpClients) -> None:
        self.sink = sink
        self.allow = tuple(sorted({*allow, *sink.allow}))
        self.clients = clients

    def prepare(self, ctx: RecordContext) -> Prepared:
        sink = self.sink
        url = _render(sink.url, ctx)
        if sink.json_ is not None:
            try:
                body = orjson.dumps(templates.render_value(sink.json_, ctx.names()), default=str)
            except templates.TemplateError as exc:
                raise StepFailure(exc.message) from None
            content_type = "application/json"
        elif sink.body is not None:
            body = _render(sink.body, ctx).encode()
            content_type = sink.content_type
        else:
            body = orjson.dumps(ctx.data, default=str)
            content_type = "application/json"
        return Prepared(
            _fingerprint(sink.method, url, body),
            payload=body,
            extra={"url": url, "content_type": content_type},
        )

    def headers(self, ctx: RecordContext) -> dict[str, str]:
        names = ctx.names_with_secrets() if self.sink.headers else {}
        try:
            return {k: templates.render(v, names) for k, v in self.sink.headers.items()}
        except templates.TemplateError as exc:
            raise StepFailure(exc.message) from None

    async def present(self, prepared: Prepared) -> bool:
        return False  # unknowable: send again with the same Idempotency-Key

    async def write(self, prepared: Prepared, idem: str, ctx: RecordContext) -> int | None:
        url = prepared.extra["url"]
        where = shown(url)
        await guard_url(url, self.allow)
        headers = {"content-type": prepared.extra["content_type"], **self.headers(ctx)}
        if self.sink.idempotency_header:
            headers[self.sink.idempotency_header] = idem
        session = self.clients.session(self.allow)
        timeout = aiohttp.ClientTimeout(total=self.sink.timeout)
        try:
            async with session.request(
                self.sink.method, url, data=prepared.payload, headers=headers, timeout=timeout
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise http_failure(resp.status, where, resp.headers.get("retry-after"))
                return resp.status
        except netguard.BlockedURLError as exc:
            raise StepFailure(exc.message, error_class="blocked") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepFailure(
                f"{where}: {type(exc).__name__}", error_class="transient", retryable=True
            ) from None


# --- SQL ------------------------------------------------------------------------------------------


class Engines:
    """One async engine per database URL (SQLite and PostgreSQL through the store's async
    drivers; any other SQLAlchemy URL through its own driver in a thread)."""

    def __init__(self) -> None:
        self._async: dict[str, AsyncEngine] = {}
        self._sync: dict[str, sa.Engine] = {}

    @staticmethod
    def url(spec: str, where: str) -> str:
        """The URL to connect to: a reference resolved (its value is never shown)."""
        return resolve(spec, field=where).reveal() if is_reference(spec) else spec

    def get(self, url: str) -> AsyncEngine | sa.Engine:
        backend = sa.engine.make_url(url).get_backend_name()
        if backend in ("sqlite", "postgresql", "postgres"):
            engine = self._async.get(url)
            if engine is None:
                from aiwire.store.db import async_url

                engine = self._async[url] = create_async_engine(
                    async_url(url), hide_parameters=True
                )
            return engine
        sync = self._sync.get(url)
        if sync is None:
            sync = self._sync[url] = sa.create_engine(url, hide_parameters=True)
        return sync

    async def aclose(self) -> None:
        for engine in self._async.values():
            await engine.dispose()
        for sync in self._sync.values():
            sync.dispose()
        self._async.clear()
        self._sync.clear()


def db_detail(exc: BaseException, url: str) -> str:
    """The first line of a driver error, without the URL's password or anything key-shaped."""
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()
    text = detail[0][:300] if detail else ""
    try:
        password = sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        password = None
    hidden = (password, quote(password, safe=""), quote_plus(password)) if password else ()
    return errors.scrub(text, tuple(hidden))


def _upsert(dialect: str, table: sa.TableClause, row: dict[str, Any], key: list[str]) -> Any:
    rest = [c for c in row if c not in key]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(row)
        if rest:
            return stmt.on_conflict_do_update(
                index_elements=key, set_={c: stmt.excluded[c] for c in rest}
            )
        return stmt.on_conflict_do_nothing(index_elements=key)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    pg = pg_insert(table).values(row)
    if rest:
        return pg.on_conflict_do_update(index_elements=key, set_={c: pg.excluded[c] for c in rest})
    return pg.on_conflict_do_nothing(index_elements=key)


def _sync_upsert(
    engine: sa.Engine, table: sa.TableClause, row: dict[str, Any], key: list[str]
) -> None:
    """Databases without ``ON CONFLICT``: update by key, insert when nothing was updated."""
    with engine.begin() as conn:
        where = sa.and_(*(table.c[k] == row[k] for k in key))
        rest = {c: v for c, v in row.items() if c not in key}
        updated = conn.execute(sa.update(table).where(where).values(rest)).rowcount if rest else 0
        if (
            not updated
            and not conn.execute(sa.select(sa.literal(1)).select_from(table).where(where)).first()
        ):
            conn.execute(sa.insert(table).values(row))


class SqlWriter:
    def __init__(self, sink: SqlSink, engines: Engines, where: str) -> None:
        self.sink = sink
        self.engines = engines
        self.where = where
        schema, _, name = sink.table.rpartition(".")
        self.table = sa.table(name, *(sa.column(c) for c in sink.columns), schema=schema or None)

    def prepare(self, ctx: RecordContext) -> Prepared:
        row: dict[str, Any] = {}
        for column, spec in self.sink.columns.items():
            value = _value(spec, ctx)
            row[column] = orjson.dumps(value).decode() if isinstance(value, dict | list) else value
        for k in self.sink.key:
            if row[k] is None:
                raise StepFailure(f"sql sink: key column {k!r} has no value for this record")
        return Prepared(_fingerprint(orjson.dumps(row, default=str)), payload=row)

    async def present(self, prepared: Prepared) -> bool:
        return False  # an upsert by key writes the same row again: harmless

    async def write(self, prepared: Prepared, idem: str, ctx: RecordContext) -> int | None:
        url = self.engines.url(self.sink.url, self.where)
        engine = self.engines.get(url)
        try:
            if isinstance(engine, AsyncEngine):
                async with engine.begin() as conn:
                    await conn.execute(
                        _upsert(engine.dialect.name, self.table, prepared.payload, self.sink.key)
                    )
            else:
                await asyncio.to_thread(
                    _sync_upsert, engine, self.table, prepared.payload, self.sink.key
                )
        except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StepFailure(
                f"sql sink {self.sink.table}: {type(exc).__name__} (database unreachable?)",
                error_class="transient",
                retryable=True,
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise StepFailure(
                f"sql sink {self.sink.table}: {type(exc).__name__}: {db_detail(exc, url)}"
            ) from None
        return None


# --- files ----------------------------------------------------------------------------------------


def _lock(path: Path) -> asyncio.Lock:
    return _FILE_LOCKS.setdefault(str(path), asyncio.Lock())


def _append(path: Path, data: bytes, header: bytes = b"") -> None:
    """Append ``data`` as whole lines, first cutting a partial last line a crash may have left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                fh.seek(0)
                content = fh.read()
                fh.truncate(content.rfind(b"\n") + 1)
                fh.seek(0, os.SEEK_END)
        if fh.tell() == 0 and header:
            data = header + data
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _contains(path: Path, data: bytes) -> bool:
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return False
    return content.startswith(data) or (b"\n" + data) in content


class JsonlWriter:
    def __init__(self, sink: JsonlSink, resolve_path: Callable[[str], Path]) -> None:
        self.sink = sink
        self.path = resolve_path(sink.path)

    def prepare(self, ctx: RecordContext) -> Prepared:
        if self.sink.record is not None:
            try:
                obj: Any = templates.render_value(self.sink.record, ctx.names())
            except templates.TemplateError as exc:
                raise StepFailure(exc.message) from None
        elif self.sink.fields is not None:
            obj = {}
            for p in self.sink.fields:
                value = paths.get(ctx.data, p)
                paths.set_(obj, p, None if value is paths.MISSING else value)
        else:
            obj = ctx.data
        line = orjson.dumps(obj, default=str) + b"\n"
        return Prepared(_fingerprint(line), payload=line)

    async def present(self, prepared: Prepared) -> bool:
        async with _lock(self.path):
            return await asyncio.to_thread(_contains, self.path, prepared.payload)

    async def write(self, prepared: Prepared, idem: str, ctx: RecordContext) -> int | None:
        async with _lock(self.path):
            await asyncio.to_thread(_append, self.path, prepared.payload)
        return None


class CsvWriter:
    def __init__(self, sink: CsvSink, resolve_path: Callable[[str], Path]) -> None:
        self.sink = sink
        self.path = resolve_path(sink.path)

    def _row(self, values: list[Any]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, delimiter=self.sink.delimiter, lineterminator="\n").writerow(values)
        return buf.getvalue().encode()

    def prepare(self, ctx: RecordContext) -> Prepared:
        values = []
        for spec in self.sink.columns.values():
            v = _value(spec, ctx)
            values.append(
                orjson.dumps(v).decode() if isinstance(v, dict | list) else ("" if v is None else v)
            )
        row = self._row(values)
        return Prepared(_fingerprint(row), payload=row)

    async def present(self, prepared: Prepared) -> bool:
        async with _lock(self.path):
            return await asyncio.to_thread(_contains, self.path, prepared.payload)

    async def write(self, prepared: Prepared, idem: str, ctx: RecordContext) -> int | None:
        header = self._row(list(self.sink.columns))
        async with _lock(self.path):
            await asyncio.to_thread(_append, self.path, prepared.payload, header)
        return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


class EmlWriter:
    def __init__(self, sink: EmlSink, resolve_path: Callable[[str], Path]) -> None:
        self.sink = sink
        self.dir = resolve_path(sink.dir)

    def prepare(self, ctx: RecordContext) -> Prepared:
        sink = self.sink
        msg = EmailMessage(policy=SMTP)
        msg["To"] = _render(sink.to, ctx).strip()
        msg["From"] = _render(sink.from_, ctx).strip()
        if sink.cc:
            cc = _render(sink.cc, ctx).strip()
            if cc:
                msg["Cc"] = cc
        msg["Subject"] = " ".join(_render(sink.subject, ctx).split())
        msg["X-Unsent"] = "1"  # mail clients open it as a draft to edit and send
        msg["X-Aiwire-Flow"] = ctx.flow.name
        msg.set_content(_render(sink.body, ctx))
        name = _UNSAFE.sub("_", _render(sink.file_name, ctx).strip()).strip("._") or "draft"
        if not name.endswith(".eml"):
            name += ".eml"
        data = msg.as_bytes()
        return Prepared(_fingerprint(data), payload=data, extra={"path": self.dir / name})

    async def present(self, prepared: Prepared) -> bool:
        path: Path = prepared.extra["path"]

        def same() -> bool:
            return path.exists() and path.read_bytes() == prepared.payload

        return await asyncio.to_thread(same)

    async def write(self, prepared: Prepared, idem: str, ctx: RecordContext) -> int | None:
        path: Path = prepared.extra["path"]

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{idem[:12]}.tmp")
            tmp.write_bytes(prepared.payload)
            os.replace(tmp, path)  # atomic: a reader never sees half a draft

        await asyncio.to_thread(write)
        return None


Writer = HttpWriter | SqlWriter | JsonlWriter | CsvWriter | EmlWriter


def writer_for(
    sink: Sink,
    *,
    allow: tuple[str, ...],
    clients: HttpClients,
    engines: Engines,
    resolve_path: Callable[[str], Path],
    where: str,
) -> Writer:
    if isinstance(sink, HttpSink):
        return HttpWriter(sink, allow, clients)
    if isinstance(sink, SqlSink):
        return SqlWriter(sink, engines, where)
    if isinstance(sink, JsonlSink):
        return JsonlWriter(sink, resolve_path)
    if isinstance(sink, CsvSink):
        return CsvWriter(sink, resolve_path)
    return EmlWriter(sink, resolve_path)
