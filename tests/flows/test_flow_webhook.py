"""The webhook source: HMAC-SHA256 over the raw body with a replay window. A bad or stale
signature is refused with 401 and nothing is stored; events are de-duplicated by event id."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from tests.flows.flow_support import (
    ScriptedModel,
    eventually,
    read_jsonl,
    scripted_router,
    write_flow,
)

from aiwire.flows.loader import Flow, load_flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.server import FlowsApp
from aiwire.flows.service import FlowService
from aiwire.flows.store import FlowStore
from aiwire.flows.webhook import sign
from aiwire.secrets import Secret
from aiwire.server.auth import Authenticator
from aiwire.store.models import FlowEvent, FlowRecord

SECRET = "whsec-test-0123456789abcdef"
BODY = orjson.dumps({"message_id": "msg-1", "from": "anna@acme.test", "text": "Where is my order?"})


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return load_flow(
        write_flow(
            tmp_path,
            """\
name: inbox
source: {kind: webhook, secret: env:HOOK_SECRET, event_id_field: message_id, tolerance: 300}
key: message_id
steps:
  - {kind: map, fields: {id: message_id, text: text}}
sinks: [{kind: jsonl, path: out.jsonl}]
""",
        )
    )


@pytest.fixture
async def client(store: FlowStore, flow: Flow) -> AsyncIterator[httpx.AsyncClient]:
    runner = FlowRunner(store, scripted_router(ScriptedModel()))
    service = FlowService(store, runner, {flow.name: flow})
    app = FlowsApp(service, Authenticator(master_key=Secret("master"), lookup=None))
    await service.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://flows"
    ) as c:
        yield c
    await service.stop()


def signed(
    body: bytes = BODY, *, secret: str = SECRET, ts: int | None = None, **extra: str
) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    return {"x-timestamp": str(stamp), "x-signature": sign(secret, body, stamp), **extra}


async def counts(store: FlowStore) -> tuple[int, int]:
    async with store.db.session() as s:
        records = await s.scalar(select(func.count()).select_from(FlowRecord))
        events = await s.scalar(select(func.count()).select_from(FlowEvent))
    return int(records or 0), int(events or 0)


async def test_a_signed_event_is_accepted_and_processed(
    client: httpx.AsyncClient, store: FlowStore, flow: Flow
) -> None:
    resp = await client.post("/flows/inbox/events", content=BODY, headers=signed())
    assert resp.status_code == 202
    assert resp.json() == {"status": "accepted", "event_id": "msg-1", "record": "msg-1"}
    await eventually(lambda: read_jsonl(flow.base_dir / "out.jsonl"))
    assert read_jsonl(flow.base_dir / "out.jsonl") == [
        {"id": "msg-1", "text": "Where is my order?"}
    ]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing signature"),
        ({"x-signature": "sha256=" + "0" * 64, "x-timestamp": "NOW"}, "invalid signature"),
        ({"x-signature": "SIGNED_WITH_OTHER_SECRET"}, "invalid signature"),
        ({"x-signature": "TAMPERED_BODY"}, "invalid signature"),
        ({"x-timestamp": "STALE"}, "stale event"),
        ({"x-timestamp": "FUTURE"}, "stale event"),
        ({"x-timestamp": "REPLAYED"}, "invalid signature"),
        ({"x-timestamp": ""}, "missing or malformed X-Timestamp"),
    ],
)
async def test_bad_or_stale_signatures_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, store: FlowStore, headers: dict[str, str], why: str
) -> None:
    now = int(time.time())
    h = dict(headers)
    body = BODY
    if h.get("x-timestamp") == "NOW":
        h["x-timestamp"] = str(now)
    if h.get("x-signature") == "SIGNED_WITH_OTHER_SECRET":
        h = signed(secret="some-other-secret")
    if h.get("x-signature") == "TAMPERED_BODY":
        h = signed()
        body = BODY.replace(b"Where", b"WHERE")
    if h.get("x-timestamp") == "STALE":
        h = signed(ts=now - 301)  # correctly signed, but outside the window
    if h.get("x-timestamp") == "FUTURE":
        h = signed(ts=now + 400)
    if h.get("x-timestamp") == "REPLAYED":
        h = signed(ts=now - 1000)  # an old signed event, replayed with a fresh timestamp
        h["x-timestamp"] = str(now)
    if h.get("x-timestamp") == "":
        h = {"x-signature": signed()["x-signature"]}
    resp = await client.post("/flows/inbox/events", content=body, headers=h)
    assert resp.status_code == 401
    assert why in resp.json()["error"]["message"]
    assert SECRET not in resp.text
    assert await counts(store) == (0, 0)


async def test_duplicate_event_ids_are_stored_once(
    client: httpx.AsyncClient, store: FlowStore
) -> None:
    first = await client.post("/flows/inbox/events", content=BODY, headers=signed())
    again = await client.post("/flows/inbox/events", content=BODY, headers=signed())
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    by_header = await client.post(
        "/flows/inbox/events",
        content=orjson.dumps({"message_id": "msg-2", "text": "x"}),
        headers=signed(
            orjson.dumps({"message_id": "msg-2", "text": "x"}), **{"x-event-id": "evt-9"}
        ),
    )
    assert by_header.json()["event_id"] == "evt-9"
    assert await counts(store) == (2, 2)


async def test_signature_rotation_and_plain_body_signing(
    tmp_path: Path, store: FlowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    flow = load_flow(
        write_flow(
            tmp_path,
            "name: gh\nsource: {kind: webhook, secret: env:HOOK_SECRET, signed_payload: body}\n"
            "sinks: [{kind: jsonl, path: out.jsonl}]\n",
            "gh.yaml",
        )
    )
    service = FlowService(store, FlowRunner(store, scripted_router(ScriptedModel())), {"gh": flow})
    app = FlowsApp(service, Authenticator(master_key=None, lookup=None))
    now = int(time.time())
    plain = sign(SECRET, BODY, now, signed_payload="body")
    old = sign("previous-secret", BODY, now, signed_payload="body")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as c:
        resp = await c.post(
            "/flows/gh/events",
            content=BODY,
            headers={"x-timestamp": str(now), "x-signature": f"{old},{plain}"},
        )
        assert resp.status_code == 202
        refused = await c.post(
            "/flows/gh/events",
            content=b"{}",
            headers={"x-timestamp": str(now), "x-signature": plain},
        )
        assert refused.status_code == 401
        unknown = await c.post("/flows/nope/events", content=BODY)
        assert unknown.status_code == 404
    await service.runner.aclose()


async def test_non_json_body_is_refused_after_the_signature(
    client: httpx.AsyncClient, store: FlowStore
) -> None:
    body = b"not json"
    resp = await client.post("/flows/inbox/events", content=body, headers=signed(body))
    assert resp.status_code == 400
    assert await counts(store) == (0, 0)
