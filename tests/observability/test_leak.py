"""No secret anywhere: traffic with known provider keys, virtual keys and the master key
(successes, auth failures, provider errors, refusals), then every captured log line, every
table of the SQLite store (and its raw file), /metrics, every alert and every error body is
searched for each secret."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.observability.conftest import MASTER, running, webhook_receiver

from aiwire.config import Config, DeploymentConfig, ProviderConfig
from aiwire.observability.alerts import AlertsConfig
from aiwire.observability.logs import JsonFormatter
from aiwire.server.app import GatewaySettings
from aiwire.simulator import SimulatorConfig, SimulatorServer

#: Key-shaped (caught by pattern) and not key-shaped (caught only as a known value).
OPENAI_KEY = "sk-proj-LEAKCANARYopenai0123456789abcdef"
ANTHROPIC_KEY = "anthropic-CANARY-9c1b7e55d2a04f3e"
GEMINI_KEY = "gemini-CANARY-31f0c2aa7d66"


class _Lines(logging.Handler):
    """Every record of the run, formatted both ways (text with tracebacks, and JSON)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.text = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.text.format(record))
        self.lines.append(self.json.format(record))


def _config(url: str, hook: AlertsConfig) -> Config:
    providers = {
        "sim-openai": ProviderConfig(
            type="openai", base_url=f"{url}/v1", api_key="env:LEAK_OPENAI"
        ),
        "sim-anthropic": ProviderConfig(
            type="anthropic", base_url=url, api_key="env:LEAK_ANTHROPIC"
        ),
        "sim-gemini": ProviderConfig(
            type="gemini",
            base_url=url,
            api_key="env:LEAK_GEMINI",
            headers={"x-aiwire-sim-fault": "401"},  # this provider "rotated" its key
        ),
    }
    models = [
        DeploymentConfig(name="gpt", provider="sim-openai", model="gpt-4o-mini"),
        DeploymentConfig(name="claude", provider="sim-anthropic", model="claude-sonnet-4-5"),
        DeploymentConfig(name="gemini", provider="sim-gemini", model="gemini-2.5-flash"),
        DeploymentConfig(name="flaky", provider="sim-openai", model="flaky-model"),
    ]
    return Config.model_validate(
        {
            "providers": providers,
            "models": models,
            "router": {"retries": 1, "backoff_base": 0.01},
            "alerts": hook,
            "logging": {"level": "debug"},
        }
    )


def test_no_secret_reaches_logs_store_metrics_alerts_or_error_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAK_OPENAI", OPENAI_KEY)
    monkeypatch.setenv("LEAK_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("LEAK_GEMINI", GEMINI_KEY)
    secrets = [MASTER, OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY]
    outputs: list[str] = []
    capture = _Lines()
    root = logging.getLogger()
    root.addHandler(capture)
    level = root.level
    root.setLevel(logging.DEBUG)
    db = tmp_path / "aiwire.db"
    try:
        faults = {"flaky-model": "500"}
        with SimulatorServer(SimulatorConfig(faults=faults)) as sim, webhook_receiver() as hook:
            config = _config(sim.url, hook.alerts())
            with running(config, db, settings=GatewaySettings(store_content=True)) as gw:
                secrets += _traffic(gw.url, gw, outputs)
                hook.wait_for("provider_credential", 1)
                outputs.append(gw.metrics())
            outputs += [str(a) for a in hook.received]
            assert hook.kinds("provider_credential"), "the 401 traffic should have alerted"
        # a control: a secret logged on purpose is captured, redacted
        logging.getLogger("aiwire.control").warning("control %s", MASTER)
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
        logging.getLogger("aiwire").setLevel(logging.NOTSET)  # the config set it to debug
    assert len(capture.lines) > 50  # the run did log (at debug level)
    assert "aiwire.control WARNING control [REDACTED]" in capture.lines
    stores = _store_dump(db)
    haystacks = {
        "log lines": "\n".join(capture.lines),
        "store tables": stores,
        "store files": _raw_files(db),
        "metrics, alerts and error bodies": "\n".join(outputs),
    }
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}…) appears in the {where}"
    # and the scan would have found them: the keys' public prefixes are there
    assert "aiw-" in stores


def _traffic(url: str, gw: Any, outputs: list[str]) -> list[str]:
    """Drive every kind of request; returns the virtual-key secrets it created."""
    good_id, good = gw.key(name="leak-app", options={"log_content": True})
    revoked_id, revoked = gw.key(name="revoked-app")
    _, limited = gw.key(name="limited-app", rpm=1)
    assert gw.admin.post(f"/keys/{revoked_id}/revoke").status_code == 200
    rotated = gw.admin.post(f"/keys/{good_id}/rotate", json={"grace": "1h"})
    successor = rotated.json()["key"]
    outputs.append(rotated.text.replace(successor, ""))  # the one place a secret may appear
    bogus = "aiw-" + "Z" * 40

    def call(path: str, key: str | None, body: dict[str, Any], **headers: str) -> httpx.Response:
        hdrs = dict(headers)
        if key is not None:
            hdrs.setdefault("authorization", f"Bearer {key}")
        r = httpx.post(f"{url}{path}", json=body, headers=hdrs, timeout=20)
        if r.status_code != 200:
            outputs.append(f"{r.status_code} {r.headers} {r.text}")
        return r

    chat = {"model": "gpt", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert call("/v1/chat/completions", good, chat).status_code == 200
    assert call("/v1/chat/completions", good, {**chat, "stream": True}).status_code == 200
    assert call("/v1/chat/completions", successor, {**chat, "model": "claude"}).status_code == 200
    anthropic = {
        "model": "claude",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert (
        call(
            "/v1/messages",
            None,
            anthropic,
            **{"x-api-key": good, "anthropic-version": "2023-06-01"},
        ).status_code
        == 200
    )
    # auth failures: revoked, unknown, a provider key presented as a client key, none, master
    # key on the wrong header form
    for key in (revoked, bogus, OPENAI_KEY, ANTHROPIC_KEY):
        assert call("/v1/chat/completions", key, chat).status_code == 401
    assert call("/v1/chat/completions", None, chat).status_code == 401
    assert (
        call("/v1/chat/completions", None, chat, authorization=f"Basic {MASTER}").status_code == 401
    )
    # provider errors: a 401 from the provider (its key "rotated"), 500s with a retry
    assert call("/v1/chat/completions", good, {**chat, "model": "gemini"}).status_code != 200
    assert call("/v1/chat/completions", good, {**chat, "model": "flaky"}).status_code >= 500
    # refusals: unknown model, a rate limit, a malformed body, a scope the key lacks
    assert call("/v1/chat/completions", good, {**chat, "model": "nope"}).status_code == 404
    assert call("/v1/chat/completions", limited, chat).status_code == 200
    assert call("/v1/chat/completions", limited, chat).status_code == 429
    assert call("/v1/chat/completions", good, {"model": "gpt"}).status_code == 400
    # the master key and virtual keys at the admin API and /metrics
    for key in (good, bogus):
        r = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"})
        outputs.append(f"{r.status_code} {r.text}")
        r = httpx.get(f"{url}/admin/keys", headers={"authorization": f"Bearer {key}"})
        outputs.append(f"{r.status_code} {r.text}")
    outputs.append(
        httpx.get(f"{url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"}).text
    )
    asyncio.run(asyncio.sleep(0.3))  # the alert's delivery, the log writer
    return [good, revoked, limited, successor, bogus]


def _store_dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"request_log", "api_keys", "audit_log"} <= set(tables)
        return "\n".join(
            f"{table}: {row!r}"
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
        )


def _raw_files(db: Path) -> str:
    data = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    return data.decode("latin-1")
