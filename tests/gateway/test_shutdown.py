"""SIGTERM with 200 requests in flight: nothing lost, exactly one log row per provider call."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from aiwire.simulator import SimulatorConfig, SimulatorServer

MASTER = "sk-aiwire-shutdown-test-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, sim_url: str, store: Path) -> None:
    path.write_text(
        f"""
providers:
  sim-openai: {{type: openai, base_url: "{sim_url}/v1", api_key: env:SIM_KEY}}
  sim-anthropic: {{type: anthropic, base_url: "{sim_url}", api_key: env:SIM_KEY}}
models:
  - {{name: sim-gpt, provider: sim-openai, model: gpt-4o-mini}}
  - {{name: sim-claude, provider: sim-anthropic, model: claude-sonnet-4-5}}
router: {{retries: 0}}
server:
  store: "sqlite:///{store}"
  grace_period: 30
"""
    )


async def one(client: httpx.AsyncClient, url: str, i: int) -> str:
    """'complete', 'protocol-error', or what went wrong."""
    stream = i % 2 == 0
    body = {
        "model": "sim-claude" if stream else "sim-gpt",
        "messages": [{"role": "user", "content": f"Tell me a story number {i}"}],
        "stream": stream,
    }
    headers = {"authorization": f"Bearer {MASTER}"}
    try:
        if not stream:
            r = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            if r.status_code == 200:
                return "complete" if r.json()["choices"][0]["message"]["content"] else "empty"
            return "protocol-error" if "error" in r.json() else f"status {r.status_code}"
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=headers
        ) as r:
            if r.status_code != 200:
                return "protocol-error" if "error" in orjson.loads(await r.aread()) else "bad"
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        if lines and lines[-1] == "data: [DONE]":
            return "complete"
        if lines and "error" in orjson.loads(lines[-1][6:]):
            return "protocol-error"
        return "truncated"
    except httpx.HTTPError as exc:
        return f"transport error {type(exc).__name__}"


async def fire(url: str, n: int, proc: subprocess.Popen[bytes], sim: SimulatorServer) -> list[str]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, url, i)) for i in range(n)]
        # SIGTERM once every request has reached the upstream (so all are in flight at the
        # gateway; answers take >= 1 s): however slow this machine is at the moment.
        deadline = time.monotonic() + 20
        counts = sim.app.sim.limiter.counts  # type: ignore[attr-defined]
        while sum(counts.values()) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # (the counter lives in another thread: poll it)
        proc.send_signal(signal.SIGTERM)
        return await asyncio.gather(*tasks)


def test_sigterm_with_200_requests_in_flight(tmp_path: Path) -> None:
    # answers take ~1 s upstream: 1 s "thinking" for non-streamed, ~40 chunks for streams
    with SimulatorServer(SimulatorConfig(latency_ms=1000, tokens_per_second=40)) as sim:
        cfg, store = tmp_path / "aiwire.yaml", tmp_path / "log.db"
        write_config(cfg, sim.url, store)
        port = free_port()
        env = {**os.environ, "AIWIRE_MASTER_KEY": MASTER, "SIM_KEY": "sim-key"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiwire.cli", "serve", "-c", str(cfg), "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
            results = asyncio.run(fire(url, 200, proc, sim))
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a clean stop
    bad = [r for r in results if r not in ("complete", "protocol-error")]
    assert not bad, f"{len(bad)} requests neither completed nor got a protocol error: {set(bad)}"
    assert results.count("complete") >= 190, results  # graceful: in-flight work finishes
    with sqlite3.connect(store) as db:
        rows = db.execute("select request_id, stream, status from request_log").fetchall()
    assert len(rows) == 200, f"{len(rows)} log rows for 200 provider calls"
    assert len({r[0] for r in rows}) == 200
    assert sum(1 for r in rows if r[1]) == 100
    assert MASTER not in output
