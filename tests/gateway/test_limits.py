"""Per-key rate limits and budgets through the gateway, in both client protocols.

Prices come from a flat test pricing (1 µ$ per input token, 2 µ$ per output token) so the
arithmetic is visible; the catalog's real prices are tested with the catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.conftest import MASTER

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.types import Usage


class FlatPricing:
    IN, OUT = 1e-6, 2e-6

    def cost(self, model: str, usage: Usage) -> float | None:
        return usage.prompt_tokens * self.IN + usage.completion_tokens * self.OUT

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        return input_tokens * self.IN + max_output * self.OUT

    def max_output(self, model: str) -> int | None:
        return 1000


class Running:
    def __init__(self, url: str, parts: GatewayParts) -> None:
        self.url, self.parts = url, parts
        self.admin = httpx.Client(
            base_url=f"{url}/admin", headers={"authorization": f"Bearer {MASTER}"}, timeout=10
        )

    def key(self, **body: Any) -> tuple[str, str]:
        r = self.admin.post("/keys", json={"name": "t", **body})
        assert r.status_code == 201, r.text
        data = r.json()
        return data["id"], data["key"]

    def budget(self, **body: Any) -> dict[str, Any]:
        r = self.admin.post("/budgets", json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def chat(self, key: str, path: str = "/v1/chat/completions", **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {
            "model": "sim-gpt",
            "messages": [{"role": "user", "content": "Say something short"}],
            "max_tokens": 20,
            **body,
        }
        if path == "/v1/messages":
            payload["model"] = "sim-claude"
        return httpx.post(
            f"{self.url}{path}",
            json=payload,
            headers={"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def gw(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    db: Path = tmp_path_factory.mktemp("limits") / "aiwire.db"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0),
        store_url=f"sqlite:///{db}",
        master_key=Secret(MASTER),
        auth_ttl=0,
        pricing=FlatPricing(),
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield Running(server.url, parts)


def test_a_key_over_its_rpm_gets_429_with_retry_after_and_headers(gw: Running) -> None:
    _, key = gw.key(rpm=3)
    seen = []
    for _ in range(3):
        r = gw.chat(key)
        assert r.status_code == 200
        seen.append(int(r.headers["x-ratelimit-remaining-requests"]))
        assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert seen == [2, 1, 0]
    refused = gw.chat(key)
    assert refused.status_code == 429
    err = refused.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and "3 requests per minute" in err["message"]
    assert 55 <= float(refused.headers["retry-after-ms"]) / 1000 <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Anthropic clients get their own error shape, with the same code
    anth = gw.chat(key, "/v1/messages")
    assert anth.status_code == 429
    assert anth.json()["error"] == {
        "type": "rate_limit_error",
        "message": anth.json()["error"]["message"],
        "code": "rate_limit_exceeded",
    }


def test_a_request_larger_than_the_tpm_is_refused_for_good(gw: Running) -> None:
    _, key = gw.key(tpm=100)
    r = gw.chat(key, max_tokens=500)
    assert r.status_code == 429
    assert r.headers["x-should-retry"] == "false"
    assert "more than this key's limit of 100 tokens" in r.json()["error"]["message"]
    assert gw.chat(key, max_tokens=10).status_code == 200


def test_tokens_per_minute_count_what_the_provider_reported(gw: Running) -> None:
    _, key = gw.key(tpm=400)
    first = gw.chat(key, max_tokens=300)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    # the estimate (input + 300) was corrected to the actual usage, so a second one fits
    second = gw.chat(key, max_tokens=300)
    assert second.status_code == 200
    left = int(second.headers["x-ratelimit-remaining-tokens"])
    assert left <= 400 - used  # this request's estimate is still held until it settles


def test_a_budget_refuses_once_spent_and_alerts_at_its_soft_limit(gw: Running) -> None:
    key_id, key = gw.key(team="budget-test")
    first = gw.chat(key)
    assert first.status_code == 200
    usage = first.json()["usage"]
    per_request = usage["prompt_tokens"] * 1e-6 + usage["completion_tokens"] * 2e-6
    limit = per_request * 3.5 + 20 * 2e-6  # fits the first request, two more, and no fourth
    gw.budget(scope="key", scope_id=key_id, period="day", limit_usd=limit, soft_usd=limit / 2)
    codes = [gw.chat(key).status_code for _ in range(6)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    refused = gw.chat(key)
    err = refused.json()["error"]
    assert refused.status_code == 429 and err["code"] == "budget_exceeded"
    assert "key " + key_id in err["message"] and refused.headers["x-should-retry"] == "false"
    alerts = [a for a in gw.parts.alerts.fired if a["kind"] == "budget_soft_limit"]
    assert len(alerts) == 1 and key_id in alerts[0]["text"]
    listed = {b["id"]: b for b in gw.admin.get("/budgets").json()["data"]}
    spent = next(b for b in listed.values() if b["scope_id"] == key_id)["spent_usd"]
    assert spent <= limit
    # a team budget covers every key of the team; other teams are untouched
    gw.budget(scope="team", scope_id="budget-test", period="month", limit_usd=0)
    _, teammate = gw.key(team="budget-test")
    _, outsider = gw.key(team="other")
    assert gw.chat(teammate).status_code == 429
    assert gw.chat(outsider).status_code == 200


def test_admin_validates_budgets_and_limits(gw: Running) -> None:
    bad = gw.admin.post("/budgets", json={"scope": "key", "scope_id": "key_nope", "limit_usd": 1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "scope_id"
    bad = gw.admin.post("/budgets", json={"scope": "global", "period": "year", "limit_usd": 1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "period"
    bad = gw.admin.post("/keys", json={"name": "x", "rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    key_id, key = gw.key()
    patched = gw.admin.patch(f"/keys/{key_id}", json={"rpm": 1, "options": {"cache": False}})
    assert patched.status_code == 200 and patched.json()["rpm"] == 1
    assert gw.chat(key).status_code == 200
    assert gw.chat(key).status_code == 429  # the change applies at once on this replica


async def _fire(url: str, key: str, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:

        async def one() -> int:
            r = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "sim-gpt",
                    "messages": [{"role": "user", "content": "Say something short"}],
                    "max_tokens": 20,
                },
                headers={"authorization": f"Bearer {key}"},
            )
            return r.status_code

        return await asyncio.gather(*(one() for _ in range(n)))


def concurrent_budget_case(parts: GatewayParts, url: str) -> tuple[float, float, list[int]]:
    """100 concurrent requests against a global budget that fits 10; returns (spent, limit +
    one request's maximum cost, status codes)."""
    run = Running(url, parts)
    _, key = run.key()
    probe = run.chat(key).json()["usage"]  # a request's actual cost (the simulator repeats it)
    cost = probe["prompt_tokens"] * 1e-6 + probe["completion_tokens"] * 2e-6
    max_cost = FlatPricing().max_cost("sim-gpt", 40, 20) or 0.0
    budget = run.budget(scope="global", period="total", limit_usd=cost * 10)
    codes = asyncio.run(_fire(url, key, 100))
    spent = [b for b in run.admin.get("/budgets").json()["data"] if b["id"] == budget["id"]]
    run.admin.delete(f"/budgets/{budget['id']}")
    return spent[0]["spent_usd"], cost * 10 + max_cost, codes


def test_concurrent_requests_cannot_overspend_a_budget(tmp_path: Path) -> None:
    with SimulatorServer(SimulatorConfig(latency_ms=200, tokens_per_second=0)) as sim:
        parts = build_gateway(
            simulator_config(sim.url, retries=0),
            store_url=f"sqlite:///{tmp_path}/aiwire.db",
            master_key=Secret(MASTER),
            pricing=FlatPricing(),
        )
        with BackgroundServer(parts.gateway, lifespan="on") as server:
            spent, bound, codes = concurrent_budget_case(parts, server.url)
    assert spent <= bound, (spent, bound)
    assert 5 <= codes.count(200) <= 11 and codes.count(429) == 100 - codes.count(200)
