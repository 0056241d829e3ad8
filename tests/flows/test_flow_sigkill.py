"""A flow run killed with SIGKILL mid-way, then run again: the destination has each record
exactly once — the HTTP API (which honours Idempotency-Key) and a JSONL file (which does not
de-duplicate anything, so only the runner's delivery ledger keeps it exact)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from tests.flows.flow_support import Destination, read_jsonl, write_flow

RECORDS = 40


class SlowDestination(Destination):
    """The stand-in CRM, taking 40 ms per request, so a run is killed with work in flight."""

    async def _handle(self, request: Request) -> JSONResponse:  # type: ignore[override]
        await asyncio.sleep(0.04)
        return await super()._handle(request)  # type: ignore[return-value]


def _run(tmp_path: Path, flow: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIWIRE_LOG_LEVEL": "ERROR"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiwire.cli",
            "flow",
            "run",
            str(flow),
            "--simulator",
            "--store",
            f"sqlite:///{tmp_path}/state.db",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_run_then_rerun_delivers_each_record_exactly_once(tmp_path: Path) -> None:
    rows = ["lead_id,name,company"] + [f"L{i:03d},Person {i},Company {i}" for i in range(RECORDS)]
    (tmp_path / "leads.csv").write_text("\n".join(rows) + "\n")
    with SlowDestination() as crm:
        flow = write_flow(
            tmp_path,
            f"""\
name: killme
source: {{kind: csv, path: leads.csv}}
key: lead_id
concurrency: 4
allow_hosts: [127.0.0.1]
steps:
  - {{kind: prompt, template: "Write a short follow-up to {{{{ name }}}} at {{{{ company }}}}."}}
  - kind: model
    id: draft
    model: sim-gpt
    schema:
      type: object
      required: [subject, body]
      properties: {{subject: {{type: string}}, body: {{type: string}}}}
sinks:
  - kind: http
    url: "{crm.url}/api/activities"
    json: {{lead_id: "{{{{ lead_id }}}}", subject: "{{{{ draft.subject }}}}"}}
  - {{kind: jsonl, path: out/activities.jsonl, fields: [lead_id, draft.subject]}}
""",
        )
        proc = _run(tmp_path, flow)
        deadline = time.monotonic() + 60
        while len(crm.stored) < 8:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        killed_at = len(crm.stored)
        assert 8 <= killed_at < RECORDS  # really mid-way

        rerun = _run(tmp_path, flow)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()
        summary = orjson.loads(out)
        assert summary["status"] == "succeeded"

        # The CRM: each lead exactly once.
        stored = [body["lead_id"] for body in crm.bodies("/api/activities")]
        assert Counter(stored) == Counter(f"L{i:03d}" for i in range(RECORDS))
        # Anything sent twice (in flight at the kill) carried the same Idempotency-Key.
        per_key: dict[str, set[str]] = {}
        for r in crm.received:
            per_key.setdefault(r["json"]["lead_id"], set()).add(r["headers"]["idempotency-key"])
        assert all(len(keys) == 1 for keys in per_key.values())

    # The JSONL file: no destination-side de-duplication, still each lead exactly once.
    lines = read_jsonl(tmp_path / "out/activities.jsonl")
    assert Counter(line["lead_id"] for line in lines) == Counter(
        f"L{i:03d}" for i in range(RECORDS)
    )
    assert all(line["draft"]["subject"] for line in lines)
