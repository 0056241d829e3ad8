"""``aiwire doctor`` against the simulator: one line per finding, each problem with its fix, and
the exit code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiwire.cli import app
from aiwire.simulator import SimulatorServer
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore

runner = CliRunner()
GOOD_KEY = "sim-doctor-key-0123456789"


async def _store(url: str, *expiring_in_days: float) -> None:
    database = Database(url)
    await database.migrate()
    keys = KeyStore(database)
    for i, days in enumerate(expiring_in_days):
        expires = datetime.now(UTC) + timedelta(days=days)
        await keys.create(f"app-{i}", expires_at=expires, actor="test")
    await database.aclose()


def _lines(output: str) -> dict[str, str]:
    """Finding lines by subject (the text before the first ': ')."""
    out = {}
    for line in output.splitlines():
        level, _, rest = line.partition(" ")
        subject = rest.strip().split(": ", 1)[0]
        out[subject] = f"{level} {rest.strip()}"
    return out


def test_doctor_reports_every_problem_with_its_fix(
    simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path}/aiwire.db"
    asyncio.run(_store(store, 3, 60))
    monkeypatch.setenv("DOCTOR_GOOD_KEY", GOOD_KEY)
    monkeypatch.delenv("DOCTOR_UNSET_KEY", raising=False)
    config = tmp_path / "aiwire.yaml"
    config.write_text(
        f"""
providers:
  good: {{type: openai, base_url: "{simulator.url}/v1", api_key: "env:DOCTOR_GOOD_KEY"}}
  keyless: {{type: anthropic, base_url: "{simulator.url}"}}
  gone: {{type: openai, base_url: "http://127.0.0.1:1/v1", api_key: "env:DOCTOR_GOOD_KEY"}}
  missing: {{type: gemini, api_key: "env:DOCTOR_UNSET_KEY"}}
models:
  - {{name: chat, provider: good, model: gpt-4o-mini}}
  - {{name: legacy, provider: good, model: o1}}
  - {{name: soon, provider: good, model: gpt-5.1}}
  - {{name: claude, provider: keyless, model: claude-sonnet-4-5}}
  - {{name: far, provider: gone, model: gpt-4o-mini}}
  - {{name: gem, provider: missing, model: gemini-2.5-flash}}
catalog:
  o1: {{deprecation_date: 2020-01-01, replacement: o3}}
  gpt-5.1: {{deprecation_date: 2999-01-01}}
server:
  store: "{store}"
  redis: "redis://127.0.0.1:1/0"
"""
    )
    result = runner.invoke(app, ["doctor", "--config", str(config), "--timeout", "2"])
    assert result.exit_code == 1, result.output
    found = _lines(result.stdout)
    assert found["config"].startswith("OK")
    assert found["provider good (openai)"].startswith("OK")
    keyless = found["provider keyless (anthropic)"]
    assert keyless.startswith("ERROR") and "rejected the credential" in keyless
    assert "HTTP 401" in keyless and "fix: put a valid key in providers.keyless.api_key" in keyless
    gone = found["provider gone (openai)"]
    assert gone.startswith("ERROR") and "cannot reach 127.0.0.1:1" in gone and "fix:" in gone
    missing = found["provider missing (gemini)"]
    assert "DOCTOR_UNSET_KEY" in missing and "fix: export DOCTOR_UNSET_KEY=" in missing
    legacy = found["model legacy"]
    assert legacy.startswith("ERROR") and "retired on 2020-01-01" in legacy
    assert "fix: set models[1].model to o3" in legacy
    assert found["model soon"].startswith("WARN") and "retires 2999-01-01" in found["model soon"]
    assert found[f"store {store}"].startswith("OK")
    expiring = [line for subject, line in found.items() if subject.startswith("key ")]
    assert len(expiring) == 1 and "(app-0)" in expiring[0] and "expires in 3.0 days" in expiring[0]
    assert "expires_in" in expiring[0]
    redis = found["redis 127.0.0.1:1"]
    assert redis.startswith("ERROR") and "fix: start Redis or fix server.redis" in redis
    assert GOOD_KEY not in result.output
    # every problem line carries a fix
    for line in found.values():
        if line.startswith(("WARN", "ERROR")):
            assert "| fix: " in line, line


def test_a_healthy_installation_exits_zero(
    simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path}/aiwire.db"
    asyncio.run(_store(store, 90))
    monkeypatch.setenv("DOCTOR_GOOD_KEY", GOOD_KEY)
    config = tmp_path / "aiwire.yaml"
    config.write_text(
        f"""
providers:
  sim: {{type: openai, base_url: "{simulator.url}/v1", api_key: "env:DOCTOR_GOOD_KEY"}}
  claude: {{type: anthropic, base_url: "{simulator.url}", api_key: "env:DOCTOR_GOOD_KEY"}}
  gem: {{type: gemini, base_url: "{simulator.url}", api_key: "env:DOCTOR_GOOD_KEY"}}
models:
  - {{name: chat, provider: sim, model: gpt-4o-mini}}
  - {{name: claude, provider: claude, model: claude-sonnet-4-5}}
  - {{name: gem, provider: gem, model: gemini-2.5-flash}}
server: {{store: "{store}"}}
"""
    )
    result = runner.invoke(app, ["doctor", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    import orjson

    findings = orjson.loads(result.stdout)
    assert {f["level"] for f in findings} <= {"ok", "info"}
    assert sum(f["subject"].startswith("provider ") and f["level"] == "ok" for f in findings) == 3


def test_an_invalid_config_is_one_finding(tmp_path: Path) -> None:
    config = tmp_path / "aiwire.yaml"
    config.write_text("providers:\n  x: {type: openai, api_key: sk-literal-key-in-file}\n")
    result = runner.invoke(app, ["doctor", "-c", str(config)])
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("ERROR config:") and "literal key" in line and "| fix:" in line
    assert "sk-literal-key-in-file" not in result.output


def test_an_unreachable_store_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "aiwire.yaml"
    config.write_text('server: {store: "postgresql://aiwire@127.0.0.1:1/aiwire"}\n')
    result = runner.invoke(app, ["doctor", "-c", str(config), "--timeout", "2"])
    assert result.exit_code == 1
    found = _lines(result.stdout)
    store = found["store postgresql://aiwire@127.0.0.1:1/aiwire"]
    assert store.startswith("ERROR") and "unreachable" in store and "fix:" in store


def test_a_store_not_created_yet_is_reported_and_not_created(tmp_path: Path) -> None:
    config = tmp_path / "aiwire.yaml"
    config.write_text(f'server: {{store: "sqlite:///{tmp_path}/state/aiwire.db"}}\n')
    result = runner.invoke(app, ["doctor", "-c", str(config)])
    assert result.exit_code == 1
    assert "no database file yet" in result.stdout
    assert not (tmp_path / "state").exists()
