"""The runner: durable per-record state, no duplicate sink writes, checkpoints, DLQ and replay,
branch/filter/when, error policies, run history, alerts, chunk and classify steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.flows.flow_support import (
    Destination,
    ScriptedModel,
    eventually,
    read_jsonl,
    scripted_router,
    write_flow,
)

from aiwire import errors
from aiwire.flows.loader import load_flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.sinks import idempotency_key
from aiwire.flows.store import FlowStore
from aiwire.serving import BackgroundServer
from aiwire.store.models import FlowStep

GOOD = '{"subject": "Hello", "body": "Thanks for your interest"}'


async def _no_sleep(seconds: float) -> None:
    return None


def leads(tmp_path: Path, n: int = 3) -> None:
    rows = ["lead_id,name,email"] + [f"L{i},Name {i},n{i}@acme.test" for i in range(1, n + 1)]
    (tmp_path / "leads.csv").write_text("\n".join(rows) + "\n")


def flow_text(dest: str, extra_steps: str = "", on_error: str = "") -> str:
    return f"""\
name: leads
source: {{kind: csv, path: leads.csv}}
key: lead_id
allow_hosts: [127.0.0.1]
{on_error}
steps:
  - {{kind: prompt, template: "Write to {{{{ name }}}}"}}
  - {{kind: model, id: draft, model: m, schema: {{type: object, required: [subject, body]}}}}
{extra_steps}
sinks:
  - kind: http
    url: "{dest}/crm/leads/{{{{ lead_id }}}}/activities"
    json:
      lead: "{{{{ lead_id }}}}"
      subject: "{{{{ draft.subject }}}}"
      body: "{{{{ draft.body }}}}"
    retries: 3
    backoff: 0.01
  - {{kind: jsonl, path: out/log.jsonl, fields: [lead_id, draft.subject]}}
"""


async def run_once(store: FlowStore, model: ScriptedModel, path: Path, **kw: Any) -> Any:
    runner = FlowRunner(store, scripted_router(model), sleep=_no_sleep)
    try:
        return await runner.run(load_flow(path), **kw)
    finally:
        await runner.aclose()


async def test_rerun_writes_nothing_twice(
    store: FlowStore, tmp_path: Path, destination: Destination
) -> None:
    leads(tmp_path)
    path = write_flow(tmp_path, flow_text(destination.url))
    model = ScriptedModel(default=GOOD)
    first = await run_once(store, model, path)
    assert first.status == "succeeded" and first.counts["done"] == 3
    second = await run_once(store, model, path)
    assert second.counts == {"read": 3, "new": 0, "already_known": 3}
    assert len(model.requests) == 3  # no model call repeated
    assert len(destination.received) == 3
    assert len(read_jsonl(tmp_path / "out/log.jsonl")) == 3
    # each record carried its own stable Idempotency-Key
    keys = sorted(r["headers"]["idempotency-key"] for r in destination.received)
    assert keys == sorted(idempotency_key("leads", f"L{i}", "http") for i in (1, 2, 3))
    assert destination.bodies("/crm/leads/L2/activities") == [
        {"lead": "L2", "subject": "Hello", "body": "Thanks for your interest"}
    ]
    # a new row in the source is the only thing the next run works on
    leads(tmp_path, 4)
    third = await run_once(store, model, path)
    assert third.counts["new"] == 1 and third.counts["done"] == 1
    assert len(destination.received) == 4


async def test_sink_failure_keeps_the_model_answer_and_replay_resumes(
    store: FlowStore, tmp_path: Path, destination: Destination
) -> None:
    leads(tmp_path, 1)
    path = write_flow(tmp_path, flow_text(destination.url))
    destination.fail = 100
    model = ScriptedModel(default=GOOD)
    summary = await run_once(store, model, path)
    assert summary.status == "partial" and summary.counts["dead"] == 1
    (dead,) = await store.dead_letters("leads")
    assert dead.stage == "sink:http" and dead.error_class == "transient" and dead.attempts == 4
    assert "answered HTTP 503" in dead.error and "/crm/" not in dead.error  # no path in errors
    assert dead.record["data"]["draft"] == orjson.loads(GOOD)
    destination.fail = 0
    runner = FlowRunner(store, scripted_router(model), sleep=_no_sleep)
    replayed = await runner.replay(load_flow(path))
    await runner.aclose()
    assert replayed.counts["done"] == 1
    assert len(model.requests) == 1  # the model step was checkpointed, not repeated
    assert len(destination.bodies()) == 1
    assert len(read_jsonl(tmp_path / "out/log.jsonl")) == 1
    # the replay's retries and the first run's attempts carried the same Idempotency-Key
    assert {r["headers"]["idempotency-key"] for r in destination.received} == {
        idempotency_key("leads", "L1", "http")
    }


async def test_a_crash_between_write_and_record_does_not_duplicate_a_file_line(
    store: FlowStore, tmp_path: Path, destination: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads(tmp_path, 2)
    path = write_flow(tmp_path, flow_text(destination.url))
    real = FlowStore.delivered
    calls = {"n": 0}

    class PowerCut(BaseException):
        """Nothing in the runner handles it: like the process dying at that instant."""

    async def crash_after_the_jsonl_write(
        self: FlowStore, flow: str, key: str, sink: str, status: int | None
    ) -> None:
        if sink == "jsonl" and key == "L2" and calls["n"] == 0:
            calls["n"] += 1
            raise PowerCut  # the line is written, its delivery still pending
        await real(self, flow, key, sink, status)

    monkeypatch.setattr(FlowStore, "delivered", crash_after_the_jsonl_write)
    with pytest.raises(PowerCut):
        await run_once(store, ScriptedModel(default=GOOD), path)
    monkeypatch.setattr(FlowStore, "delivered", real)
    # the record was released (pending), its delivery is pending with the line already written
    assert (await store.delivery("leads", "L2", "jsonl")).status == "pending"  # type: ignore[union-attr]
    assert len(read_jsonl(tmp_path / "out/log.jsonl")) == 2
    await run_once(store, ScriptedModel(default=GOOD), path)
    lines = read_jsonl(tmp_path / "out/log.jsonl")
    assert sorted(line["lead_id"] for line in lines) == ["L1", "L2"]
    assert (await store.delivery("leads", "L2", "jsonl")).status == "delivered"  # type: ignore[union-attr]


async def test_partial_last_line_is_cut_before_appending(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "out.jsonl").write_bytes(b'{"id":"old"}\n{"id":"tor')
    path = write_flow(
        tmp_path,
        "name: cut\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
        "sinks: [{kind: jsonl, path: out.jsonl, fields: [id]}]\n",
    )
    await run_once(store, ScriptedModel(), path)
    assert read_jsonl(tmp_path / "out.jsonl") == [{"id": "old"}, {"id": "a"}]


async def test_branch_filter_and_when(store: FlowStore, tmp_path: Path) -> None:
    rows = [
        {"id": "a", "score": 0.95, "category": "how_to", "spam": False},
        {"id": "b", "score": 0.4, "category": "how_to", "spam": False},
        {"id": "c", "score": 0.99, "category": "refund", "spam": False},
        {"id": "d", "score": 0.9, "category": "how_to", "spam": True},
        {"id": "e", "score": 0.9, "category": "junk", "spam": False},
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(orjson.dumps(r).decode() for r in rows) + "\n")
    path = write_flow(
        tmp_path,
        """\
name: route
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: filter, keep: "not spam", reason: spam}
  - kind: branch
    cases:
      - {when: "category == 'junk'", goto: drop}
      - {when: "score < 0.8 or category == 'refund'", goto: careful}
    default: end
  - {kind: transform, id: careful, fields: {route: {expr: "'careful'"}}}
  - {kind: transform, id: refunds, when: "category == 'refund'", fields: {refund: {expr: "true"}}}
sinks:
  - {kind: jsonl, path: out.jsonl, fields: [id, route, refund]}
  - {kind: jsonl, id: refunds_log, when: "refund", path: refunds.jsonl, fields: [id]}
""",
    )
    summary = await run_once(store, ScriptedModel(), path)
    assert summary.counts == {"read": 5, "new": 5, "already_known": 0, "done": 3, "filtered": 2}
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    assert out == {
        "a": {"id": "a", "route": None, "refund": None},
        "b": {"id": "b", "route": "careful", "refund": None},
        "c": {"id": "c", "route": "careful", "refund": True},
    }
    assert read_jsonl(tmp_path / "refunds.jsonl") == [{"id": "c"}]
    d = await store.record("route", "d")
    e = await store.record("route", "e")
    assert d is not None and d.state == "filtered" and d.error == "spam"
    assert e is not None and e.state == "filtered"
    assert summary.steps["refunds"]["skipped"] == 1 and summary.steps["refunds"]["done"] == 1


async def test_on_error_skip_and_stop(store: FlowStore, tmp_path: Path) -> None:
    rows = ["id,when"] + [f"r{i},{'bad' if i == 2 else '01/01/2024'}" for i in range(1, 6)]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    base = """\
name: {name}
source: {{kind: csv, path: in.csv}}
key: id
concurrency: 1
on_error: {{action: {action}}}
steps:
  - {{kind: transform, fields: {{when: {{date: {{from: "%d/%m/%Y"}}}}}}}}
sinks: [{{kind: jsonl, path: {name}.jsonl, fields: [id, when]}}]
"""
    skip = await run_once(
        store,
        ScriptedModel(),
        write_flow(tmp_path, base.format(name="skip", action="skip"), "s.yaml"),
    )
    assert skip.status == "succeeded" and skip.counts["skipped"] == 1 and skip.counts["done"] == 4
    assert await store.dead_letters("skip") == []
    bad = await store.record("skip", "r2")
    assert bad is not None and bad.state == "skipped" and "does not match" in (bad.error or "")

    stop = await run_once(
        store,
        ScriptedModel(),
        write_flow(tmp_path, base.format(name="stop", action="stop"), "t.yaml"),
    )
    assert stop.status == "failed" and "on_error: stop" in (stop.error or "")
    assert [r["id"] for r in read_jsonl(tmp_path / "stop.jsonl")] == ["r1"]  # r3.. never started
    assert len(await store.dead_letters("stop")) == 1
    assert {r.key for r in await store.records("stop", "pending")} == {"r3", "r4", "r5"}


async def test_unreadable_source_lines_go_to_the_dlq(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a"}\nnot json\n{"no_id": 1}\n[1]\n')
    path = write_flow(
        tmp_path,
        "name: lines\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
        "sinks: [{kind: jsonl, path: out.jsonl}]\n",
    )
    summary = await run_once(store, ScriptedModel(), path)
    assert summary.counts["done"] == 1 and summary.counts["dead"] == 3
    errors_seen = sorted(d.error for d in await store.dead_letters("lines"))
    assert errors_seen[0] == "key: the record has no 'id'"
    assert errors_seen[1].startswith("line 2 is not JSON")
    assert errors_seen[2] == "line 4 is not a JSON object"
    again = await run_once(store, ScriptedModel(), path)
    assert again.counts.get("dead", 0) == 0  # the same bad lines are not dead-lettered twice


async def test_run_history_has_per_step_timings_tokens_and_cost(
    store: FlowStore, tmp_path: Path, destination: Destination
) -> None:
    leads(tmp_path, 2)
    path = write_flow(tmp_path, flow_text(destination.url))
    summary = await run_once(store, ScriptedModel(['{"subject": 1}', GOOD, GOOD]), path)
    (run,) = await store.runs("leads")
    assert run.id == summary.run_id and run.status == "succeeded" and run.trigger == "manual"
    draft = run.steps["draft"]
    assert draft["done"] == 2 and draft["calls"] == 3  # one re-ask
    assert draft["input_tokens"] == 300 and draft["output_tokens"] == 60
    assert draft["cost_usd"] == pytest.approx(run.cost_usd) and run.cost_usd > 0
    assert draft["ms"] > 0 and run.steps["sink:http"]["done"] == 2
    assert run.input_tokens == 300 and run.finished_at is not None
    async with store.db.session() as s:
        rows = (await s.scalars(select(FlowStep).where(FlowStep.step == "draft"))).all()
    assert sorted(r.calls for r in rows) == [1, 2]  # one record needed the re-ask


async def test_alerts_when_a_run_fails_and_when_the_dlq_grows(
    store: FlowStore, tmp_path: Path
) -> None:
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        got.append(await request.json())
        return JSONResponse({})

    with BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        (tmp_path / "in.jsonl").write_text('{"id": "a", "d": "x"}\n')
        alerts = f"alerts: {{webhooks: [{{url: '{server.url}/hook'}}], dlq_threshold: 0}}"
        path = write_flow(
            tmp_path,
            f"name: alerting\nsource: {{kind: jsonl, path: in.jsonl}}\nkey: id\n{alerts}\n"
            "allow_hosts: [127.0.0.1]\n"
            "steps: [{kind: transform, fields: {d: {date: {from: '%d/%m/%Y'}}}}]\n"
            "sinks: [{kind: jsonl, path: out.jsonl}]\n",
        )
        await run_once(store, ScriptedModel(), path)
        await eventually(lambda: any(a["kind"] == "flow_dlq_grew" for a in got))
        grew = next(a for a in got if a["kind"] == "flow_dlq_grew")
        assert grew["details"] == {
            "flow": "alerting",
            "run_id": grew["details"]["run_id"],
            "before": 0,
            "after": 1,
        }

        (tmp_path / "missing").mkdir()
        broken = write_flow(
            tmp_path,
            f"name: broken\nsource: {{kind: csv, path: nowhere.csv}}\n{alerts}\n"
            "allow_hosts: [127.0.0.1]\n"
            "sinks: [{kind: jsonl, path: out.jsonl}]\n",
            "broken.yaml",
        )
        summary = await run_once(store, ScriptedModel(), broken)
        assert summary.status == "failed" and "cannot read source file" in (summary.error or "")
        await eventually(lambda: any(a["kind"] == "flow_run_failed" for a in got))


async def test_classify_and_chunk_steps(store: FlowStore, tmp_path: Path) -> None:
    long_notes = " ".join(f"Sentence number {i} about the rollout plan." for i in range(200))
    (tmp_path / "in.jsonl").write_text(
        orjson.dumps({"id": "n1", "notes": long_notes, "text": "My invoice is wrong"}).decode()
        + "\n"
        + orjson.dumps({"id": "n2", "notes": "Short notes.", "text": "Where is it?"}).decode()
        + "\n"
        + orjson.dumps({"id": "n3", "notes": "Other.", "text": "Refund me"}).decode()
        + "\n"
    )
    path = write_flow(
        tmp_path,
        """\
name: notes
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - kind: classify
    id: topic
    model: m
    input: text
    labels: [billing, shipping]
    confidence: true
  - kind: chunk
    model: m
    field: notes
    into: summary
    chunk_tokens: 300
    overlap_tokens: 20
    map_prompt: "Part {{ index }}/{{ total }}: {{ chunk }}"
    reduce_prompt: "Combine: {{ parts | join(' | ') }}"
sinks: [{kind: jsonl, path: out.jsonl, fields: [id, topic, topic_confidence, summary]}]
""",
    )

    def answer(request: Any) -> str:
        text = request.messages[-1].text
        if text.startswith("Classify"):
            if "invoice" in text:
                return '{"label": "billing", "confidence": 0.9}'
            if "Where" in text:
                return '{"label": "shipping", "confidence": 0.6}'
            return '{"label": "refund", "confidence": 0.99}'  # not one of the labels
        if text.startswith("Part"):
            return "summary of " + text.split(":")[0].lower()
        return "combined: " + str(text.count("summary of"))

    model = ScriptedModel(default=answer)
    summary = await run_once(store, model, path)
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    parts = [r.messages[-1].text for r in model.requests if r.messages[-1].text.startswith("Part")]
    total = int(parts[0].split("/")[1].split(":")[0])
    assert total >= 5 and len(parts) == total
    assert out["n1"]["summary"] == f"combined: {total}"
    assert out["n1"]["topic"] == "billing" and out["n1"]["topic_confidence"] == 0.9
    assert out["n2"]["summary"] == "Short notes."  # fits: no model call
    assert out["n2"]["topic"] == "shipping"
    (dead,) = await store.dead_letters("notes")  # 'refund' is not a label: never guessed
    assert dead.key == "n3" and dead.stage == "topic" and dead.error_class == "invalid_output"
    assert "n3" not in out and summary.counts["dead"] == 1


async def test_unknown_model_fails_before_any_record(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a"}\n')
    path = write_flow(
        tmp_path,
        "name: nomodel\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
        "steps: [{kind: prompt, template: x}, {kind: model, model: nope}]\n"
        "sinks: [{kind: jsonl, path: out.jsonl}]\n",
    )
    with pytest.raises(errors.ConfigError, match="uses model 'nope', which is not configured"):
        await run_once(store, ScriptedModel(), path)
    assert await store.records("nomodel") == []


async def test_http_sink_retries_honour_retry_after(
    store: FlowStore, tmp_path: Path, destination: Destination
) -> None:
    leads(tmp_path, 1)
    path = write_flow(tmp_path, flow_text(destination.url, on_error="on_error: {max_backoff: 30s}"))
    destination.fail, destination.fail_status, destination.retry_after = 2, 429, "7"
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    runner = FlowRunner(store, scripted_router(ScriptedModel(default=GOOD)), sleep=record)
    summary = await runner.run(load_flow(path))
    await runner.aclose()
    assert summary.counts["done"] == 1 and len(destination.bodies()) == 1
    assert sleeps == [7.0, 7.0]  # the destination's Retry-After, not the 0.01 s backoff
