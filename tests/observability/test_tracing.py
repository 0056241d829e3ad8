"""OpenTelemetry spans through a running gateway, read back from the SDK's in-memory exporter:
the request, each router attempt and each upstream call, with GenAI attribute names; and no
cost, nothing wrapped, when tracing is off or OpenTelemetry is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.observability.conftest import MASTER, Running, running, wait_until

from aiwire.config import simulator_config
from aiwire.observability import tracing
from aiwire.observability.install import observability_of
from aiwire.server.build import GatewayParts
from aiwire.simulator import SimulatorConfig, SimulatorServer

GPT = "sim-gpt@sim-openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Running, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def prepare(parts: GatewayParts) -> None:
        tracing.install(parts.gateway, provider)

    faults = {"gpt-4o-mini": "500;times=1"}
    with SimulatorServer(SimulatorConfig(faults=faults)) as sim:
        config = simulator_config(sim.url, retries=1, backoff_base=0.01)
        db = tmp_path_factory.mktemp("tracing") / "aiwire.db"
        with running(config, db, prepare=prepare) as gw:
            yield gw, exporter


def _tree(
    exporter: InMemorySpanExporter, root_name: str
) -> tuple[ReadableSpan, list[ReadableSpan]]:
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == root_name and s.kind == SpanKind.SERVER)
    trace_id = root.context.trace_id
    return root, [s for s in spans if s.context.trace_id == trace_id and s is not root]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [
        s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def test_a_retried_request_gives_one_span_per_attempt_and_upstream_call(
    traced: tuple[Running, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    exporter.clear()
    assert gw.chat(MASTER).status_code == 200  # the simulator fails the first call once
    assert wait_until(lambda: len(exporter.get_finished_spans()) >= 5)
    root, rest = _tree(exporter, "POST /v1/chat/completions")
    attrs = dict(root.attributes or {})
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "sim-gpt"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["aiwire.retries"] == 1

    attempts = _children(rest, root)
    assert [a.name for a in attempts] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
    failed, answered = (dict(a.attributes or {}) for a in attempts)
    assert failed["error.type"] == "ServerError" and failed["http.response.status_code"] == 500
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert answered["gen_ai.system"] == "openai"
    assert answered["gen_ai.request.model"] == "gpt-4o-mini"
    assert answered["gen_ai.response.model"] == "gpt-4o-mini"
    assert answered["gen_ai.usage.output_tokens"] == attrs["gen_ai.usage.output_tokens"]
    assert answered["aiwire.deployment"] == GPT and answered["aiwire.attempt"] == 2
    assert "error.type" not in answered
    for attempt, status in zip(attempts, (500, 200), strict=True):
        (http,) = _children(rest, attempt)
        assert http.kind == SpanKind.CLIENT and http.name == "POST"
        http_attrs = dict(http.attributes or {})
        assert http_attrs["http.response.status_code"] == status
        assert http_attrs["url.full"].endswith("/v1/chat/completions")
        assert http_attrs["server.address"] == "127.0.0.1"
        # the upstream call lies within its attempt, the attempt within the request
        assert attempt.start_time <= http.start_time <= http.end_time <= attempt.end_time
        assert root.start_time <= attempt.start_time <= attempt.end_time <= root.end_time


def test_streams_and_embeddings_are_traced_in_their_protocol(
    traced: tuple[Running, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    exporter.clear()
    r = httpx.post(
        f"{gw.url}/v1/messages",
        json={
            "model": "sim-claude",
            "max_tokens": 16,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200 and "message_stop" in r.text
    assert wait_until(lambda: len(exporter.get_finished_spans()) >= 3)
    root, rest = _tree(exporter, "POST /v1/messages")
    (attempt,) = _children(rest, root)
    assert attempt.name == "chat claude-sonnet-4-5"
    assert dict(attempt.attributes or {})["gen_ai.system"] == "anthropic"
    (http,) = _children(rest, attempt)
    assert dict(http.attributes or {})["url.full"].endswith("/v1/messages")

    exporter.clear()
    r = httpx.post(
        f"{gw.url}/v1/embeddings",
        json={"model": "sim-embed", "input": "hello"},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200
    assert wait_until(lambda: len(exporter.get_finished_spans()) >= 3)
    root, rest = _tree(exporter, "POST /v1/embeddings")
    assert dict(root.attributes or {})["gen_ai.operation.name"] == "embeddings"
    (attempt,) = _children(rest, root)
    assert attempt.name == "embeddings text-embedding-3-small"


def test_spans_hold_no_secret(traced: tuple[Running, InMemorySpanExporter]) -> None:
    gw, exporter = traced
    exporter.clear()
    assert gw.chat("aiw-not-a-real-key-0123456789").status_code == 401
    assert gw.chat(MASTER).status_code == 200
    assert wait_until(lambda: len(exporter.get_finished_spans()) >= 4)
    dumped = "".join(s.to_json() for s in exporter.get_finished_spans())
    for secret in (MASTER, "sim-key", "aiw-not-a-real-key"):
        assert secret not in dumped
    assert "Say something short" not in dumped  # no prompt content either


def test_tracing_off_wraps_nothing(simulator: SimulatorServer, tmp_path: Path) -> None:
    with running(simulator_config(simulator.url), tmp_path / "aiwire.db") as gw:
        obs = observability_of(gw.parts.gateway)
        assert obs is not None and obs.tracing is None
        handlers = gw.parts.gateway._routes.values()
        assert not any("Tracing.wrap" in getattr(h, "__qualname__", "") for h in handlers)
        for dep in gw.parts.gateway.router.deployments():
            assert not isinstance(dep.provider._http, tracing.TracedTransport)


def test_tracing_off_does_not_even_import_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from aiwire.config import Config
        from aiwire.server.build import build_gateway
        build_gateway(Config(), store_url="sqlite:///{tmp_path}/a.db", master_key=None)
        print("aiwire.observability.tracing" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_opentelemetry_tracing_is_refused_with_the_install_line() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry.trace"] = None  # as if aiwire[otel] were not installed
        from aiwire.config import Config
        from aiwire.errors import ConfigError
        from aiwire.observability import tracing
        assert not tracing.available()
        try:
            tracing.tracer_provider(Config(tracing={"enabled": True, "exporter": "console"}))
        except ConfigError as exc:
            print(exc.message)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "pip install 'aiwire[otel]'" in out.stdout


def test_the_console_exporter_is_built_from_config() -> None:
    from aiwire.config import Config

    provider, shutdown = tracing.tracer_provider(
        Config(tracing={"enabled": True, "exporter": "console", "service_name": "gw-1"})
    )
    assert isinstance(provider, TracerProvider) and shutdown is not None
    assert provider.resource.attributes["service.name"] == "gw-1"
    shutdown()
