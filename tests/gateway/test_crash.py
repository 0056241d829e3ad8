"""An unexpected exception inside the gateway still answers in the caller's protocol: a 500 with
the protocol's error body, a generic message, never the exception's text."""

from __future__ import annotations

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
from aiwire.simulator import SimulatorServer

SECRET_TEXT = "db password is hunter2"


async def broken(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError(SECRET_TEXT)


@pytest.fixture
def gw(simulator: SimulatorServer, tmp_path: Path) -> Iterator[tuple[str, GatewayParts]]:
    parts = build_gateway(
        simulator_config(simulator.url),
        store_url=f"sqlite:///{tmp_path / 'a.db'}",
        master_key=Secret(MASTER),
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield server.url, parts


def test_an_unexpected_error_is_a_protocol_shaped_500(
    gw: tuple[str, GatewayParts], caplog: pytest.LogCaptureFixture
) -> None:
    url, parts = gw
    routes = parts.gateway._routes
    routes[("POST", "/v1/chat/completions")] = broken
    routes[("POST", "/v1/messages")] = broken
    auth = {"authorization": f"Bearer {MASTER}"}
    openai = httpx.post(f"{url}/v1/chat/completions", json={}, headers=auth)
    assert openai.status_code == 500
    assert openai.json()["error"]["type"] == "api_error"
    anthropic = httpx.post(f"{url}/v1/messages", json={}, headers=auth)
    assert anthropic.status_code == 500
    body = anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    for r in (openai, anthropic):
        assert SECRET_TEXT not in r.text and r.headers["content-type"] == "application/json"
    # the traceback is in the server's log, for whoever runs it
    assert any(SECRET_TEXT in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)
