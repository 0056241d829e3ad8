"""Invalid model output is repaired or sent to the dead-letter queue with the validation error —
never written to a sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.flows.flow_support import ScriptedModel, read_jsonl, scripted_router, write_flow

from aiwire import errors
from aiwire.flows.loader import Flow, load_flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.store import FlowStore

FLOW = """\
name: triage
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: prompt, template: "Triage: {{ text }}"}
  - kind: model
    id: triage
    model: m
    reasks: 2
    schema:
      type: object
      additionalProperties: false
      required: [category, urgency]
      properties:
        category: {enum: [billing, shipping, other]}
        urgency: {type: integer, minimum: 1, maximum: 5}
sinks:
  - {kind: jsonl, path: out.jsonl, fields: [id, triage]}
"""
GOOD = '{"category": "billing", "urgency": 2}'


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    (tmp_path / "in.jsonl").write_text('{"id": "m1", "text": "I was charged twice"}\n')
    return load_flow(write_flow(tmp_path, FLOW))


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    yield ScriptedModel()


async def run(store: FlowStore, model: ScriptedModel, flow: Flow) -> FlowRunner:
    router = scripted_router(model)
    runner = FlowRunner(store, router, sleep=_no_sleep)
    try:
        await runner.run(flow)
    finally:
        await runner.aclose()
    return runner


async def test_wrapped_json_is_repaired_locally_without_a_reask(
    store: FlowStore, flow: Flow
) -> None:
    model = ScriptedModel(['Here you go:\n```json\n{"category": "billing", "urgency": 2,}\n```'])
    await run(store, model, flow)
    assert len(model.requests) == 1  # no re-ask was needed
    assert read_jsonl(flow.base_dir / "out.jsonl") == [
        {"id": "m1", "triage": {"category": "billing", "urgency": 2}}
    ]
    (step,) = [s for s in await store.steps_of("triage", "m1") if s.step == "triage"]
    assert step.output is not None and step.output["repaired"] == 1 and step.output["reasks"] == 0


async def test_invalid_answer_is_reasked_with_the_validation_error(
    store: FlowStore, flow: Flow
) -> None:
    model = ScriptedModel(['{"category": "refund", "urgency": 9}', GOOD])
    await run(store, model, flow)
    assert len(model.requests) == 2
    reask = model.requests[1].messages[-1].text
    assert "not valid" in reask and "'refund' is not one of" in reask and "urgency" in reask
    assert read_jsonl(flow.base_dir / "out.jsonl") == [
        {"id": "m1", "triage": {"category": "billing", "urgency": 2}}
    ]
    (step,) = [s for s in await store.steps_of("triage", "m1") if s.step == "triage"]
    assert step.calls == 2 and step.input_tokens == 200 and step.cost_usd > 0


async def test_output_still_invalid_goes_to_the_dlq_never_to_the_sink(
    store: FlowStore, flow: Flow
) -> None:
    model = ScriptedModel(default='{"category": "refund"}')
    await run(store, model, flow)
    assert len(model.requests) == 3  # first answer + 2 re-asks
    assert not (flow.base_dir / "out.jsonl").exists()
    assert await store.deliveries("triage") == []
    (dead,) = await store.dead_letters("triage")
    assert dead.key == "m1" and dead.stage == "triage" and dead.error_class == "invalid_output"
    assert "stayed invalid after 2 re-ask(s)" in dead.error
    assert dead.details is not None
    assert any("'refund' is not one of" in e for e in dead.details["validation_errors"])
    assert any("'urgency' is a required property" in e for e in dead.details["validation_errors"])
    assert dead.details["last_output"] == '{"category": "refund"}'
    assert dead.record["source"] == {"id": "m1", "text": "I was charged twice"}
    record = await store.record("triage", "m1")
    assert record is not None and record.state == "dead"
    # invalid output is not retried as if it were a transport error
    assert dead.attempts == 1


async def test_a_replayed_record_goes_through_once_the_model_answers_well(
    store: FlowStore, flow: Flow
) -> None:
    await run(store, ScriptedModel(default="not json at all"), flow)
    assert len(await store.dead_letters("triage")) == 1
    runner = FlowRunner(store, scripted_router(ScriptedModel([GOOD])), sleep=_no_sleep)
    summary = await runner.replay(flow)
    await runner.aclose()
    assert summary.counts.get("done") == 1
    assert await store.dead_letters("triage") == []
    assert [d.status for d in await store.dead_letters("triage", None)] == ["replayed"]
    assert read_jsonl(flow.base_dir / "out.jsonl") == [
        {"id": "m1", "triage": {"category": "billing", "urgency": 2}}
    ]


async def test_transient_model_errors_are_retried_then_dead_lettered(
    store: FlowStore, flow: Flow
) -> None:
    overloaded = errors.OverloadedError("busy", provider="scripted")
    await run(store, ScriptedModel([overloaded, overloaded, GOOD]), flow)  # on_error.retries = 2
    assert len(read_jsonl(flow.base_dir / "out.jsonl")) == 1

    (flow.base_dir / "in.jsonl").write_text('{"id": "m2", "text": "where is my parcel"}\n')
    await run(store, ScriptedModel(default=overloaded), flow)
    (dead,) = await store.dead_letters("triage")
    assert dead.key == "m2" and dead.error_class == "transient" and dead.attempts == 3


async def test_pydantic_answer_schema(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "l1", "name": "Anna"}\n')
    flow = load_flow(
        write_flow(
            tmp_path,
            """\
name: leads
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: prompt, template: "Write to {{ name }}"}
  - {kind: model, id: email, model: m, schema: "tests.flows.flow_support:Lead"}
sinks: [{kind: jsonl, path: out.jsonl, fields: [email]}]
""",
        )
    )
    model = ScriptedModel(['{"subject": 3}', '{"subject": "Hi Anna", "body": "Thanks"}'])
    await run(store, model, flow)
    assert "subject" in model.requests[1].messages[-1].text  # the pydantic error went back
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"email": {"subject": "Hi Anna", "body": "Thanks"}}
    ]


async def test_confidence_is_requested_and_recorded(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "x"}\n')
    flow = load_flow(
        write_flow(
            tmp_path,
            """\
name: conf
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: prompt, template: "go"}
  - kind: model
    id: answer
    model: m
    confidence: true
    schema: {type: object, required: [label], properties: {label: {type: string}}}
sinks: [{kind: jsonl, path: out.jsonl, fields: [answer]}]
""",
        )
    )
    model = ScriptedModel(
        ['{"label": "a", "confidence": 1.7}', '{"label": "a", "confidence": 0.73}']
    )
    await run(store, model, flow)
    schema = model.requests[0].response_format.json_schema.schema_  # type: ignore[union-attr]
    assert "confidence" in schema["required"] and schema["properties"]["confidence"]["maximum"] == 1
    (step,) = [s for s in await store.steps_of("conf", "x") if s.step == "answer"]
    assert step.confidence == 0.73
    assert read_jsonl(tmp_path / "out.jsonl") == [{"answer": {"label": "a", "confidence": 0.73}}]


async def test_pii_is_masked_before_the_model_and_restored_after(
    store: FlowStore, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "p", "text": "Mail me at anna.berg@acme.test"}\n')
    flow = load_flow(
        write_flow(
            tmp_path,
            """\
name: pii
source: {kind: jsonl, path: in.jsonl}
key: id
steps:
  - {kind: prompt, template: "{{ text }}"}
  - {kind: model, id: reply, model: m, pii: {action: mask, kinds: [email]}}
sinks: [{kind: jsonl, path: out.jsonl, fields: [reply]}]
""",
        )
    )

    def echo(request: object) -> str:
        text = request.messages[-1].text  # type: ignore[attr-defined]
        return f"Will do: {text.split()[-1]}"

    model = ScriptedModel(default=echo)
    await run(store, model, flow)
    sent = model.requests[0].messages[-1].text
    assert "anna.berg@acme.test" not in sent
    assert read_jsonl(tmp_path / "out.jsonl") == [{"reply": "Will do: anna.berg@acme.test"}]


async def test_many_records_in_parallel_each_validated(store: FlowStore, tmp_path: Path) -> None:
    lines = [orjson.dumps({"id": f"r{i}", "text": f"message {i}"}).decode() for i in range(20)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    flow = load_flow(write_flow(tmp_path, FLOW))
    answers = iter([GOOD if i % 4 else '{"category": 1}' for i in range(200)])

    def next_answer(request: object) -> str:
        return next(answers)

    model = ScriptedModel(default=next_answer)
    await run(store, model, flow)
    written = read_jsonl(tmp_path / "out.jsonl")
    assert len({w["id"] for w in written}) == len(written) == 20
    assert all(w["triage"] == {"category": "billing", "urgency": 2} for w in written)
    await asyncio.sleep(0)
