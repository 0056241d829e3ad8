"""Helpers for the observability tests: a gateway in front of a simulator, a local webhook
receiver, and reading /metrics."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiwire.config import Config
from aiwire.observability.alerts import AlertsConfig
from aiwire.secrets import Secret
from aiwire.server.app import GatewaySettings
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer

MASTER = "sk-aiwire-master-observability-0123456789"


class WebhookReceiver:
    """A local HTTP endpoint that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()

        async def hook(request: Request) -> Response:
            body = orjson.loads(await request.body())
            with self._lock:
                self.received.append(body)
            return Response(status_code=204)

        self.server = BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    def alerts(self, **settings: Any) -> AlertsConfig:
        """An ``alerts:`` section sending to this receiver (on loopback: allow-listed)."""
        hook: dict[str, Any] = {"url": self.url, **settings.pop("hook", {})}
        return AlertsConfig(webhooks=[hook], allow_hosts=["127.0.0.1"], **settings)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.received if a.get("kind") == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.kinds(kind)) >= count:
                break
            time.sleep(0.02)
        return self.kinds(kind)


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with receiver.server:
        yield receiver


class Running:
    """A gateway served on a local port, with helpers for its admin API and model calls."""

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

    def chat(self, key: str, model: str = "sim-gpt", **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": "Say something short"}],
            "max_tokens": 16,
            **body,
        }
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json=payload,
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
        )

    def metrics(self, key: str = MASTER) -> str:
        r = httpx.get(f"{self.url}/metrics", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return r.text


@contextlib.contextmanager
def running(
    config: Config,
    db: Path,
    *,
    settings: GatewaySettings | None = None,
    prepare: Callable[[GatewayParts], None] | None = None,
    **build: Any,
) -> Iterator[Running]:
    parts = build_gateway(
        config,
        store_url=f"sqlite:///{db}",
        master_key=Secret(MASTER),
        settings=settings,
        auth_ttl=0,
        **build,
    )
    if prepare is not None:
        prepare(parts)
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield Running(server.url, parts)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a /metrics answer: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# The store tests' fixtures (a migrated, emptied database on SQLite and on PostgreSQL).
from tests.store.conftest import (  # noqa: E402, F401
    backend,
    database,
    db_url,
    pg_databases,
    pg_server,
    pg_session_url,
)
