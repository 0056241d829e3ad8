"""Shared pieces of the breadth tests: audio files, a scripted provider, and a gateway in front of
the simulator with the extra models these tests use (a per-minute Whisper model, a rollout)."""

from __future__ import annotations

import contextlib
import io
import math
import sqlite3
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiwire.catalog import CatalogConfig
from aiwire.config import Config, DeploymentConfig, simulator_config
from aiwire.providers import registry
from aiwire.providers.base import Provider
from aiwire.secrets import Secret
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer

MASTER = "test-master-breadth-0123456789"

#: whisper-1 is priced per minute only; the shipped catalog leaves it to config (see models.yaml).
WHISPER_PRICE = {
    "whisper-1": {
        "provider": "openai",
        "mode": "transcription",
        "input_per_1m": 0.0,
        "output_per_1m": 0.0,
        "per_minute": 0.006,
        "context_window": 224,
        "max_output_tokens": 224,
    }
}


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of ``seconds`` of a quiet tone."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return buf.getvalue()


def breadth_config(sim_url: str, **extra: Any) -> Config:
    base = simulator_config(sim_url, retries=1, backoff_base=0.01)
    models = [
        *base.models,
        DeploymentConfig(name="sim-whisper", provider="sim-openai", model="whisper-1"),
        *extra.pop("models", []),
    ]
    return Config(
        providers={**base.providers, **extra.pop("providers", {})},
        models=models,
        router=base.router,
        catalog=CatalogConfig({**WHISPER_PRICE, **extra.pop("catalog", {})}),
        **extra,
    )


class Gateway:
    def __init__(self, server: BackgroundServer, parts: GatewayParts, db: Path) -> None:
        self.server = server
        self.parts = parts
        self.url = server.url
        self.db = db

    def key(self, **body: Any) -> str:
        """A new virtual key (``models``, ``endpoints``, ... as the admin API takes them)."""
        r = httpx.post(
            f"{self.url}/admin/keys",
            json={"name": "breadth-test", **body},
            headers={"authorization": f"Bearer {MASTER}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def row(self, request_id: str, columns: str) -> tuple[Any, ...]:
        """The request log row of ``request_id`` (written in the background: waits for it)."""
        for _ in range(100):
            with sqlite3.connect(self.db) as con:
                row: tuple[Any, ...] | None = con.execute(
                    f"select {columns} from request_log where request_id = ?", (request_id,)
                ).fetchone()
            if row is not None:
                return row
            time.sleep(0.05)
        raise AssertionError(f"no log row for {request_id}")


@pytest.fixture(scope="module")
def gateway(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    db: Path = tmp_path_factory.mktemp("breadth") / "aiwire.db"
    parts = build_gateway(
        breadth_config(simulator.url),
        store_url=f"sqlite:///{db}",
        master_key=Secret(MASTER),
        auth_ttl=0.5,
    )
    server = BackgroundServer(parts.gateway, lifespan="on")
    with server:
        yield Gateway(server, parts, db)


@contextlib.contextmanager
def registered(*classes: type[Provider]) -> Iterator[None]:
    """Provider types available in config for a while (the registry is global: tests must not
    leave theirs behind, or the capability matrix would list them)."""
    saved = dict(registry._registered)
    for cls in classes:
        registry.register(cls)
    try:
        yield
    finally:
        registry._registered.clear()
        registry._registered.update(saved)


@pytest.fixture(scope="module")
def local_type() -> Iterator[None]:
    """``type: local`` in config (it is not in the built-in registry yet: see the H11 report)."""
    from aiwire.providers.local import LocalEmbeddingProvider

    with registered(LocalEmbeddingProvider):
        yield


def local_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        from aiwire.providers.local import model_path

        model_path()
    except Exception:
        return False
    return True


def require_local() -> None:
    """The local extra is in the test extra, so CI has it: fail there, skip on a bare machine."""
    if local_available():
        return
    import os

    message = 'the local extra is not installed: pip install -e ".[local]"'
    if os.environ.get("AIWIRE_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
