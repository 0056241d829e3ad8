"""Two ``aiwire worker`` processes on one PostgreSQL store share a batch's lines (row locks) and
one deployment's pacing (Redis): no line runs twice, and together they stay under the rate limit
the provider enforces."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.batch.conftest import chat_lines, jsonl, read_jsonl
from tests.gateway.test_limits_cluster import services_or_skip
from tests.limits.conftest import REDIS_URL
from tests.store.conftest import _admin, _database_url

from aiwire.batch import lines
from aiwire.batch.records import BatchRecord
from aiwire.batch.store import BatchStore, Draft
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.simulator.config import ModelLimit
from aiwire.store import Database

pytestmark = pytest.mark.services

LINES = 130
RPM = 120  # the simulator's limit and the deployment's: 117 at once, then ~2 a second


@pytest.fixture
def pg_url() -> Iterator[str]:
    services_or_skip()
    name = f"aiwire_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _database_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _create(url: str, data: bytes) -> str:
    db = Database(url)
    try:
        await db.migrate()
        parsed = lines.parse_jsonl(data, endpoint=lines.CHAT, known_model=lambda m: True)
        store = BatchStore(db)
        source = await store.add_file(key_id=None, purpose="batch", filename="in", content=data)
        draft = Draft(
            endpoint=lines.CHAT,
            input_file_id=source.id,
            completion_window="1h",
            window_seconds=3600,
            model="sim-claude",
        )
        return (await store.create(draft, parsed.lines)).id
    finally:
        await db.aclose()


async def _wait(url: str, batch_id: str, timeout: float) -> tuple[BatchRecord, bytes, list[str]]:
    db = Database(url)
    store = BatchStore(db)
    try:
        deadline = time.monotonic() + timeout
        while not (record := await store.get(batch_id)).terminal:
            assert time.monotonic() < deadline, record.counts
            await asyncio.sleep(0.1)
        assert record.output_file_id is not None
        output = await store.file_content(record.output_file_id) or b""
        async with db.engine.connect() as conn:
            from sqlalchemy import text

            owners = [
                r[0]
                for r in (
                    await conn.execute(
                        text("SELECT owner FROM batch_lines WHERE batch_id = :b"), {"b": batch_id}
                    )
                ).all()
            ]
            logged = (
                await conn.execute(
                    text("SELECT count(*) FROM request_log WHERE request_id LIKE :p"),
                    {"p": f"{batch_id}:%"},
                )
            ).scalar()
        assert logged == LINES
        return record, output, owners
    finally:
        await db.aclose()


def test_two_workers_share_one_batch_without_running_a_line_twice(
    pg_url: str, tmp_path: Path
) -> None:
    limits = {"claude-sonnet-4-5": ModelLimit(rpm=RPM)}
    with SimulatorServer(SimulatorConfig(latency_ms=30, limits=limits)) as sim:
        config = tmp_path / "aiwire.yaml"
        config.write_text(
            f"""
providers:
  claude: {{type: anthropic, base_url: "{sim.url}", api_key: env:AIWIRE_TEST_SIM_KEY}}
models:
  - {{name: sim-claude, provider: claude, model: claude-sonnet-4-5, rpm: {RPM}}}
router: {{retries: 0}}
server:
  store: "{pg_url}"
  redis: "{REDIS_URL}"
"""
        )
        env = {**os.environ, "AIWIRE_TEST_SIM_KEY": "sim-key"}
        command = [sys.executable, "-m", "aiwire.cli", "worker", "-c", str(config)]
        workers = [
            subprocess.Popen(
                [*command, "-j", "8", "--poll", "0.2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        try:
            for worker in workers:  # both are up before the batch exists
                assert worker.stderr is not None
                assert b"batch worker" in worker.stderr.readline()
            started = time.monotonic()
            batch_id = asyncio.run(_create(pg_url, jsonl(chat_lines(LINES, "sim-claude"))))
            record, output, owners = asyncio.run(_wait(pg_url, batch_id, timeout=60))
            elapsed = time.monotonic() - started
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(20) for worker in workers]
        counts = sim.app.sim.limiter.counts
        admitted = counts[("claude-sonnet-4-5", "admitted")]
        refused = counts[("claude-sonnet-4-5", "refused")]

    assert codes == [0, 0]
    assert record.status == "completed" and record.counts.succeeded == LINES
    ids = Counter(line["custom_id"] for line in read_jsonl(output))
    assert set(ids) == {f"req-{i}" for i in range(LINES)} and max(ids.values()) == 1
    # every line ran once, on one worker or the other, and both did some
    assert admitted == LINES
    by_owner = Counter(owners)
    assert len(by_owner) == 2, by_owner
    # the pacing was shared: together they never went over the provider's limit ...
    assert refused == 0
    # ... and that limit, not the workers, set the pace (117 at once, then ~2 a second)
    assert elapsed >= (LINES - RPM) * 60 / RPM
