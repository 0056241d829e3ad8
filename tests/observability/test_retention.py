"""Prompt content in the request log: only for keys with ``log_content: true``, purged after
each key's ``retention_days`` (by the background job and by ``aiwire logs purge``), audited."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from tests.observability.conftest import MASTER, running, wait_until
from typer.testing import CliRunner

from aiwire.cli import app
from aiwire.config import simulator_config
from aiwire.observability.install import observability_of
from aiwire.observability.retention import PurgeJob, purge_content
from aiwire.server.app import GatewaySettings
from aiwire.simulator import SimulatorServer
from aiwire.store.db import Database

runner = CliRunner()


def _content_by_key(db: Path) -> dict[str | None, list[str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key_id, prompt FROM request_log ORDER BY id").fetchall()
    out: dict[str | None, list[str | None]] = {}
    for key_id, prompt in rows:
        out.setdefault(key_id, []).append(prompt)
    return out


def test_content_is_kept_only_for_opted_in_keys_and_purged_after_their_retention(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "aiwire.db"
    settings = GatewaySettings(store_content=True)
    with running(simulator_config(simulator.url), db, settings=settings) as gw:
        short, short_key = gw.key(name="short", options={"log_content": True, "retention_days": 1})
        default, default_key = gw.key(name="default", options={"log_content": True})
        plain, plain_key = gw.key(name="plain")
        off, off_key = gw.key(name="off", options={"log_content": False})
        obs = observability_of(gw.parts.gateway)
        assert obs is not None
        # The gateway reads the option from the key itself: even a key's first request counts.
        assert gw.chat(short_key).status_code == 200
        assert gw.chat(default_key).status_code == 200
        assert wait_until(
            lambda: None not in (obs.directory.get(short), obs.directory.get(default))
        )
        for key in (short_key, default_key, plain_key, off_key, MASTER):
            assert (
                gw.chat(
                    key, messages=[{"role": "user", "content": f"hello from {key[:8]}"}]
                ).status_code
                == 200
            )
    stored = _content_by_key(db)
    assert stored[short][0] is not None and stored[short][1] is not None
    assert "hello from" in (stored[short][1] or "")
    assert stored[default][1] is not None
    assert stored[plain] == [None] and stored[off] == [None] and stored[None] == [None]

    async def purge(days_ahead: int) -> int:
        database = Database(f"sqlite:///{db}")
        try:
            report = await purge_content(
                database,
                default_days=30,
                actor="test",
                now=datetime.now(UTC) + timedelta(days=days_ahead),
            )
        finally:
            await database.aclose()
        return report.rows

    assert asyncio.run(purge(0)) == 0  # nothing is old enough
    assert asyncio.run(purge(2)) == 2  # the "short" key's retention (1 day) has passed
    stored = _content_by_key(db)
    assert stored[short] == [None, None] and stored[default][1] is not None
    assert asyncio.run(purge(31)) == 2  # the default retention (30 days) too
    assert _content_by_key(db)[default] == [None, None]
    with sqlite3.connect(db) as conn:
        purges = conn.execute(
            "SELECT actor, after FROM audit_log WHERE action = 'logs.purge'"
        ).fetchall()
        rows = conn.execute("SELECT COUNT(*) FROM request_log").fetchone()[0]
    assert [(a, orjson.loads(after)["rows"]) for a, after in purges] == [("test", 2), ("test", 2)]
    assert rows == 7  # the rows stay, for usage reports


def test_logs_purge_from_the_command_line(simulator: SimulatorServer, tmp_path: Path) -> None:
    db = tmp_path / "aiwire.db"
    with running(
        simulator_config(simulator.url), db, settings=GatewaySettings(store_content=True)
    ) as gw:
        key_id, key = gw.key(name="kept", options={"log_content": True})
        obs = observability_of(gw.parts.gateway)
        assert obs is not None
        for _ in range(3):
            assert gw.chat(key).status_code == 200
    store = f"sqlite:///{db}"
    kept = sum(p is not None for p in _content_by_key(db)[key_id])
    assert kept == 3
    dry = runner.invoke(app, ["logs", "purge", "--store", store, "--days", "0", "--dry-run"])
    assert dry.exit_code == 0 and f"would clear the content of {kept} " in dry.output
    assert sum(p is not None for p in _content_by_key(db)[key_id]) == kept
    done = runner.invoke(app, ["logs", "purge", "--store", store, "--days", "0"])
    assert done.exit_code == 0 and f"cleared the content of {kept} " in done.output
    assert all(p is None for p in _content_by_key(db)[key_id])
    audit = orjson.loads(
        runner.invoke(
            app, ["audit", "list", "--store", store, "--json", "--action", "logs."]
        ).output
    )
    assert len(audit) == 1 and audit[0]["actor"].startswith("cli:")


async def test_the_background_job_survives_an_unreachable_store() -> None:
    job = PurgeJob(Database("postgresql://nobody@127.0.0.1:1/none"), default_days=1, interval=60)
    assert await job.run_once() is None
    await job.database.aclose()


async def test_the_background_job_runs_after_its_first_delay_then_every_interval(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite:///{tmp_path}/aiwire.db")
    await database.migrate()
    job = PurgeJob(database, default_days=30, interval=0.05, first_delay=0.1)
    await job.start()
    assert job.last is None
    for _ in range(100):
        await asyncio.sleep(0.02)
        if job.last is not None:
            break
    await job.aclose()
    await database.aclose()
    assert job.last is not None and job.last.rows == 0
