"""Native mode against the simulator's batch APIs: the batch runs as one OpenAI Batch or
Anthropic Message Batch, its results come back in OpenAI's output format, and it is recorded
(and priced) as native: half the synchronous price."""

from __future__ import annotations

import time

import openai
import pytest
from tests.batch.conftest import MASTER, Running, chat_lines, jsonl

from aiwire.config import Config
from aiwire.router import Router
from aiwire.simulator import SimulatorServer

UPSTREAM = {"sim-claude": "claude-sonnet-4-5", "sim-gpt": "gpt-4o-mini"}


def _run(gw: Running, model: str, mode: str) -> dict[str, object]:
    file_id = gw.upload(jsonl(chat_lines(12, model)))
    created = gw.create(file_id, metadata={"mode": mode})
    assert created.status_code == 200, created.text
    assert created.json()["mode"] == mode
    return gw.wait(created.json()["id"], ("completed", "failed"))


@pytest.mark.parametrize("model", ["sim-claude", "sim-gpt"])
def test_native_batch_runs_on_the_providers_batch_api_at_half_price(
    gw: Running, simulator: SimulatorServer, model: str
) -> None:
    counts = simulator.app.sim.limiter.counts
    upstream = UPSTREAM[model]
    sync_before, batch_before = counts[(upstream, "admitted")], counts[(upstream, "batch")]
    native = _run(gw, model, "native")
    assert native["status"] == "completed", native
    assert native["request_counts"] == {"total": 12, "completed": 12, "failed": 0}
    # it went to the provider's batch endpoint, not to its synchronous one
    assert counts[(upstream, "batch")] - batch_before == 12
    assert counts[(upstream, "admitted")] == sync_before
    out = gw.content(native["output_file_id"])  # type: ignore[arg-type]
    assert sorted(o["custom_id"] for o in out) == sorted(f"req-{i}" for i in range(12))
    for line in out:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        i = line["custom_id"].split("-")[1]
        assert body["choices"][0]["message"]["content"].startswith(
            f"Simulated reply to: Summarise ticket {i}"
        )
    emulated = _run(gw, model, "emulate")
    assert counts[(upstream, "admitted")] - sync_before == 12
    # the simulator answers deterministically: same tokens, half the price
    assert native["usage"] == emulated["usage"]
    assert native["cost_usd"] == pytest.approx(emulated["cost_usd"] / 2)  # type: ignore[operator]
    rows = gw.sql(
        "SELECT count(*), sum(cost_usd), min(deployment) FROM request_log "
        f"WHERE request_id LIKE '{native['id']}:%'"
    )
    assert rows[0][0] == 12 and rows[0][1] == pytest.approx(native["cost_usd"])
    assert rows[0][2].startswith(f"{model}@")


def test_the_openai_sdk_asks_for_native_mode_through_metadata(gw: Running) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER, max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", jsonl(chat_lines(3))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"mode": "native"},
    )
    deadline = time.monotonic() + 30
    while batch.status != "completed":
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    assert batch.model_extra is not None and batch.model_extra["mode"] == "native"
    assert client.files.content(batch.output_file_id).text.count("\n") == 3  # type: ignore[arg-type]


def test_native_mode_refuses_what_a_provider_batch_cannot_take(gw: Running) -> None:
    mixed = chat_lines(2, "sim-claude") + chat_lines(2, "sim-gpt", start=2)
    r = gw.create(gw.upload(jsonl(mixed)), mode="native")
    assert r.status_code == 400 and r.json()["error"]["code"] == "native_unsupported"
    r = gw.create(gw.upload(jsonl(chat_lines(2, "sim-gemini"))), mode="native")
    assert r.status_code == 400 and "openai or anthropic" in r.json()["error"]["message"]


@pytest.mark.parametrize("model", ["sim-claude", "sim-gpt"])
def test_cancelling_a_native_batch_cancels_the_providers_and_keeps_what_it_finished(
    slow: tuple[Running, SimulatorServer], model: str
) -> None:
    gw, _ = slow
    created = gw.create(gw.upload(jsonl(chat_lines(40, model))), mode="native").json()
    deadline = time.monotonic() + 10
    while not (gw.http.get(f"/v1/batches/{created['id']}").json().get("native") or {}):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the provider answers a few (150 ms each)
    assert gw.http.post(f"/v1/batches/{created['id']}/cancel").status_code == 200
    done = gw.wait(created["id"], ("cancelled",), timeout=30)
    counts = done["request_counts"]
    assert counts["total"] == 40 and 0 < counts["completed"] < 40
    assert counts["completed"] + counts["failed"] == 40
    errors = gw.content(done["error_file_id"])
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert len(gw.content(done["output_file_id"])) == counts["completed"]


def test_a_deployment_can_make_native_its_default() -> None:
    config = Config.model_validate(
        {
            "providers": {
                "claude": {
                    "type": "anthropic",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "env:HOME",
                    "options": {"batch_mode": "native"},
                },
                "gpt": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"},
            },
            "models": [
                {"name": "claude", "provider": "claude", "model": "claude-sonnet-4-5"},
                {"name": "gpt", "provider": "gpt", "model": "gpt-4o-mini"},
            ],
        }
    )
    from aiwire.batch.native import prefers_native

    router = Router.from_config(config)
    assert prefers_native(router, "claude") and not prefers_native(router, "gpt")


def test_auto_mode_goes_native_only_when_the_model_and_window_allow(gw: Running) -> None:
    def mode(model: str, window: str) -> str:
        created = gw.create(
            gw.upload(jsonl(chat_lines(1, model))), mode="auto", completion_window=window
        )
        assert created.status_code == 200, created.text
        gw.wait(created.json()["id"], ("completed",))
        return str(created.json()["mode"])

    assert mode("sim-claude", "24h") == "native"
    assert mode("sim-claude", "1h") == "emulate"  # the provider may take 24 hours
    assert mode("sim-gemini", "24h") == "emulate"  # no batch API aiwire speaks
