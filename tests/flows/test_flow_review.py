"""The review queue: approve / edit / reject(reason), auto-approve, time-outs, the audit trail,
acceptance rates, and the admin API routes on the gateway (master key only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update
from tests.flows.flow_support import (
    ScriptedModel,
    eventually,
    read_jsonl,
    scripted_router,
    write_flow,
)

from aiwire.config import simulator_config
from aiwire.flows.loader import load_flow
from aiwire.flows.review import ReviewError, ReviewQueue
from aiwire.flows.runner import FlowRunner
from aiwire.flows.store import FlowStore, now
from aiwire.flows.webhook import sign
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.simulator import SimulatorServer
from aiwire.store import audit
from aiwire.store.models import AuditLog, FlowReview

DRAFTS = {
    "a": '{"subject": "Hello A", "body": "Body A", "confidence": 0.95}',
    "b": '{"subject": "Hello B", "body": "Body B", "confidence": 0.4}',
    "c": '{"subject": "Hello C", "body": "Body C", "confidence": 0.5}',
    "d": '{"subject": "Hello D", "body": "Body D", "confidence": 0.3}',
}
FLOW = """\
name: drafts
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: prompt, template: "{{ id }}"}
  - kind: model
    id: draft
    model: m
    confidence: true
    schema:
      type: object
      required: [subject, body]
      properties: {subject: {type: string, maxLength: 40}, body: {type: string}}
  - kind: review
    show: [id, draft]
    editable: [draft.subject, draft.body]
    auto_approve: "draft.confidence >= 0.9"
    instructions: "Check the tone"
    %s
  - {kind: transform, fields: {final: {expr: "draft.subject + ' / ' + _review.decision"}}}
sinks:
  - {kind: jsonl, path: out.jsonl, fields: [id, final, draft.subject]}
  - kind: jsonl
    id: rejections
    path: rejected.jsonl
    when: "_review.decision == 'rejected'"
    fields: [id]
"""


async def _no_sleep(seconds: float) -> None:
    return None


def model_for_drafts() -> ScriptedModel:
    return ScriptedModel(default=lambda request: DRAFTS[request.messages[-1].text])


@pytest.fixture
def flow_path(tmp_path: Path) -> Path:
    (tmp_path / "in.jsonl").write_text(
        "".join(orjson.dumps({"id": k}).decode() + "\n" for k in DRAFTS)
    )
    return write_flow(tmp_path, FLOW % "on_reject: continue")


@pytest.fixture
async def runner(store: FlowStore) -> AsyncIterator[FlowRunner]:
    r = FlowRunner(store, scripted_router(model_for_drafts()), sleep=_no_sleep)
    yield r
    await r.aclose()


async def pending(queue: ReviewQueue) -> dict[str, dict[str, Any]]:
    rows, _ = await queue.list(flow="drafts")
    return {r["record"]: r for r in rows}


async def test_decisions_move_records_on_and_are_audited(
    store: FlowStore, runner: FlowRunner, flow_path: Path
) -> None:
    flow = load_flow(flow_path)
    summary = await runner.run(flow)
    assert summary.counts == {
        "read": 4,
        "new": 4,
        "already_known": 0,
        "done": 1,
        "waiting_review": 3,
    }
    queue = ReviewQueue(store)  # finds the flow by the path its run registered
    waiting = await pending(queue)
    assert set(waiting) == {"b", "c", "d"}
    one = await queue.get(waiting["b"]["id"])
    assert one["draft"] == {
        "id": "b",
        "draft": {"subject": "Hello B", "body": "Body B", "confidence": 0.4},
        "draft.subject": "Hello B",
        "draft.body": "Body B",
    }
    assert one["source"] == {"id": "b"} and one["instructions"] == "Check the tone"
    assert one["record_state"] == "waiting_review"

    await queue.approve(waiting["b"]["id"], reviewer="alice")
    await queue.edit(waiting["c"]["id"], {"draft.subject": "Better subject"}, reviewer="bob")
    await queue.reject(waiting["d"]["id"], reason="wrong customer", reviewer="carol")
    with pytest.raises(ReviewError, match="already approved"):
        await queue.reject(waiting["b"]["id"], reason="too late", reviewer="x")
    assert await store.state_counts("drafts") == {"done": 1, "pending": 3}

    await runner.run(flow, read_source=False)
    out = {r["id"]: r for r in read_jsonl(flow.base_dir / "out.jsonl")}
    assert out == {
        "a": {"id": "a", "final": "Hello A / auto_approved", "draft": {"subject": "Hello A"}},
        "b": {"id": "b", "final": "Hello B / approved", "draft": {"subject": "Hello B"}},
        "c": {
            "id": "c",
            "final": "Better subject / edited",
            "draft": {"subject": "Better subject"},
        },
        "d": {"id": "d", "final": "Hello D / rejected", "draft": {"subject": "Hello D"}},
    }
    assert read_jsonl(flow.base_dir / "rejected.jsonl") == [{"id": "d"}]

    async with store.db.session() as s:
        trail = (await s.scalars(select(AuditLog).order_by(AuditLog.id))).all()
    actions = [(r.actor, r.action) for r in trail]
    assert ("system", "flow.review.auto_approved") in actions
    assert ("alice", "flow.review.approved") in actions
    assert ("bob", "flow.review.edited") in actions
    assert ("carol", "flow.review.rejected") in actions
    edited = next(r for r in trail if r.action == "flow.review.edited")
    assert edited.after is not None and edited.after["edits"] == {"draft.subject": "Better subject"}
    rejected = next(r for r in trail if r.action == "flow.review.rejected")
    assert rejected.after is not None and rejected.after["reason"] == "wrong customer"
    assert await audit.verify(store.db) == (True, None)

    stats = (await queue.stats("drafts"))["drafts"]
    assert stats["approved"] == 1 and stats["edited"] == 1 and stats["rejected"] == 1
    assert stats["auto_approved"] == 1 and stats["human_decisions"] == 3
    assert stats["acceptance_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["approved_as_is_rate"] == pytest.approx(1 / 3, abs=1e-4)


async def test_edits_are_limited_to_editable_fields_and_stay_schema_valid(
    store: FlowStore, runner: FlowRunner, flow_path: Path
) -> None:
    await runner.run(load_flow(flow_path))
    queue = ReviewQueue(store)
    review_id = (await pending(queue))["b"]["id"]
    with pytest.raises(ReviewError, match="'id' is not editable in this review"):
        await queue.edit(review_id, {"id": "other"}, reviewer="x")
    with pytest.raises(
        ReviewError, match="the edit makes draft invalid: subject: 5 is not of type 'string'"
    ):
        await queue.edit(review_id, {"draft.subject": 5}, reviewer="x")
    with pytest.raises(ReviewError, match="is too long"):
        await queue.edit(review_id, {"draft.subject": "x" * 41}, reviewer="x")
    with pytest.raises(ReviewError, match="give a reason"):
        await queue.reject(review_id, reason="  ", reviewer="x")
    assert (await queue.get(review_id))["status"] == "pending"  # nothing was saved


async def test_rejection_stops_the_record_by_default(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "b"}\n')
    flow = load_flow(write_flow(tmp_path, FLOW % ""))
    runner = FlowRunner(store, scripted_router(model_for_drafts()), sleep=_no_sleep)
    await runner.run(flow)
    queue = ReviewQueue(store, {"drafts": flow})
    await queue.reject((await pending(queue))["b"]["id"], reason="no", reviewer="r")
    await runner.run(flow, read_source=False)
    await runner.aclose()
    assert not (tmp_path / "out.jsonl").exists()
    assert await store.state_counts("drafts") == {"rejected": 1}


@pytest.mark.parametrize(
    ("on_timeout", "state", "written"),
    [("approve", "done", True), ("reject", "rejected", False), ("dead_letter", "dead", False)],
)
async def test_review_timeouts(
    store: FlowStore, tmp_path: Path, on_timeout: str, state: str, written: bool
) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "b"}\n')
    flow = load_flow(write_flow(tmp_path, FLOW % f"timeout: 1h\n    on_timeout: {on_timeout}"))
    runner = FlowRunner(store, scripted_router(model_for_drafts()), sleep=_no_sleep)
    await runner.run(flow)
    (review,) = (await store.reviews(flow="drafts"))[0]
    assert review.due_at is not None and review.due_at > now() + timedelta(minutes=59)
    async with store.db.session() as s:  # an hour passes
        await s.execute(update(FlowReview).values(due_at=now() - timedelta(seconds=1)))
    summary = await runner.run(flow)
    await runner.aclose()
    assert summary.counts.get("reviews_timed_out") == 1
    record = await store.record("drafts", "b")
    assert record is not None and record.state == state
    assert (tmp_path / "out.jsonl").exists() is written
    decided = await store.review(review.id)
    assert decided is not None and decided.reviewer == "system:timeout"
    if on_timeout == "dead_letter":
        (dead,) = await store.dead_letters("drafts")
        assert dead.error_class == "review_timeout"


# --- the admin API on the gateway -----------------------------------------------------------------

MASTER = "sk-aiwire-master-flows-0123456789"
HOOK = "whsec-gateway-test"
WEBHOOK_FLOW = """\
name: tickets
source: {kind: webhook, secret: env:FLOW_HOOK_SECRET}
key: ticket
steps:
  - {kind: prompt, template: "Reply to: {{ text }}"}
  - kind: model
    id: reply
    model: sim-gpt
    schema: {type: object, required: [reply], properties: {reply: {type: string}}}
  - {kind: review, queue: support, show: [text, reply], editable: [reply.reply]}
sinks: [{kind: jsonl, path: sent.jsonl, fields: [ticket, reply.reply, _review.decision]}]
"""


@pytest.fixture
async def gateway(
    simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    monkeypatch.setenv("FLOW_HOOK_SECRET", HOOK)
    flows_dir = tmp_path / "flows"
    write_flow(flows_dir, WEBHOOK_FLOW, "tickets.yaml")
    monkeypatch.setenv("AIWIRE_FLOWS", str(flows_dir))
    parts = build_gateway(
        simulator_config(simulator.url, retries=0),
        store_url=f"sqlite:///{tmp_path}/gw.db",
        master_key=Secret(MASTER),
        auth_ttl=0.1,
    )
    await parts.gateway.startup()
    transport = httpx.ASGITransport(app=parts.gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client, parts
    await parts.gateway.shutdown()


def master() -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER}"}


async def test_review_api_on_the_gateway(
    gateway: tuple[httpx.AsyncClient, Any], tmp_path: Path
) -> None:
    client, parts = gateway
    for n in (1, 2):
        body = orjson.dumps({"ticket": f"T-{n}", "text": f"Question {n} about Oslo"})
        ts = int(time.time())
        resp = await client.post(
            "/flows/tickets/events",
            content=body,
            headers={"x-timestamp": str(ts), "x-signature": sign(HOOK, body, ts)},
        )
        assert resp.status_code == 202

    async def two_waiting() -> Any:
        r = await client.get("/admin/review?flow=tickets", headers=master())
        return r.json()["total"] == 2 and r.json()

    listed = await eventually(two_waiting)
    assert {r["record"] for r in listed["data"]} == {"T-1", "T-2"}

    # the master key or an admin-scoped key only
    assert (await client.get("/admin/review")).status_code == 401
    assert (
        await client.get("/admin/review", headers={"authorization": "Bearer wrong"})
    ).status_code == 401
    _, secret = await parts.keys.create("app", actor="test")
    virtual = await client.get(
        "/admin/review", headers={"authorization": f"Bearer {secret.reveal()}"}
    )
    assert virtual.status_code == 403 and "admin scope" in virtual.json()["error"]["message"]
    _, admin = await parts.keys.create("ops", actor="test", options={"scopes": ["admin"]})
    by_admin = await client.get(
        "/admin/review", headers={"authorization": f"Bearer {admin.reveal()}"}
    )
    assert by_admin.status_code == 200 and by_admin.json()["total"] == 2

    # filters
    assert (
        await client.get("/admin/review?queue=support&status=pending", headers=master())
    ).json()["total"] == 2
    assert (await client.get("/admin/review?queue=other", headers=master())).json()["total"] == 0
    assert (await client.get("/admin/review?status=bogus", headers=master())).status_code == 400

    by_record = {r["record"]: r["id"] for r in listed["data"]}
    one = (await client.get(f"/admin/review/{by_record['T-1']}", headers=master())).json()
    assert one["source"] == {"ticket": "T-1", "text": "Question 1 about Oslo"}
    assert set(one["draft"]) == {"text", "reply", "reply.reply"} and one["editable"] == [
        "reply.reply"
    ]
    assert (await client.get("/admin/review/rev_nope", headers=master())).status_code == 404

    bad = await client.post(
        f"/admin/review/{by_record['T-1']}/edit", json={"edits": {"text": "x"}}, headers=master()
    )
    assert bad.status_code == 400 and "not editable" in bad.json()["error"]["message"]
    edited = await client.post(
        f"/admin/review/{by_record['T-1']}/edit",
        json={"edits": {"reply.reply": "Your order ships Monday."}, "reviewer": "dana"},
        headers=master(),
    )
    assert edited.status_code == 200 and edited.json()["status"] == "edited"
    rejected = await client.post(
        f"/admin/review/{by_record['T-2']}/reject", json={"reviewer": "dana"}, headers=master()
    )
    assert rejected.status_code == 400 and "give a reason" in rejected.json()["error"]["message"]
    rejected = await client.post(
        f"/admin/review/{by_record['T-2']}/reject",
        json={"reason": "spam", "reviewer": "dana"},
        headers=master(),
    )
    assert rejected.status_code == 200
    twice = await client.post(
        f"/admin/review/{by_record['T-2']}/approve", json={}, headers=master()
    )
    assert twice.status_code == 409

    sent = tmp_path / "flows" / "sent.jsonl"
    await eventually(lambda: read_jsonl(sent))  # the decision continued the record at once
    assert read_jsonl(sent) == [
        {
            "ticket": "T-1",
            "reply": {"reply": "Your order ships Monday."},
            "_review": {"decision": "edited"},
        }
    ]
    stats = (await client.get("/admin/review/stats?flow=tickets", headers=master())).json()["data"]
    assert stats["tickets"]["acceptance_rate"] == 0.5 and stats["tickets"]["edited"] == 1
    decided = (await client.get("/admin/review?status=all", headers=master())).json()
    assert {r["status"] for r in decided["data"]} == {"edited", "rejected"}


async def test_a_timed_out_review_is_asked_again_on_replay(
    store: FlowStore, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "b"}\n')
    flow = load_flow(write_flow(tmp_path, FLOW % "timeout: 1h\n    on_timeout: dead_letter"))
    runner = FlowRunner(store, scripted_router(model_for_drafts()), sleep=_no_sleep)
    await runner.run(flow)
    async with store.db.session() as s:
        await s.execute(update(FlowReview).values(due_at=now() - timedelta(seconds=1)))
    await runner.run(flow)
    assert (await store.record("drafts", "b")).state == "dead"  # type: ignore[union-attr]
    replayed = await runner.replay(flow)
    assert replayed.counts == {"waiting_review": 1}
    queue = ReviewQueue(store, {"drafts": flow})
    (again,) = (await queue.list(flow="drafts"))[0]
    assert again["status"] == "pending" and again["due_at"] is not None
    await queue.approve(again["id"], reviewer="late")
    await runner.run(flow, read_source=False)
    await runner.aclose()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["b"]
