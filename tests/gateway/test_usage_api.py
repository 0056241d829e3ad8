"""``GET /admin/usage`` on a running gateway (SQLite): the JSON and CSV reports of rows seeded
straight into its store, the requests it served itself, and a 400 naming each bad parameter."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import orjson
import pytest
from tests.gateway.conftest import MASTER

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer
from aiwire.store import Database, KeyStore, RequestLog
from aiwire.store.usage import METRICS, columns

#: Seeded rows on fixed days long ago, reported with explicit since/until.
JUNE = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass
class UsageGateway:
    url: str
    store_url: str
    keys: dict[str, str]  # name -> id of the seeded keys


def _row(n: int, ts: datetime, **fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "request_id": f"seed-{n}",
        "ts": ts,
        "endpoint": "/v1/chat/completions",
        "model": "gpt",
        "provider": "openai",
        "deployment": "gpt@openai/gpt-4o-mini",
        "status": 200,
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_tokens": 0,
        "latency_ms": 100.0,
        "retries": 0,
        "fallback": False,
        "stream": False,
        "cost_usd": 0.01,
        "cache_hit": False,
        **fields,
    }
    return RequestLog(**values)


async def _seed(store_url: str) -> dict[str, str]:
    database = Database(store_url)
    try:
        keys = KeyStore(database)
        ops, _ = await keys.create("ops-app", team="ops", actor="test")
        web, _ = await keys.create("web-app", team="web", actor="test")
        now = datetime.now(UTC)
        rows = [
            # June 2025: two days, two keys, an error and a cache hit.
            _row(1, JUNE + timedelta(hours=1), key_id=ops.id, team="ops", cost_usd=0.5),
            _row(2, JUNE + timedelta(hours=2), key_id=ops.id, team="ops", status=500),
            _row(3, JUNE + timedelta(hours=3), key_id=web.id, team="web", cost_usd=2.0),
            _row(
                4,
                JUNE + timedelta(days=1, hours=1),
                key_id=web.id,
                team="web",
                cache_hit=True,
                cost_usd=0.0,
                model="claude",
                provider="anthropic",
                deployment="claude@anthropic/claude-sonnet-4-5",
            ),
            # Recent: one inside the default 7 days, one outside it.
            _row(5, now - timedelta(days=1), key_id=ops.id, team="ops", model="recent"),
            _row(6, now - timedelta(days=10), key_id=ops.id, team="ops", model="old"),
        ]
        async with database.session() as session:
            session.add_all(rows)
        return {"ops-app": ops.id, "web-app": web.id}
    finally:
        await database.aclose()


@pytest.fixture(scope="module")
def gw(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UsageGateway]:
    store_url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'aiwire.db'}"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0),
        store_url=store_url,
        master_key=Secret(MASTER),
        auth_ttl=0.2,
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        keys = asyncio.run(_seed(store_url))  # the gateway migrated the store at start
        yield UsageGateway(server.url, store_url, keys)


def get(
    gw: UsageGateway, query: str, *, key: str | None = MASTER, method: str = "GET"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{gw.url}/admin/usage{query}", headers=headers, timeout=10)


JUNE_RANGE = "since=2025-06-01&until=2025-06-03"


# -- JSON ---------------------------------------------------------------------------------------


def test_json_report_by_key_and_day(gw: UsageGateway) -> None:
    resp = get(gw, f"?by=key,day&{JUNE_RANGE}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"object", "by", "since", "until", "filters", "data", "totals"}
    assert body["object"] == "list" and body["by"] == ["key", "day"]
    assert body["since"] == "2025-06-01T00:00:00+00:00"
    assert body["until"] == "2025-06-03T00:00:00+00:00"
    assert body["filters"] == {}
    ops, web = gw.keys["ops-app"], gw.keys["web-app"]
    rows = [(r["day"], r["key"], r["key_name"], r["requests"], r["errors"]) for r in body["data"]]
    # By day (oldest first), then by cost (most expensive first).
    assert rows == [
        ("2025-06-01", web, "web-app", 1, 0),
        ("2025-06-01", ops, "ops-app", 2, 1),
        ("2025-06-02", web, "web-app", 1, 0),
    ]
    assert [list(r) for r in body["data"]] == [columns(["key", "day"])] * 3
    first = body["data"][0]
    assert first["cost_usd"] == 2.0 and first["input_tokens"] == 100
    assert first["p50_latency_ms"] == first["p95_latency_ms"] == 100.0
    totals = body["totals"]
    assert list(totals) == list(METRICS)
    assert totals["requests"] == 4 and totals["errors"] == 1 and totals["cache_hits"] == 1
    assert totals["cost_usd"] == pytest.approx(2.51)
    for metric in ("requests", "errors", "cache_hits", "input_tokens", "output_tokens"):
        assert totals[metric] == sum(r[metric] for r in body["data"])


def test_default_is_by_key_over_the_last_seven_days(gw: UsageGateway) -> None:
    before = datetime.now(UTC)
    body = get(gw, "?model=recent").json()
    assert body["by"] == ["key"]
    since, until = (datetime.fromisoformat(body[k]) for k in ("since", "until"))
    assert until - since == timedelta(days=7) and before <= until <= datetime.now(UTC)
    assert [(r["key_name"], r["requests"]) for r in body["data"]] == [("ops-app", 1)]
    assert get(gw, "?model=old").json()["data"] == []  # 10 days ago
    assert get(gw, "?model=old&since=11d").json()["totals"]["requests"] == 1


def test_filters_and_repeated_by(gw: UsageGateway) -> None:
    body = get(gw, f"?by=team&by=model&{JUNE_RANGE}&team=web&provider=anthropic").json()
    assert body["by"] == ["team", "model"]
    assert body["filters"] == {"team": "web", "provider": "anthropic"}
    assert [(r["team"], r["model"], r["cache_hits"]) for r in body["data"]] == [
        ("web", "claude", 1)
    ]
    key = get(gw, f"?by=status&{JUNE_RANGE}&key={gw.keys['ops-app']}").json()
    assert [(r["status"], r["requests"]) for r in key["data"]] == [(200, 1), (500, 1)]
    nobody = get(gw, f"?{JUNE_RANGE}&team=nobody").json()
    assert nobody["data"] == [] and nobody["totals"]["requests"] == 0
    assert nobody["totals"]["p50_latency_ms"] is None


def test_times_with_offsets_and_durations(gw: UsageGateway) -> None:
    # 2025-06-01T03:30+02:00 is 01:30 UTC: only the 02:00 and 03:00 UTC rows are after it.
    body = get(gw, "?by=day&since=2025-06-01T03:30:00%2B02:00&until=2025-06-01T12:00Z").json()
    assert body["since"] == "2025-06-01T01:30:00+00:00"
    assert body["totals"]["requests"] == 2
    naive = get(gw, "?since=2025-06-01T02:00:00&until=2025-06-01T02:00:01").json()
    assert naive["totals"]["requests"] == 1  # a time without an offset is UTC
    recent = get(gw, "?since=2d&until=1h&model=recent").json()
    assert recent["totals"]["requests"] == 1


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_report(gw: UsageGateway) -> None:
    resp = get(gw, f"?by=key,day&{JUNE_RANGE}&format=csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    lines = list(csv.reader(io.StringIO(resp.text)))
    assert lines[0] == columns(["key", "day"])
    records = get(gw, f"?by=key,day&{JUNE_RANGE}").json()["data"]
    assert len(lines) == 1 + len(records) == 4
    for line, record in zip(lines[1:], records, strict=True):
        as_text = {k: "" if v is None else str(v) for k, v in record.items()}
        assert dict(zip(lines[0], line, strict=True)) == as_text
    empty = get(gw, f"?{JUNE_RANGE}&team=nobody&format=csv")
    assert empty.text == ",".join(columns(["key"])) + "\r\n"  # the header alone


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param", "says"),
    [
        ("?by=key,colour", "by", "choose from key, team"),
        ("?by=", "by", "at least one"),
        ("?since=soon", "since", "7d"),
        ("?until=yesterday", "until", "ISO"),
        ("?since=2025-06-01T00:00:00 02:00", "since", "%2B"),
        ("?since=2099-01-01", "since", "before until"),
        ("?since=2025-06-02&until=2025-06-01", "since", "before until"),
        ("?format=xml", "format", "json or csv"),
        ("?colour=red", "colour", "allowed: by, since"),
        ("?team=", "team", "non-empty"),
        ("?since=1d&since=2d", "since", "more than once"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    gw: UsageGateway, query: str, param: str, says: str
) -> None:
    resp = get(gw, query)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and f"'{param}'" in error["message"]
    assert error["type"] == "invalid_request_error" and says in error["message"]


def test_only_the_master_key_may_read_usage(gw: UsageGateway) -> None:
    assert get(gw, "", key=None).status_code == 401
    assert get(gw, "", key="sk-not-the-master-key-0000").status_code == 401
    created = httpx.post(
        f"{gw.url}/admin/keys",
        content=orjson.dumps({"name": "reader"}),
        headers={"authorization": f"Bearer {MASTER}"},
    )
    resp = get(gw, "", key=created.json()["key"])
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "master_key_required"


def test_method_and_route_listing(gw: UsageGateway) -> None:
    resp = get(gw, "", method="POST")
    assert resp.status_code == 405 and "use GET" in resp.json()["error"]["message"]
    missing = httpx.get(f"{gw.url}/admin/nope", headers={"authorization": f"Bearer {MASTER}"})
    assert missing.status_code == 404 and "GET /admin/usage" in missing.json()["error"]["message"]


# -- what the gateway itself logged -------------------------------------------------------------


def test_requests_through_the_gateway_are_reported_with_their_cost(gw: UsageGateway) -> None:
    created = httpx.post(
        f"{gw.url}/admin/keys",
        content=orjson.dumps({"name": "live-app", "team": "live"}),
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=created["key"], max_retries=0)
    for _ in range(2):
        client.chat.completions.create(
            model="sim-gpt", messages=[{"role": "user", "content": "Hello there"}]
        )
    query = f"?by=key,model,provider&since=1h&key={created['id']}"
    deadline = time.monotonic() + 10
    while (body := get(gw, query).json())["totals"]["requests"] < 2:  # the writer batches
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    (row,) = body["data"]
    assert (row["key"], row["key_name"], row["model"]) == (created["id"], "live-app", "sim-gpt")
    assert row["provider"] == "sim-openai" and row["requests"] == 2 and row["errors"] == 0
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["cost_usd"] > 0  # priced as gpt-4o-mini by the catalog
    assert row["p95_latency_ms"] >= row["p50_latency_ms"] > 0
    team = get(gw, "?by=team&since=1h&team=live").json()
    assert team["data"][0]["cost_usd"] == row["cost_usd"]
