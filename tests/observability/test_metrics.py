"""/metrics through a running gateway: every family the brief lists, bounded labels, access by
master key only, the per-request cost of recording, and the multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.observability.conftest import MASTER, Running, running, samples, value, wait_until

from aiwire.config import Config, DeploymentConfig, simulator_config
from aiwire.observability.config import MetricsConfig
from aiwire.observability.directory import KeyDirectory, KeyInfo
from aiwire.observability.metrics import Metrics
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.store.keys import KeyRecord
from aiwire.store.writer import RequestLogRow

GPT = "sim-gpt@sim-openai/gpt-4o-mini"
CLAUDE = "sim-claude@sim-anthropic/claude-sonnet-4-5"
BROKEN = "sim-broken@sim-openai/broken-model"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    faults = {"claude-sonnet-4-5": "500;times=1", "broken-model": "503"}
    with SimulatorServer(SimulatorConfig(faults=faults)) as sim:
        base = simulator_config(sim.url, retries=1, backoff_base=0.01, cooldown_failures=2)
        models = [
            m.model_copy(update={"rpm": 6000}) if m.name == "sim-gpt" else m for m in base.models
        ]
        models.append(
            DeploymentConfig(name="sim-broken", provider="sim-openai", model="broken-model")
        )
        config = Config(
            providers=base.providers,
            models=models,
            router=base.router,
            metrics=MetricsConfig(max_key_labels=1),
        )
        with running(config, tmp_path_factory.mktemp("metrics") / "aiwire.db") as gw:
            yield gw


def test_metrics_need_the_master_key_or_an_admin_scoped_key(gw: Running) -> None:
    anonymous = httpx.get(f"{gw.url}/metrics")
    assert anonymous.status_code == 401
    _, key = gw.key(name="not-admin")
    refused = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "master_key_required"
    ok = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {MASTER}"})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain; version=")
    _, ops = gw.key(name="ops", scopes=["admin"])
    scoped = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {ops}"})
    assert scoped.status_code == 200


def test_every_family_is_recorded_with_bounded_labels(gw: Running) -> None:
    first_id, first = gw.key(name="app-one")
    _, second = gw.key(name="app-two")
    for _ in range(2):
        assert gw.chat(first).status_code == 200
    streamed = gw.chat(first, stream=True, stream_options={"include_usage": True})
    assert streamed.status_code == 200
    assert gw.chat(first, model="sim-claude").status_code == 200  # a 500, then a retry
    assert gw.chat(first, model="made-up-model-123").status_code == 404
    assert gw.chat(second).status_code == 200  # past max_key_labels=1: "other"
    assert gw.chat(first, model="sim-broken").status_code in (503, 529)  # 2 failures: cooldown

    def seen() -> bool:
        found = samples(gw.metrics())
        return value(found, "aiwire_requests_total", key="other") == 1

    assert wait_until(seen)
    found = samples(gw.metrics())
    requests = "aiwire_requests_total"
    assert value(found, requests, model="sim-gpt", key="app-one", status="200") == 3
    assert value(found, requests, model="sim-gpt", deployment=GPT, provider="sim-openai") == 4
    assert value(found, requests, model="other", status="404", deployment="") == 1
    assert value(found, requests, key="other") == 1  # the second key's name is not a label
    assert not any("app-two" in str(labels) for _, labels in found)
    assert not any(first_id in str(labels) for _, labels in found)
    assert not any("made-up-model" in str(labels) for _, labels in found)
    # latency for every answered request, time to first token for the stream
    assert value(found, "aiwire_request_duration_seconds_count", model="sim-gpt") == 4
    assert value(found, "aiwire_time_to_first_token_seconds_count", model="sim-gpt") == 1
    assert value(found, "aiwire_tokens_total", model="sim-gpt", type="input") > 0
    assert value(found, "aiwire_tokens_total", model="sim-gpt", type="output") > 0
    assert value(found, "aiwire_cost_usd_total", model="sim-gpt", key="app-one") > 0
    assert value(found, "aiwire_retries_total", model="sim-claude") == 1
    assert (
        value(found, "aiwire_upstream_attempts_total", deployment=CLAUDE, outcome="ServerError")
        == 1
    )
    assert value(found, "aiwire_upstream_attempts_total", deployment=CLAUDE, outcome="ok") == 1
    # pacing: every attempt on the rpm-limited deployment went through its queue
    assert value(found, "aiwire_pacing_wait_seconds_count", deployment=GPT) == 4
    assert value(found, "aiwire_inflight_requests") == 0
    assert value(found, "aiwire_cooldowns_total", deployment=BROKEN) == 1
    assert value(found, "aiwire_deployment_circuit_open", deployment=BROKEN) == 1
    assert value(found, "aiwire_deployment_circuit_open", deployment=GPT) == 0
    assert value(found, "aiwire_cache_hits_total") == 0


def test_fallbacks_and_cache_hits_are_counted() -> None:
    metrics = Metrics(models=["m"], deployments={"d": "p"})
    row = RequestLogRow("r1", "m", "/v1/chat/completions", 200, deployment="d", fallback=True)
    metrics.observe(row)
    metrics.observe(RequestLogRow("r2", "m", "/v1/chat/completions", 200, cache_hit=True))
    found = samples(metrics.render().decode())
    assert value(found, "aiwire_fallbacks_total", model="m", deployment="d") == 1
    assert value(found, "aiwire_cache_hits_total", model="m", key="master") == 1
    assert value(found, "aiwire_requests_total", deployment="", provider="") == 1


async def test_a_key_seen_for_the_first_time_is_named_once_looked_up() -> None:
    class Keys:
        calls = 0

        async def get(self, key_id: str) -> KeyRecord:
            Keys.calls += 1
            return KeyRecord(key_id, "late-key", "aiw-xxxx", (), (), None, datetime.now(UTC))

    directory = KeyDirectory(Keys())  # type: ignore[arg-type]
    metrics = Metrics(models=["m"], deployments={}, directory=directory)
    for i in range(3):
        metrics.observe(RequestLogRow(f"r{i}", "m", "/v1/chat/completions", 200, key_id="key_1"))
    assert value(samples(metrics.render().decode()), "aiwire_requests_total") == 0
    for _ in range(100):
        await asyncio.sleep(0.01)
        if value(samples(metrics.render().decode()), "aiwire_requests_total") == 3:
            break
    found = samples(metrics.render().decode())
    assert value(found, "aiwire_requests_total", key="late-key") == 3
    assert Keys.calls == 1
    await directory.aclose()


def test_recording_a_request_costs_a_few_microseconds() -> None:
    directory = KeyDirectory(None)
    directory.add(KeyInfo("key_1", "app"))
    metrics = Metrics(models=["m"], deployments={"d": "p"}, directory=directory)
    row = RequestLogRow(
        "r",
        "m",
        "/v1/chat/completions",
        200,
        key_id="key_1",
        deployment="d",
        input_tokens=120,
        output_tokens=40,
        latency_ms=350.0,
        ttft_ms=90.0,
        cost_usd=0.0004,
        retries=1,
    )
    metrics.observe(row)  # the first sight of a label set builds its children
    n = 20_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            metrics.observe(row)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    print(f"\nrecording one request in /metrics: {best:.2f} µs")
    # A few µs on a quiet machine; the bound leaves room for a loaded CI box.
    assert best < 30


def test_workers_share_one_view_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two worker processes record into PROMETHEUS_MULTIPROC_DIR; a third (whichever worker
    answers /metrics) reports their sum."""
    shared = tmp_path / "prom"
    shared.mkdir()
    worker = textwrap.dedent(
        """
        import os
        import sys
        from aiwire.observability.metrics import Metrics
        from aiwire.store.writer import RequestLogRow
        m = Metrics(models=["m"], deployments={"d": "p"})
        for i in range(int(sys.argv[1])):
            m.observe(RequestLogRow(f"r{i}", "m", "/v1/chat/completions", 200, deployment="d",
                                    input_tokens=10))
        m.inflight.set(int(sys.argv[2]))
        m.flush()  # what a worker's Publisher does every second
        if sys.argv[3] == "stop":  # a worker shut down cleanly (GaugeSampler.aclose)
            from prometheus_client import multiprocess
            multiprocess.mark_process_dead(os.getpid())
        if sys.argv[3] == "render":
            sys.stdout.write(m.render().decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    for count, inflight, end in ((3, 1, "crash"), (4, 2, "stop")):
        run = [sys.executable, "-c", worker, str(count), str(inflight), end]
        subprocess.run(run, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", worker, "0", "0", "render"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = samples(out)
    assert value(found, "aiwire_requests_total", model="m", deployment="d") == 7
    assert value(found, "aiwire_tokens_total", type="input") == 70
    # livesum: the worker that shut down cleanly no longer counts; one that died does (a
    # limitation of prometheus-client: wipe the directory when restarting the server)
    assert value(found, "aiwire_inflight_requests") == 1


def test_batched_histograms_equal_prometheus_clients_own() -> None:
    """The flush writes into prometheus-client's histogram children directly: the exposition
    must be exactly what observing each value one by one gives."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from aiwire.observability.metrics import LATENCY_BUCKETS

    latencies = [0.01, 0.05, 0.0500001, 0.3, 2.5, 7.0, 299.0, 301.0, 1e6]
    metrics = Metrics(models=["m"], deployments={"d": "p"})
    registry = CollectorRegistry()
    reference = Histogram(
        "aiwire_request_duration_seconds",
        "x",
        ["model", "deployment"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for i, latency in enumerate(latencies):
        row = RequestLogRow(f"r{i}", "m", "/v1/chat/completions", 200, deployment="d")
        row.latency_ms = latency * 1000
        metrics.observe(row)
        reference.labels("m", "d").observe(row.latency_ms / 1000.0)
        if i == 4:
            metrics.flush()  # flushing in the middle changes nothing
    ours = {
        k: v
        for k, v in samples(metrics.render().decode()).items()
        if k[0].startswith("aiwire_request_duration_seconds_") and not k[0].endswith("_created")
    }
    theirs = {
        k: v
        for k, v in samples(generate_latest(registry).decode()).items()
        if not k[0].endswith("_created")
    }
    assert ours == theirs


def test_public_metrics_need_no_key(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = simulator_config(simulator.url).model_copy(
        update={"metrics": MetricsConfig(public=True)}
    )
    with running(config, tmp_path / "aiwire.db") as gw:
        r = httpx.get(f"{gw.url}/metrics")
        assert r.status_code == 200 and "aiwire_inflight_requests" in r.text
        assert httpx.post(f"{gw.url}/metrics").status_code == 405


def test_metrics_can_be_turned_off(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = simulator_config(simulator.url).model_copy(
        update={"metrics": MetricsConfig(enabled=False)}
    )
    with running(config, tmp_path / "aiwire.db") as gw:
        assert httpx.get(f"{gw.url}/metrics").status_code == 404
