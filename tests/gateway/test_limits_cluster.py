"""Three gateway processes sharing Redis and PostgreSQL hold one key's limit and share budgets.

The real thing: `aiwire serve` processes, the real Redis and PostgreSQL on this machine, the
simulator upstream, several concurrent clients spread over the replicas. The RPM test runs a
full minute (the window's length: a shorter run could not tell a per-minute limit from a
burst allowance).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.limits.conftest import REDIS_HOW_TO_START, REDIS_URL
from tests.store.conftest import PG_ADMIN_URL, PG_HOW_TO_START, _admin, _database_url

from aiwire.simulator import SimulatorConfig, SimulatorServer

pytestmark = pytest.mark.services

MASTER = "sk-aiwire-cluster-test-0123456789"
#: How soon a budget set on one replica applies on the others (BudgetBook's refresh).
BUDGET_REFRESH = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services_or_skip() -> None:
    from tests.conftest import require_service

    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, Exception) as exc:  # asyncpg errors, refused connections, timeouts
        require_service(f"PostgreSQL at {PG_ADMIN_URL} ({type(exc).__name__})", PG_HOW_TO_START)
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        require_service(f"Redis at {REDIS_URL}", REDIS_HOW_TO_START)


class Cluster:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.admin = httpx.Client(
            base_url=f"{urls[0]}/admin", headers={"authorization": f"Bearer {MASTER}"}, timeout=10
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    services_or_skip()
    name = f"aiwire_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    tmp = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with SimulatorServer(SimulatorConfig(latency_ms=50, tokens_per_second=0)) as sim:
            cfg = tmp / "aiwire.yaml"
            cfg.write_text(
                f"""
providers:
  sim-openai: {{type: openai, base_url: "{sim.url}/v1", api_key: env:SIM_KEY}}
models:
  - {{name: sim-gpt, provider: sim-openai, model: gpt-4o-mini}}
router: {{retries: 0}}
server:
  store: "{_database_url(name)}"
  redis: "{REDIS_URL}"
  auth_cache_ttl: 1
"""
            )
            env = {**os.environ, "AIWIRE_MASTER_KEY": MASTER, "SIM_KEY": "sim-key"}
            ports = [free_port() for _ in range(3)]
            for port in ports:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "aiwire.cli",
                            "serve",
                            "-c",
                            str(cfg),
                            "--port",
                            str(port),
                        ],
                        env=env,
                        cwd=tmp,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            deadline = time.monotonic() + 30
            for url in urls:
                while True:
                    try:
                        if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, "a gateway did not start"
                    time.sleep(0.1)
            yield Cluster(urls)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def body() -> dict[str, object]:
    return {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "Say something short"}],
        "max_tokens": 20,
    }


async def hammer(
    urls: list[str], key: str, seconds: float, clients: int
) -> list[tuple[float, int]]:
    """``clients`` loops, each on its own replica in turn, for ``seconds``: (sent at, status)."""
    out: list[tuple[float, int]] = []
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30) as client:

        async def loop(i: int) -> None:
            n = i
            while time.monotonic() < end:
                url = urls[n % len(urls)]
                n += 1
                sent = time.monotonic()
                r = await client.post(
                    f"{url}/v1/chat/completions",
                    json=body(),
                    headers={"authorization": f"Bearer {key}"},
                )
                out.append((sent, r.status_code))
                await asyncio.sleep(0.05)

        await asyncio.gather(*(loop(i) for i in range(clients)))
    return out


def test_three_replicas_hold_one_keys_120_rpm(cluster: Cluster) -> None:
    created = cluster.admin.post("/keys", json={"name": "rpm-test", "rpm": 120})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    results = asyncio.run(hammer(cluster.urls, key, 62.0, clients=6))
    start = min(t for t, _ in results)
    in_window = [s for t, s in results if t < start + 60.0]
    admitted = in_window.count(200)
    assert set(in_window) <= {200, 429}, set(in_window)
    assert len(in_window) > 600  # the load was far above the limit, on every replica
    assert 114 <= admitted <= 126, admitted  # 120 ± 5 % in the minute


def test_three_replicas_share_one_budget(cluster: Cluster) -> None:
    """100 concurrent requests spread over the replicas against a budget that fits 10: the
    spend ends no higher than the budget plus one request's largest possible cost."""
    from aiwire import catalog
    from aiwire.types import Usage

    created = cluster.admin.post("/keys", json={"name": "budget-test"})
    key_id, key = created.json()["id"], created.json()["key"]
    probe = httpx.post(
        f"{cluster.urls[1]}/v1/chat/completions",
        json=body(),
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ).json()["usage"]
    cat = catalog.load()
    cost = cat.cost("gpt-4o-mini", Usage.of(probe["prompt_tokens"], probe["completion_tokens"]))
    limit = 11 * cost  # the probe already spent one
    budget = cluster.admin.post(
        "/budgets",
        json={"scope": "key", "scope_id": key_id, "period": "total", "limit_usd": limit},
    )
    assert budget.status_code == 200, budget.text
    time.sleep(BUDGET_REFRESH + 0.5)  # the other replicas learn of the new budget within this

    async def fire() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(i: int) -> int:
                r = await client.post(
                    f"{cluster.urls[i % 3]}/v1/chat/completions",
                    json=body(),
                    headers={"authorization": f"Bearer {key}"},
                )
                return r.status_code

            return await asyncio.gather(*(one(i) for i in range(100)))

    codes = asyncio.run(fire())
    assert set(codes) <= {200, 429}
    time.sleep(1.5)  # settled spend is counted in Redis at once; give the log writers a moment
    listed = cluster.admin.get("/budgets").json()["data"]
    spent = next(b["spent_usd"] for b in listed if b["id"] == budget.json()["id"])
    max_cost = cat.max_cost("gpt-4o-mini", 200, 20)  # a generous input estimate + max_tokens
    assert spent <= limit + max_cost, (spent, limit, codes.count(200))
    assert 4 <= codes.count(200) <= 10, codes.count(200)
