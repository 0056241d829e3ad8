"""CORS: no headers at all by default; listed origins may call the model endpoints and the admin
API from a browser (preflight answered, answers readable); other origins get nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from aiwire.config import ServerConfig, simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.simulator import SimulatorServer

MASTER = "sk-aiwire-master-cors-test-0123456789"
APP = "https://app.example.com"
CHAT = {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hi"}]}


async def gateway_client(
    url: str, tmp_path: Path, origins: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    config = simulator_config(url, retries=0)
    config.server.cors_origins = origins
    parts = build_gateway(
        config, store_url=f"sqlite:///{tmp_path}/aiwire.db", master_key=Secret(MASTER)
    )
    await parts.gateway.startup()
    try:
        transport = httpx.ASGITransport(app=parts.gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client
    finally:
        await parts.gateway.shutdown()


@pytest.fixture
async def closed(simulator: SimulatorServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in gateway_client(simulator.url, tmp_path, []):
        yield client


@pytest.fixture
async def open_(simulator: SimulatorServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in gateway_client(simulator.url, tmp_path, [APP]):
        yield client


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
    }


def cors_headers(resp: httpx.Response) -> set[str]:
    return {h for h in resp.headers if h.startswith("access-control-")}


async def test_off_by_default(closed: httpx.AsyncClient) -> None:
    pre = await closed.options("/v1/chat/completions", headers=preflight(APP))
    assert pre.status_code == 405 and not cors_headers(pre)
    auth = {"authorization": f"Bearer {MASTER}", "origin": APP}
    for resp in (
        await closed.post("/v1/chat/completions", json=CHAT, headers=auth),
        await closed.get("/admin/keys", headers=auth),
    ):
        assert resp.status_code == 200 and not cors_headers(resp)


async def test_listed_origins_may_call_model_endpoints_and_the_admin_api(
    open_: httpx.AsyncClient,
) -> None:
    for path, method in (("/v1/chat/completions", "POST"), ("/admin/keys", "GET")):
        pre = await open_.options(path, headers=preflight(APP, method))
        assert pre.status_code == 200, path
        assert pre.headers["access-control-allow-origin"] == APP
        assert method in pre.headers["access-control-allow-methods"]
        assert "x-stainless-os" in pre.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in pre.headers  # bearer keys, no cookies
    auth = {"authorization": f"Bearer {MASTER}", "origin": APP}
    chat = await open_.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert chat.status_code == 200 and chat.headers["access-control-allow-origin"] == APP
    exposed = chat.headers["access-control-expose-headers"]
    assert "x-request-id" in exposed and "retry-after" in exposed
    keys = await open_.get("/admin/keys", headers=auth)
    assert keys.status_code == 200 and keys.headers["access-control-allow-origin"] == APP
    refused = await open_.get("/admin/keys", headers={"origin": APP})  # errors are readable too
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP


async def test_other_origins_get_nothing(open_: httpx.AsyncClient) -> None:
    evil = "https://evil.example"
    pre = await open_.options("/v1/chat/completions", headers=preflight(evil))
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    auth = {"authorization": f"Bearer {MASTER}", "origin": evil}
    resp = await open_.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert "access-control-allow-origin" not in resp.headers
    plain = await open_.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": auth["authorization"]}
    )
    assert plain.status_code == 200 and not cors_headers(plain)  # no Origin: not a CORS call


@pytest.mark.parametrize(
    "bad",
    [
        "https://app.example.com/",
        "app.example.com",
        "https://app.example.com/ui",
        "ftp://x",
        "https://u:p@app.example.com",
    ],
)
def test_origins_are_checked_when_the_config_loads(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        ServerConfig(cors_origins=[bad])


def test_good_origins_load() -> None:
    origins = ["https://app.example.com", "http://localhost:5173", "*"]
    assert ServerConfig(cors_origins=origins).cors_origins == origins
    assert ServerConfig().cors_origins == []
