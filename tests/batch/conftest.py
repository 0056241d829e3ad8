"""Batch fixtures: a gateway (uvicorn, background thread) with the batch API over the simulator,
input files, and a direct handle on the store behind it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
from tests.store.conftest import (  # noqa: F401  (the store's fixtures, for test_batch_store)
    backend,
    database,
    db_url,
    pg_databases,
    pg_server,
    pg_session_url,
)

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorConfig, SimulatorServer

MASTER = "sk-aiwire-batch-test-0123456789"
#: The gateway's batch worker, tuned for tests: frequent housekeeping, quick native polls.
WORKER_ENV = {
    "AIWIRE_BATCH_POLL_INTERVAL": "0.2",
    "AIWIRE_BATCH_NATIVE_POLL_INTERVAL": "0.2",
    "AIWIRE_BATCH_CONCURRENCY": "16",
    "AIWIRE_BATCH_MAX_ATTEMPTS": "2",
}


def chat_lines(
    n: int, model: str = "sim-claude", *, start: int = 0, max_tokens: int = 20
) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"Summarise ticket {i} in one line"}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(start, start + n)
    ]


def jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(i) + b"\n" for i in items)


def read_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


class Running:
    """A running gateway: its URL, parts, and an HTTP client with the master key."""

    def __init__(self, url: str, parts: GatewayParts, store_url: str) -> None:
        self.url, self.parts, self.store_url = url, parts, store_url
        self.http = httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30
        )

    def upload(self, data: bytes, key: str = MASTER) -> str:
        r = self.http.post(
            "/v1/files",
            files={"file": ("in.jsonl", data)},
            data={"purpose": "batch"},
            headers={"authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def create(self, file_id: str, key: str = MASTER, **extra: Any) -> httpx.Response:
        body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", **extra}
        body.setdefault("completion_window", "24h")
        return self.http.post("/v1/batches", json=body, headers={"authorization": f"Bearer {key}"})

    def wait(self, batch_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = dict(self.http.get(f"/v1/batches/{batch_id}").json())
            if data["status"] in statuses:
                return data
            assert time.monotonic() < deadline, f"batch stuck in {data['status']}: {data}"
            time.sleep(0.05)

    def content(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        r = self.http.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200, r.text
        return read_jsonl(r.content)

    def key(self, **body: Any) -> tuple[str, str]:
        r = self.http.post("/admin/keys", json={"name": "batch-test", **body})
        assert r.status_code == 201, r.text
        data = r.json()
        return str(data["id"]), str(data["key"])

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the gateway's store (its own connection)."""
        from sqlalchemy import text

        from aiwire.store import Database

        async def run() -> list[tuple[Any, ...]]:
            db = Database(self.store_url)
            try:
                async with db.engine.connect() as conn:
                    return [tuple(r) for r in (await conn.execute(text(query))).all()]
            finally:
                await db.aclose()

        return asyncio.run(run())


def start_gateway(
    simulator_url: str, db: Path, *, pricing: Any = None, env: dict[str, str] | None = None
) -> tuple[BackgroundServer, Running]:
    store_url = f"sqlite:///{db}"
    with mock.patch.dict(os.environ, {**WORKER_ENV, **(env or {})}):
        parts = build_gateway(
            # no circuit breaker: tests count each line's calls, a cooldown would add failures
            simulator_config(simulator_url, retries=0, backoff_base=0.01, cooldown_failures=10),
            store_url=store_url,
            master_key=Secret(MASTER),
            auth_ttl=0,
            pricing=pricing,
        )
    server = BackgroundServer(parts.gateway, lifespan="on")
    server.start()
    return server, Running(server.url, parts, store_url)


@pytest.fixture(scope="module")
def gw(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    server, running = start_gateway(simulator.url, tmp_path_factory.mktemp("batch") / "gw.db")
    try:
        yield running
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, SimulatorServer]]:
    """A gateway whose worker runs 2 lines at a time against a simulator taking 150 ms each,
    whose Claude model answers its first 3 requests with 503."""
    config = SimulatorConfig(latency_ms=150, faults={"claude-sonnet-4-5": "503;times=3"})
    with SimulatorServer(config) as sim:
        server, running = start_gateway(
            sim.url,
            tmp_path_factory.mktemp("slow") / "gw.db",
            env={"AIWIRE_BATCH_CONCURRENCY": "2"},
        )
        try:
            yield running, sim
        finally:
            server.stop()
