"""The official openai SDK's Files + Batch flow against the gateway, for a Claude-protocol
model: upload, create, poll to completed, read the output - unchanged client code."""

from __future__ import annotations

import time

import openai
import orjson
from tests.batch.conftest import MASTER, Running, chat_lines, jsonl


def test_openai_sdk_batch_flow_against_a_claude_model(gw: Running) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER, max_retries=0)
    requests = chat_lines(25, "sim-claude")
    uploaded = client.files.create(file=("tickets.jsonl", jsonl(requests)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(requests))
    assert client.files.retrieve(uploaded.id).filename == "tickets.jsonl"

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "tickets"},
    )
    assert batch.status in ("validating", "in_progress")
    assert batch.metadata == {"job": "tickets"}
    deadline = time.monotonic() + 30
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)

    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (25, 25)
    assert batch.request_counts.failed == 0
    for stamp in ("created_at", "in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) is not None, stamp
    assert batch.created_at <= batch.in_progress_at <= batch.completed_at  # type: ignore[operator]
    assert batch.error_file_id is None and batch.output_file_id is not None
    assert batch.usage is not None and batch.usage.output_tokens > 0

    text = client.files.content(batch.output_file_id).text
    out = [orjson.loads(line) for line in text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(r["custom_id"] for r in requests)
    for line in out:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"]
        body = response["body"]
        assert body["object"] == "chat.completion"
        i = line["custom_id"].split("-")[1]
        assert body["choices"][0]["message"]["content"].startswith(
            f"Simulated reply to: Summarise ticket {i}"
        )
        assert body["usage"]["completion_tokens"] > 0

    assert batch.id in [b.id for b in client.batches.list(limit=100)]
    # One request-log row per upstream call, attributed to the batch API, with its cost.
    rows = gw.sql(
        "SELECT count(*), sum(cost_usd), min(provider) FROM request_log "
        f"WHERE endpoint = '/v1/batches' AND request_id LIKE '{batch.id}:%'"
    )
    count, cost, provider = rows[0]
    assert count == 25 and cost > 0 and provider == "sim-anthropic"
    assert abs(batch.model_extra["cost_usd"] - cost) < 1e-9  # type: ignore[index]
