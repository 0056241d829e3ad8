"""The batch API's lifecycle on the gateway: validation with per-line errors, per-line failures
and retries, cancellation, expiry, ownership and budgets."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from tests.batch.conftest import Running, chat_lines, jsonl, start_gateway

from aiwire.simulator import SimulatorServer
from aiwire.types import Usage

# -- validation --------------------------------------------------------------------------------


def test_a_file_with_bad_lines_fails_validation_listing_every_error(gw: Running) -> None:
    good = chat_lines(3)
    bad_lines = [
        orjson.dumps(good[0]),
        b'{"custom_id": "broken", "method": "POST", ',  # not JSON
        orjson.dumps(good[1]),
        orjson.dumps({**good[2], "custom_id": "req-0"}),  # duplicate custom_id
        orjson.dumps(
            {**good[2], "custom_id": "x1", "body": {**good[2]["body"], "model": "no-such"}}
        ),
        orjson.dumps({**good[2], "custom_id": "x2", "url": "/v1/embeddings"}),
        orjson.dumps({**good[2], "custom_id": "x3", "body": {"messages": []}}),
        orjson.dumps({**good[2], "custom_id": "x4", "body": {**good[2]["body"], "stream": True}}),
        orjson.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
    ]
    file_id = gw.upload(b"\n".join(bad_lines) + b"\n")
    r = gw.create(file_id)
    assert r.status_code == 200, r.text
    batch = r.json()
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["in_progress_at"] is None and batch["output_file_id"] is None
    found = {(e["line"], e["code"]) for e in batch["errors"]["data"]}
    assert found == {
        (2, "invalid_json_line"),
        (4, "duplicate_custom_id"),
        (5, "model_not_found"),
        (6, "mismatched_endpoint"),
        (7, "missing_required_parameter"),
        (8, "invalid_value"),
        (9, "missing_custom_id"),
    }
    by_line = {e["line"]: e for e in batch["errors"]["data"]}
    assert "'no-such' is not served" in by_line[5]["message"]
    assert by_line[8]["param"] == "body.stream"
    # nothing was queued, so nothing ran
    assert gw.sql(f"SELECT count(*) FROM batch_lines WHERE batch_id = '{batch['id']}'") == [(0,)]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"endpoint": "/v1/completions"}, "endpoint"),
        ({"completion_window": "forever"}, "completion_window"),
        ({"metadata": {"n": 1}}, "metadata.n"),
        ({"mode": "turbo"}, "mode"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_batch_parameters_are_refused_naming_the_parameter(
    gw: Running, extra: dict[str, object], param: str
) -> None:
    file_id = gw.upload(jsonl(chat_lines(1)))
    r = gw.create(file_id, **extra)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_unknown_files_and_batches_are_404_and_a_file_must_be_multipart(gw: Running) -> None:
    assert gw.http.get("/v1/batches/batch_nope").status_code == 404
    assert gw.http.get("/v1/files/file-nope/content").status_code == 404
    r = gw.create("file-nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
    r = gw.http.post("/v1/files", json={"purpose": "batch"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    r = gw.http.post("/v1/files", files={"file": ("x.jsonl", b"{}")}, data={"purpose": "fine-tune"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    assert gw.http.get("/v1/batches", headers={"authorization": "Bearer nope"}).status_code == 401


def test_a_key_sees_only_its_own_files_and_batches_and_its_model_scope_holds(
    gw: Running,
) -> None:
    _, alice = gw.key(models=["sim-claude"])
    _, bob = gw.key()
    file_id = gw.upload(jsonl(chat_lines(2)), key=alice)
    created = gw.create(file_id, key=alice)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    as_bob = {"authorization": f"Bearer {bob}"}
    assert gw.http.get(f"/v1/batches/{batch_id}", headers=as_bob).status_code == 404
    assert gw.http.get(f"/v1/files/{file_id}", headers=as_bob).status_code == 404
    assert gw.create(file_id, key=bob).status_code == 404
    listed = gw.http.get("/v1/batches", headers=as_bob).json()["data"]
    assert batch_id not in [b["id"] for b in listed]
    # the master key sees everything
    assert gw.http.get(f"/v1/batches/{batch_id}").status_code == 200
    # alice may not batch a model outside her key's scope
    other = gw.upload(jsonl(chat_lines(1, "sim-gpt")), key=alice)
    r = gw.create(other, key=alice)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    gw.wait(batch_id, ("completed",))
    # an admin-scoped key sees everyone's batches too
    _, ops = gw.key(scopes=["admin"])
    as_ops = {"authorization": f"Bearer {ops}"}
    assert gw.http.get(f"/v1/batches/{batch_id}", headers=as_ops).status_code == 200


def test_a_key_scoped_to_other_endpoints_may_not_batch(gw: Running) -> None:
    _, chat_only = gw.key(endpoints=["/v1/chat/completions"])
    refused = gw.http.get("/v1/batches", headers={"authorization": f"Bearer {chat_only}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "endpoint_not_allowed"
    assert "/v1/batches" in refused.json()["error"]["message"]
    _, batcher = gw.key(endpoints=["/v1/chat/completions", "/v1/batches"])
    file_id = gw.upload(jsonl(chat_lines(1)), key=batcher)
    assert gw.create(file_id, key=batcher).status_code == 200


def test_list_pages_newest_first(gw: Running) -> None:
    ids = []
    for _ in range(3):
        ids.append(gw.create(gw.upload(jsonl(chat_lines(1)))).json()["id"])
    first = gw.http.get("/v1/batches", params={"limit": 2}).json()
    assert [b["id"] for b in first["data"]] == ids[::-1][:2] and first["has_more"]
    after = gw.http.get("/v1/batches", params={"limit": 2, "after": first["last_id"]}).json()
    assert after["data"][0]["id"] == ids[0]
    for batch_id in ids:
        gw.wait(batch_id, ("completed",))


# -- failures, retries, cancel, expiry ---------------------------------------------------------


def test_a_failed_call_is_retried_as_a_later_dispatch_and_every_call_is_logged(
    slow: tuple[Running, SimulatorServer],
) -> None:
    gw, sim = slow
    batch = gw.create(gw.upload(jsonl(chat_lines(4, "sim-claude")))).json()
    done = gw.wait(batch["id"], ("completed",), timeout=30)
    assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    out = gw.content(done["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == [f"req-{i}" for i in range(4)]
    attempts = gw.sql(
        f"SELECT custom_id, attempts FROM batch_lines WHERE batch_id = '{batch['id']}'"
    )
    assert sum(a for _, a in attempts) == 4 + 3  # three lines took a second dispatch
    logged = gw.sql(
        "SELECT status, count(*) FROM request_log "
        f"WHERE request_id LIKE '{batch['id']}:%' GROUP BY status ORDER BY status"
    )
    assert logged == [(200, 4), (503, 3)]
    assert sim.app.sim.limiter.counts[("claude-sonnet-4-5", "admitted")] >= 4


def test_a_line_the_provider_refuses_ends_in_the_error_file_with_its_status(
    slow: tuple[Running, SimulatorServer],
) -> None:
    gw, _ = slow
    lines = chat_lines(2, "sim-gpt")
    lines[1]["body"]["temperature"] = 2.5  # the gateway passes it on; OpenAI refuses it: 400
    batch = gw.create(gw.upload(jsonl(lines))).json()
    done = gw.wait(batch["id"], ("completed",))
    assert done["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    (error,) = gw.content(done["error_file_id"])
    assert error["custom_id"] == "req-1" and error["error"] is None
    assert error["response"]["status_code"] == 400
    assert "temperature" in error["response"]["body"]["error"]["message"]
    (ok,) = gw.content(done["output_file_id"])
    assert ok["custom_id"] == "req-0" and ok["response"]["status_code"] == 200


def test_cancel_stops_new_lines_lets_running_ones_finish_and_keeps_partial_output(
    slow: tuple[Running, SimulatorServer],
) -> None:
    gw, _ = slow
    batch = gw.create(gw.upload(jsonl(chat_lines(30, "sim-gpt")))).json()
    deadline = time.monotonic() + 10
    while gw.http.get(f"/v1/batches/{batch['id']}").json()["request_counts"]["completed"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = gw.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
    done = gw.wait(batch["id"], ("cancelled",))
    counts = done["request_counts"]
    assert counts["total"] == 30 and counts["completed"] + counts["failed"] == 30
    assert 3 <= counts["completed"] < 30
    assert done["cancelling_at"] and done["cancelled_at"] and done["completed_at"] is None
    out, errors = gw.content(done["output_file_id"]), gw.content(done["error_file_id"])
    assert len(out) == counts["completed"] and len(errors) == counts["failed"]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(e["response"] is None for e in errors)
    ids = [o["custom_id"] for o in out + errors]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(30))
    again = gw.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    finished = gw.create(gw.upload(jsonl(chat_lines(1, "sim-gpt")))).json()
    gw.wait(finished["id"], ("completed",))
    refused = gw.http.post(f"/v1/batches/{finished['id']}/cancel")
    assert refused.status_code == 400 and "completed" in refused.json()["error"]["message"]


def test_a_batch_past_its_window_expires_with_the_remaining_lines_reported(
    slow: tuple[Running, SimulatorServer],
) -> None:
    gw, _ = slow
    batch = gw.create(gw.upload(jsonl(chat_lines(40, "sim-gpt"))), completion_window="2s")
    assert batch.status_code == 200, batch.text
    data = batch.json()
    assert data["expires_at"] - data["created_at"] == 2
    done = gw.wait(data["id"], ("expired",), timeout=15)
    counts = done["request_counts"]
    assert counts["total"] == 40 and 0 < counts["completed"] < 40
    assert counts["completed"] + counts["failed"] == 40
    assert done["expired_at"] >= data["expires_at"]
    errors = gw.content(done["error_file_id"])
    assert len(errors) == counts["failed"]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert len(gw.content(done["output_file_id"])) == counts["completed"]


# -- budgets -----------------------------------------------------------------------------------


class FlatPricing:
    """1 µ$ per input token, 2 µ$ per output token: visible arithmetic."""

    def cost(self, model: str, usage: Usage) -> float | None:
        return usage.prompt_tokens * 1e-6 + usage.completion_tokens * 2e-6

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        return input_tokens * 1e-6 + max_output * 2e-6

    def max_output(self, model: str) -> int | None:
        return 1000


def test_a_batch_over_the_keys_remaining_budget_is_refused_naming_both_amounts(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    server, gw = start_gateway(simulator.url, tmp_path / "gw.db", pricing=FlatPricing())
    try:
        key_id, key = gw.key()
        r = gw.http.post(
            "/admin/budgets",
            json={"scope": "key", "scope_id": key_id, "period": "month", "limit_usd": 0.001},
        )
        assert r.status_code == 200, r.text
        # 10 lines x (input + 20 output tokens x 2 µ$) is more than $0.0004: too much
        big = gw.create(gw.upload(jsonl(chat_lines(25)), key=key), key=key)
        assert big.status_code == 429, big.text
        error = big.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert "could cost up to $0.001" in error["message"]
        assert "has $0.0010 left" in error["message"]
        assert big.headers["x-should-retry"] == "false"
        small = gw.create(gw.upload(jsonl(chat_lines(2)), key=key), key=key)
        assert small.status_code == 200, small.text
        done = gw.wait(small.json()["id"], ("completed",))
        assert 0 < done["cost_usd"] <= done["estimate_usd"] <= 0.001
    finally:
        server.stop()
