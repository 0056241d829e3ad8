"""A running gateway (uvicorn, background thread) in front of the simulator, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer

MASTER = "sk-aiwire-master-test-0123456789"


class Gateway:
    def __init__(self, server: BackgroundServer, store_url: str) -> None:
        self.server = server
        self.url = server.url
        self.store_url = store_url


@pytest.fixture(scope="module")
def gateway(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    db_file: Path = tmp_path_factory.mktemp("gw") / "aiwire.db"
    store_url = f"sqlite:///{db_file}"
    parts = build_gateway(
        simulator_config(simulator.url, retries=1, backoff_base=0.01),
        store_url=store_url,
        master_key=Secret(MASTER),
        auth_ttl=0.5,
    )
    server = BackgroundServer(parts.gateway, lifespan="on")
    with server:
        yield Gateway(server, store_url)
