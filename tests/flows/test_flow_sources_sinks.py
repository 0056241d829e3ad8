"""Sources and sinks: SQL with an incremental column (SQLite and PostgreSQL), HTTP polling with
a cursor and pagination against a local fake API, the SSRF guard, SQL upsert, CSV and .eml."""

from __future__ import annotations

import email
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.flows.flow_support import ScriptedModel, read_jsonl, scripted_router, write_flow

from aiwire.flows.loader import load_flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.store import FlowStore
from aiwire.serving import BackgroundServer
from aiwire.store.db import async_url


async def _no_sleep(seconds: float) -> None:
    return None


async def run(store: FlowStore, path: Path) -> Any:
    runner = FlowRunner(store, scripted_router(ScriptedModel()), sleep=_no_sleep)
    try:
        return await runner.run(load_flow(path))
    finally:
        await runner.aclose()


# --- SQL source with an incremental column -------------------------------------------------


async def _execute(url: str, *statements: str, params: list[dict[str, Any]] | None = None) -> None:
    engine = create_async_engine(async_url(url))
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement), params or {})
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def source_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/crm.db"
    return str(request.getfixturevalue("pg_url"))


async def test_sql_source_reads_only_new_rows(
    store: FlowStore, tmp_path: Path, source_db: str
) -> None:
    is_pg = source_db.startswith("postgresql")
    stamp = "TIMESTAMPTZ" if is_pg else "TEXT"
    await _execute(
        source_db,
        f"CREATE TABLE leads (id INTEGER PRIMARY KEY, email TEXT, updated_at {stamp} NOT NULL)",
    )

    def row(i: int, day: int) -> str:
        return (
            f"INSERT INTO leads VALUES ({i}, 'l{i}@acme.test', '2024-05-{day:02d}T10:00:00+00:00')"
        )

    await _execute(source_db, row(1, 1), row(2, 2))
    path = write_flow(
        tmp_path,
        f"""\
name: sqlsrc
source:
  kind: sql
  url: "{source_db}"
  query: "SELECT id, email, updated_at FROM leads"
  incremental: {{column: updated_at}}
key: "{{{{ id }}}}"
sinks: [{{kind: jsonl, path: out.jsonl, fields: [id, email]}}]
""",
    )
    first = await run(store, path)
    assert first.counts["new"] == 2
    cursor = await store.cursor("sqlsrc", "sql")
    assert cursor is not None and cursor["type"] == ("datetime" if is_pg else "str")
    again = await run(store, path)
    assert again.counts.get("read", 0) == 0  # WHERE updated_at > cursor: nothing new
    await _execute(
        source_db,
        row(3, 3),
        "UPDATE leads SET updated_at = '2024-05-04T10:00:00+00:00', email = 'new@acme.test' "
        "WHERE id = 1",
    )
    third = await run(store, path)
    assert third.counts["read"] == 2
    assert third.counts["new"] == 1 and third.counts["already_known"] == 1  # id 1 keeps its key
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "out.jsonl")) == [1, 2, 3]


# --- HTTP polling with cursor and pagination -----------------------------------------------------


class FakeTickets:
    """GET /api/tickets?updated_since=&page_token=: two items per page, newest cursor last."""

    def __init__(self) -> None:
        self.tickets = [
            {"id": f"t{i}", "subject": f"Ticket {i}", "updated_at": f"2024-06-0{i}T08:00:00Z"}
            for i in range(1, 6)
        ]
        self.requests: list[dict[str, str]] = []
        app = Starlette(
            routes=[Route("/api/tickets", self.list), Route("/api/v2/tickets", self.list_v2)]
        )
        self.server = BackgroundServer(app)

    async def list(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        self.requests.append({**params, "auth": request.headers.get("authorization", "")})
        since = params.get("updated_since", "")
        items = [t for t in self.tickets if t["updated_at"] > since]
        start = int(params.get("page_token", "0"))
        page = items[start : start + 2]
        more = start + 2 < len(items)
        return JSONResponse({"data": page, "next_page_token": str(start + 2) if more else None})

    async def list_v2(self, request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "1"))
        items = self.tickets[(page - 1) * 2 : page * 2]
        nxt = f"/api/v2/tickets?page={page + 1}" if page * 2 < len(self.tickets) else None
        return JSONResponse({"results": items, "links": {"next": nxt}})


async def test_http_polling_with_cursor_and_token_pagination(
    store: FlowStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "tok-abc-123")
    api = FakeTickets()
    with api.server:
        path = write_flow(
            tmp_path,
            f"""\
name: poll
source:
  kind: http
  url: "{api.server.url}/api/tickets"
  headers: {{Authorization: "Bearer {{{{ secrets.TICKETS_TOKEN }}}}"}}
  items: data
  cursor: {{field: updated_at, param: updated_since}}
  pagination: {{style: next_token, path: next_page_token, param: page_token}}
secrets: {{TICKETS_TOKEN: env:TICKETS_TOKEN}}
allow_hosts: [127.0.0.1]
key: id
sinks: [{{kind: jsonl, path: out.jsonl, fields: [id]}}]
""",
        )
        first = await run(store, path)
        assert first.counts["new"] == 5
        assert [r.get("page_token") for r in api.requests] == [None, "2", "4"]
        assert all(r["auth"] == "Bearer tok-abc-123" for r in api.requests)
        assert await store.cursor("poll", "http") == {"value": "2024-06-05T08:00:00Z"}

        api.requests.clear()
        api.tickets.append({"id": "t6", "subject": "New", "updated_at": "2024-06-06T08:00:00Z"})
        second = await run(store, path)
        assert api.requests[0]["updated_since"] == "2024-06-05T08:00:00Z"
        assert second.counts == {"read": 1, "new": 1, "already_known": 0, "done": 1}
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "out.jsonl")) == [
        f"t{i}" for i in range(1, 7)
    ]


async def test_http_polling_with_next_url_pagination(store: FlowStore, tmp_path: Path) -> None:
    api = FakeTickets()
    with api.server:
        path = write_flow(
            tmp_path,
            f"""\
name: poll2
source:
  kind: http
  url: "{api.server.url}/api/v2/tickets?page=1"
  items: results
  pagination: {{style: next_url, path: links.next}}
allow_hosts: [127.0.0.1]
key: id
sinks: [{{kind: jsonl, path: out.jsonl, fields: [id]}}]
""",
        )
        summary = await run(store, path)
    assert summary.counts["new"] == 5
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 5


async def test_loopback_is_refused_unless_allow_listed(store: FlowStore, tmp_path: Path) -> None:
    api = FakeTickets()
    with api.server:
        path = write_flow(
            tmp_path,
            f"""\
name: ssrf
source: {{kind: http, url: "{api.server.url}/api/tickets", items: data}}
sinks: [{{kind: jsonl, path: out.jsonl}}]
""",
        )
        summary = await run(store, path)
        assert summary.status == "failed" and "Refused to fetch http://127.0.0.1" in (
            summary.error or ""
        )
        assert api.requests == []

    (tmp_path / "in.jsonl").write_text('{"id": "a"}\n')
    sink_flow = write_flow(
        tmp_path,
        "name: ssrf2\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
        "sinks: [{kind: http, url: 'http://169.254.169.254/latest/meta-data'}]\n",
        "sink.yaml",
    )
    sink_summary = await run(store, sink_flow)
    (dead,) = await store.dead_letters("ssrf2")
    assert sink_summary.counts["dead"] == 1 and dead.error_class == "blocked"
    assert "link-local" in dead.error and "meta-data" not in dead.error


# --- sinks ----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def sink_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/dest.db"
    return str(request.getfixturevalue("pg_url"))


async def test_sql_sink_upserts_by_key(
    store: FlowStore, tmp_path: Path, sink_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _execute(
        sink_db,
        "CREATE TABLE activities "
        "(lead_id TEXT PRIMARY KEY, subject TEXT, meta TEXT, score DOUBLE PRECISION)",
    )
    await _execute(sink_db, "INSERT INTO activities VALUES ('L1', 'old subject', NULL, 0)")
    monkeypatch.setenv("DEST_DB", sink_db)
    (tmp_path / "in.jsonl").write_text(
        '{"id": "L1", "subject": "new subject", "meta": {"a": 1}, "score": 0.5}\n'
        '{"id": "L2", "subject": "second", "meta": null, "score": 1.5}\n'
    )
    path = write_flow(
        tmp_path,
        """\
name: sqlsink
source: {kind: jsonl, path: in.jsonl}
key: id
sinks:
  - kind: sql
    url: env:DEST_DB
    table: activities
    key: [lead_id]
    columns: {lead_id: id, subject: "Re: {{ subject }}", meta: meta, score: score}
""",
    )
    summary = await run(store, path)
    assert summary.counts["done"] == 2
    engine = create_async_engine(async_url(sink_db))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text("SELECT lead_id, subject, meta, score FROM activities ORDER BY lead_id")
            )
        ).all()
    await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("L1", "Re: new subject", '{"a":1}', 0.5),
        ("L2", "Re: second", None, 1.5),
    ]


async def test_csv_and_eml_sinks(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        '{"id": "m/1", "to": "anna@acme.test", "subject": "Follow-up, as promised", '
        '"body": "Hi Anna,\\nthanks."}\n'
    )
    path = write_flow(
        tmp_path,
        """\
name: files
source: {kind: jsonl, path: in.jsonl}
key: id
sinks:
  - {kind: csv, path: out/rows.csv, columns: {id: id, subject: subject, note: "{{ to | upper }}"}}
  - kind: eml
    dir: out/drafts
    to: "{{ to }}"
    from: "sales@example.com"
    subject: "{{ subject }}"
    body: "{{ body }}"
""",
    )
    await run(store, path)
    await run(store, path)
    assert (tmp_path / "out/rows.csv").read_text() == (
        'id,subject,note\nm/1,"Follow-up, as promised",ANNA@ACME.TEST\n'
    )
    (draft,) = list((tmp_path / "out/drafts").iterdir())
    assert draft.name == "m_1.eml"  # the key, made safe for a file name
    message = email.message_from_bytes(draft.read_bytes())
    assert message["To"] == "anna@acme.test" and message["X-Unsent"] == "1"
    assert message["Subject"] == "Follow-up, as promised"
    body = message.get_payload(decode=True).decode()
    assert body == "Hi Anna,\r\nthanks.\r\n"  # RFC 5322 line ends, as mail clients expect


async def test_postgres_store_backend(tmp_path: Path, pg_url: str) -> None:
    """The flow state itself on PostgreSQL: same behaviour, same tables."""
    from aiwire.store.db import Database

    database = Database(pg_url)
    await database.migrate()
    try:
        store = FlowStore(database)
        (tmp_path / "in.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
        path = write_flow(
            tmp_path,
            "name: pgstate\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
            "sinks: [{kind: jsonl, path: out.jsonl}]\n",
        )
        assert (await run(store, path)).counts["done"] == 2
        assert (await run(store, path)).counts["already_known"] == 2
        assert len(read_jsonl(tmp_path / "out.jsonl")) == 2
    finally:
        await database.aclose()
    conn = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM flow_deliveries WHERE status = 'delivered'")
            == 2
        )
    finally:
        await conn.close()
