"""The admin routes the console is built on, on SQLite and on PostgreSQL: the request log
(filters, keyset pages, detail), overview numbers and time series, deployments (health,
pacing, prices, deprecation) and flows (runs with per-step timings, dead letters, replay).
Every route needs the master key or an admin-scoped key and is in the OpenAPI spec."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.store.conftest import pg_databases, pg_server  # noqa: F401  (fixtures)

from aiwire.config import DeploymentConfig, simulator_config
from aiwire.flows.webhook import sign
from aiwire.secrets import Secret
from aiwire.server.app import GatewaySettings
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorConfig, SimulatorServer

MASTER = "test-master-console-api-0123456789"
SECRET = "console-api-webhook-secret"
BROKEN_FLOW = """\
version: 1
name: escalations
source: {kind: webhook, secret: env:CONSOLE_API_WEBHOOK_SECRET}
key: message_id
on_error: {retries: 0, action: dead_letter}
steps:
  - kind: prompt
    template: "Summarise: {{ text }}"
  - kind: model
    model: broken
sinks:
  - kind: jsonl
    path: out/escalations.jsonl
    record: {message_id: "{{ message_id }}"}
"""
ROUTES = (
    ("GET", "/admin/logs"),
    ("GET", "/admin/logs/req_x"),
    ("GET", "/admin/stats/overview"),
    ("GET", "/admin/stats/series"),
    ("GET", "/admin/models"),
    ("GET", "/admin/flows"),
    ("GET", "/admin/flows/escalations/runs"),
    ("GET", "/admin/flows/escalations/runs/run_x"),
    ("GET", "/admin/flows/escalations/dead-letters"),
    ("POST", "/admin/flows/escalations/replay"),
)


class Gw:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def chat(self, key: str, model: str, content: str = "Say hi") -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": content}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
        )

    def event(self, message_id: str) -> None:
        body = orjson.dumps({"message_id": message_id, "text": "help"})
        ts = int(time.time())
        r = httpx.post(
            f"{self.url}/flows/escalations/events",
            content=body,
            headers={"x-timestamp": str(ts), "x-signature": sign(SECRET, body, ts)},
        )
        assert r.status_code == 202, r.text


def wait(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aiwire.db"
    return str(request.getfixturevalue("pg_databases")())


@pytest.fixture
def gw(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gw]:
    (tmp_path / "escalations.yaml").write_text(BROKEN_FLOW)
    monkeypatch.setenv("AIWIRE_FLOWS", str(tmp_path / "escalations.yaml"))
    monkeypatch.setenv("CONSOLE_API_WEBHOOK_SECRET", SECRET)
    with SimulatorServer(SimulatorConfig(faults={"broken-model": "500"})) as sim:
        config = simulator_config(sim.url, retries=0)
        config.models[[m.name for m in config.models].index("sim-gpt")].rpm = 100
        config.models += [
            DeploymentConfig(name="broken", provider="sim-openai", model="broken-model"),
            DeploymentConfig(name="old", provider="sim-openai", model="gpt-4o-2024-05-13"),
        ]
        parts = build_gateway(
            config,
            store_url=store_url,
            master_key=Secret(MASTER),
            auth_ttl=0,
            settings=GatewaySettings(store_content=True),
        )
        with BackgroundServer(parts.gateway, lifespan="on") as server:
            yield Gw(server.url)


def _traffic(gw: Gw) -> dict[str, Any]:
    """Two keys' requests (one key logs content), three failures; returns what was made."""
    a = gw.http.post("/admin/keys", json={"name": "app-a", "options": {"log_content": True}})
    b = gw.http.post("/admin/keys", json={"name": "app-b"})
    key_a, key_b = a.json(), b.json()
    ids: list[str] = []
    for key, model in [(key_a, "sim-gpt"), (key_a, "sim-claude"), (key_b, "sim-gpt")] * 2:
        r = gw.chat(key["key"], model, "my key is sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX0123")
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-request-id"])
    for _ in range(3):
        assert gw.chat(key_b["key"], "broken").status_code >= 500
    wait(lambda: gw.get("/admin/stats/overview")["today"]["requests"] == 9)
    return {"a": key_a, "b": key_b, "ids": ids}


def test_logs_filter_page_and_detail(gw: Gw) -> None:
    made = _traffic(gw)
    everything = gw.get("/admin/logs", limit=200)
    assert len(everything["data"]) == 9 and everything["has_more"] is False
    stamps = [r["ts"] for r in everything["data"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    # Keyset pages of 4: disjoint, complete, same order as one big page.
    seen: list[str] = []
    cursor = None
    while True:
        page = gw.get("/admin/logs", limit=4, **({"cursor": cursor} if cursor else {}))
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == [r["request_id"] for r in everything["data"]]

    by_key = gw.get("/admin/logs", key=made["a"]["id"])["data"]
    assert len(by_key) == 4 and {r["key_name"] for r in by_key} == {"app-a"}
    by_model = gw.get("/admin/logs", model="sim-claude")["data"]
    assert len(by_model) == 2 and {r["model"] for r in by_model} == {"sim-claude"}
    failed = gw.get("/admin/logs", status="error")["data"]
    assert len(failed) == 3 and all(r["status"] >= 500 for r in failed)
    assert {r["deployment"] for r in failed} == {"broken@sim-openai/broken-model"}
    assert len(gw.get("/admin/logs", status="200")["data"]) == 6
    assert gw.get("/admin/logs", since="2099-01-01")["data"] == []
    assert len(gw.get("/admin/logs", since="1h")["data"]) == 9

    detail = gw.get(f"/admin/logs/{made['ids'][0]}")
    assert (
        detail["key_name"] == "app-a" and detail["deployment"] == "sim-gpt@sim-openai/gpt-4o-mini"
    )
    assert detail["input_tokens"] > 0 and detail["cost_usd"] > 0 and detail["latency_ms"] > 0
    assert detail["retries"] == 0 and detail["fallback"] is False
    # Content kept for the key that asked, with key-shaped text removed; none for the other.
    assert detail["prompt"] is not None and "sk-proj-ABCDEFGH" not in detail["prompt"]
    assert "[REDACTED]" in detail["prompt"]
    assert gw.get(f"/admin/logs/{made['ids'][2]}")["prompt"] is None

    for params, param in [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"status": "teapot"}, "status"),
        ({"since": "yesterday-ish"}, "since"),
        ({"limit": "1000"}, "limit"),
    ]:
        r = gw.http.get("/admin/logs", params=params)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = gw.http.get("/admin/logs/req_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_request"


def test_overview_and_series(gw: Gw) -> None:
    made = _traffic(gw)
    o = gw.get("/admin/stats/overview")
    today, month = o["today"], o["month"]
    assert today["requests"] == 9 and today["errors"] == 3
    assert today["error_rate"] == pytest.approx(3 / 9, abs=1e-6)
    assert 0 < today["p50_latency_ms"] <= today["p95_latency_ms"]
    assert today["cost_usd"] > 0 and today["input_tokens"] > 0
    assert month["requests"] >= today["requests"]

    series = gw.get("/admin/stats/series", bucket="hour", by="model")
    assert len(series["buckets"]) in (24, 25)
    assert {"sim-gpt", "sim-claude", "broken"} <= set(series["groups"])
    assert sum(p["requests"] for p in series["data"]) == 9
    assert sum(p["errors"] for p in series["data"] if p["group"] == "broken") == 3
    assert {p["bucket"] for p in series["data"]} <= set(series["buckets"])

    by_key = gw.get("/admin/stats/series", bucket="day", by="key")
    assert by_key["labels"][made["a"]["id"]] == f"app-a ({made['a']['id']})"
    folded = gw.get("/admin/stats/series", by="model", top=1)
    assert folded["groups"][1:] == ["(other)"]
    assert sum(p["requests"] for p in folded["data"]) == 9
    by_provider = gw.get("/admin/stats/series", by="provider")
    # A request that failed upstream counts under the provider whose answer failed it.
    assert by_provider["groups"] == ["sim-openai", "sim-anthropic"]
    assert sum(p["errors"] for p in by_provider["data"] if p["group"] == "sim-openai") == 3

    r = gw.http.get("/admin/stats/series", params={"bucket": "hour", "since": "30d"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
    r = gw.http.get("/admin/stats/series", params={"by": "team"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "by"


def test_models_show_health_pacing_prices_and_deprecation(gw: Gw) -> None:
    _traffic(gw)
    data = {d["name"]: d for d in gw.get("/admin/models")["data"]}
    gpt = data["sim-gpt"]
    assert gpt["id"] == "sim-gpt@sim-openai/gpt-4o-mini" and gpt["provider_type"] == "openai"
    assert gpt["health"]["state"] == "closed"
    assert gpt["pacing"]["source"] == "configured" and gpt["pacing"]["rpm_limit"] == 100
    assert gpt["pacing"]["requests_last_minute"] == 4
    assert gpt["pacing"]["rpm_utilisation"] == pytest.approx(0.04)
    assert gpt["prices"]["input_per_1m"] > 0 and gpt["deprecation"] is None
    # Three failures in a row open the broken deployment's circuit (cooldown_failures: 3).
    broken = data["broken"]
    assert broken["health"]["state"] == "open" and broken["health"]["cooldown_seconds"] > 0
    assert broken["health"]["consecutive_failures"] >= 3 and broken["prices"] is None
    assert data["sim-claude"]["pacing"]["source"] is None
    old = data["old"]
    assert old["deprecation"] == {"date": "2026-10-23", "replacement": "gpt-4o", "retired": True}


def test_flow_runs_step_timings_dead_letters_and_replay(gw: Gw) -> None:
    gw.event("esc-1")
    gw.event("esc-2")
    dead = wait(lambda: len(gw.get("/admin/flows/escalations/dead-letters")["data"]) == 2)
    assert dead
    (flow,) = gw.get("/admin/flows")["data"]
    assert flow["name"] == "escalations" and flow["source"] == "webhook"
    assert flow["steps"] == ["prompt", "model"] and flow["open_dead_letters"] == 2
    assert flow["records"] == {"dead": 2} and flow["last_run"] is not None

    runs = gw.get("/admin/flows/escalations/runs")["data"]
    failed_runs = [r for r in runs if r["counts"].get("dead")]
    assert failed_runs, runs
    run = failed_runs[0]
    assert run["steps"]["model"]["failed"] >= 1 and run["steps"]["prompt"]["done"] >= 1
    assert run["duration_ms"] is not None and run["steps"]["prompt"]["avg_ms"] is not None
    detail = gw.get(f"/admin/flows/escalations/runs/{run['id']}")
    assert {s["step"] for s in detail["records"]} == {"prompt"}  # checkpoints of done steps
    assert detail["truncated"] is False
    older = gw.get("/admin/flows/escalations/runs", before=runs[0]["id"])["data"]
    assert [r["id"] for r in older] == [r["id"] for r in runs[1:]]

    letters = gw.get("/admin/flows/escalations/dead-letters")["data"]
    assert {d["record"] for d in letters} == {"esc-1", "esc-2"}
    assert letters[0]["stage"] == "model" and letters[0]["data"]
    one = next(d for d in letters if d["record"] == "esc-1")
    r = gw.http.post("/admin/flows/escalations/replay", json={"ids": [one["id"]]})
    assert r.status_code == 200 and r.json() == {"flow": "escalations", "requeued": ["esc-1"]}
    replayed = gw.get("/admin/flows/escalations/dead-letters", status="replayed")["data"]
    assert [d["id"] for d in replayed] == [one["id"]]
    # The model is still down: the replayed record fails again, into a new dead letter.
    wait(lambda: len(gw.get("/admin/flows/escalations/dead-letters")["data"]) == 2)
    r = gw.http.post("/admin/flows/escalations/replay", json={})
    assert r.status_code == 200 and sorted(r.json()["requeued"]) == ["esc-1", "esc-2"]

    r = gw.http.get("/admin/flows/nope/runs")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_flow"
    r = gw.http.get("/admin/flows/escalations/runs/run_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_run"


def test_every_console_route_needs_an_admin_and_is_in_the_spec(gw: Gw) -> None:
    plain = gw.http.post("/admin/keys", json={"name": "app"}).json()["key"]
    admin = gw.http.post("/admin/keys", json={"name": "ops", "scopes": ["admin"]}).json()["key"]
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented >= {
        ("GET", "/admin/logs"),
        ("GET", "/admin/logs/{request_id}"),
        ("GET", "/admin/stats/overview"),
        ("GET", "/admin/stats/series"),
        ("GET", "/admin/models"),
        ("GET", "/admin/flows"),
        ("GET", "/admin/flows/{name}/runs"),
        ("GET", "/admin/flows/{name}/runs/{run_id}"),
        ("GET", "/admin/flows/{name}/dead-letters"),
        ("POST", "/admin/flows/{name}/replay"),
    }
    for method, path in ROUTES:
        r = httpx.request(method, f"{gw.url}{path}")
        assert r.status_code == 401, (path, r.text)
        r = httpx.request(method, f"{gw.url}{path}", headers={"authorization": f"Bearer {plain}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "master_key_required"
        r = httpx.request(method, f"{gw.url}{path}", headers={"authorization": f"Bearer {admin}"})
        assert r.status_code in (200, 404), (path, r.text)
