"""Flows in a long-running process: scheduled runs, ``aiwire flow serve``, and secrets that never
reach a log line, an error, a dead letter or any database row."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text
from tests.flows.flow_support import (
    Destination,
    ScriptedModel,
    eventually,
    read_jsonl,
    scripted_router,
    write_flow,
)

from aiwire.flows.loader import load_flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.service import FlowService
from aiwire.flows.store import FlowStore
from aiwire.flows.webhook import sign


async def test_scheduled_flow_runs_at_its_cron_time(store: FlowStore, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a"}\n')
    flow = load_flow(
        write_flow(
            tmp_path,
            "name: nightly\nsource: {kind: jsonl, path: in.jsonl}\nkey: id\n"
            'schedule: "0 2 * * *"\ntimezone: Europe/Berlin\n'
            "sinks: [{kind: jsonl, path: out.jsonl}]\n",
        )
    )
    # A clock 0.3 s before 02:00 in Berlin: the run is due almost at once.
    started = datetime.now(UTC)
    due = datetime(2025, 1, 15, 1, 0, tzinfo=UTC)  # 02:00 Berlin (winter)
    shift = due - timedelta(seconds=0.3) - started

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    # Two workers (or replicas) on one store: the due time is run once.
    services = [
        FlowService(
            store,
            FlowRunner(store, scripted_router(ScriptedModel())),
            {"nightly": flow},
            clock=clock,
        )
        for _ in range(2)
    ]
    for service in services:
        await service.start()
    try:
        runs = await eventually(lambda: _scheduled(store))
        await asyncio.sleep(0.5)
    finally:
        for service in services:
            await service.stop()
    runs = await _scheduled(store)
    assert len(runs) == 1 and runs[0].status == "succeeded"
    assert read_jsonl(tmp_path / "out.jsonl") == [{"id": "a"}]


async def _scheduled(store: FlowStore) -> list:  # type: ignore[type-arg]
    return [r for r in await store.runs("nightly") if r.trigger == "schedule" and r.finished_at]


async def test_secrets_never_reach_logs_errors_or_rows(
    store: FlowStore, tmp_path: Path, destination: Destination, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    secret = "crm-secret-value-5f1e2d3c4b5a"
    monkeypatch.setenv("CRM_TOKEN", secret)
    destination.status = 401  # the CRM refuses the token: an auth failure with the header in play
    (tmp_path / "in.jsonl").write_text('{"id": "a", "name": "Ada"}\n')
    path = write_flow(
        tmp_path,
        f"""\
name: secretive
source: {{kind: jsonl, path: in.jsonl}}
key: id
secrets: {{CRM_TOKEN: env:CRM_TOKEN}}
allow_hosts: [127.0.0.1]
steps: [{{kind: prompt, template: "Hi {{{{ name }}}}"}}, {{kind: model, model: m}}]
sinks:
  - kind: http
    url: "{destination.url}/api/x"
    headers: {{Authorization: "Bearer {{{{ secrets.CRM_TOKEN }}}}"}}
""",
    )

    def leaky(request: object) -> Exception:
        from aiwire import errors

        return errors.ServerError(f"upstream said: token {secret} looks odd")  # a careless upstream

    caplog.set_level(logging.DEBUG)
    runner = FlowRunner(store, scripted_router(ScriptedModel(["fine", leaky])))
    summary = await runner.run(load_flow(path))
    await runner.aclose()
    assert destination.received[0]["headers"]["authorization"] == f"Bearer {secret}"  # it was sent
    (dead,) = await store.dead_letters("secretive")
    assert dead.error_class == "auth" and "refused the credentials" in dead.error
    assert secret not in caplog.text
    assert secret not in (summary.error or "") and secret not in dead.error
    dump = []
    async with store.db.engine.connect() as conn:
        for table in (
            "flow_records",
            "flow_steps",
            "flow_deliveries",
            "flow_dead_letters",
            "flow_runs",
            "flow_definitions",
            "audit_log",
        ):
            dump += [
                str(tuple(row))
                for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            ]
    assert dump and not any(secret in row for row in dump)
    # a secret echoed by an upstream error is scrubbed from what is stored
    (tmp_path / "in.jsonl").write_text('{"id": "b", "name": "Bo"}\n')
    runner = FlowRunner(store, scripted_router(ScriptedModel(default=leaky)), sleep=_no_sleep)
    flow = load_flow(path)
    flow.secrets()
    await runner.run(flow)
    await runner.aclose()
    errors_stored = [d.error for d in await store.dead_letters("secretive")]
    assert any("upstream said" in e for e in errors_stored)
    assert not any(secret in e for e in errors_stored)


async def _no_sleep(seconds: float) -> None:
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flow_serve_command(tmp_path: Path) -> None:
    """``aiwire flow serve``: webhook events and the review API, without the gateway."""
    flows = tmp_path / "flows"
    write_flow(
        flows,
        "name: inbox\nsource: {kind: webhook, secret: env:HOOK}\nkey: id\n"
        "steps: [{kind: review, editable: [text]}]\n"
        "sinks: [{kind: jsonl, path: out.jsonl}]\n",
        "inbox.yaml",
    )
    port = _free_port()
    env = {**os.environ, "HOOK": "hook-secret", "AIWIRE_MASTER_KEY": "sk-serve-test-master-0123"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiwire.cli",
            "flow",
            "serve",
            "--flows",
            str(flows),
            "--port",
            str(port),
            "--store",
            f"sqlite:///{tmp_path}/state.db",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                httpx.get(f"{url}/admin/review", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        body = orjson.dumps({"id": "e1", "text": "hello"})
        ts = int(time.time())
        refused = httpx.post(
            f"{url}/flows/inbox/events",
            content=body,
            headers={"x-timestamp": str(ts), "x-signature": "sha256=00"},
        )
        assert refused.status_code == 401
        ok = httpx.post(
            f"{url}/flows/inbox/events",
            content=body,
            headers={"x-timestamp": str(ts), "x-signature": sign("hook-secret", body, ts)},
        )
        assert ok.status_code == 202
        master = {"authorization": "Bearer sk-serve-test-master-0123"}
        assert httpx.get(f"{url}/admin/review").status_code == 401

        def waiting() -> dict:  # type: ignore[type-arg]
            found = httpx.get(f"{url}/admin/review?flow=inbox", headers=master).json()
            return found if found["total"] == 1 else {}

        found = asyncio.run(eventually(waiting))
        review_id = found["data"][0]["id"]
        edited = httpx.post(
            f"{url}/admin/review/{review_id}/edit",
            json={"edits": {"text": "hello!"}},
            headers=master,
        )
        assert edited.status_code == 200
        asyncio.run(eventually(lambda: read_jsonl(flows / "out.jsonl")))
        assert read_jsonl(flows / "out.jsonl")[0]["text"] == "hello!"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
