"""Run the support-triage example end to end, offline:

    python examples/support-triage/run.py

It starts the built-in model simulator, a stand-in helpdesk on loopback and the aiwire gateway
with this flow mounted (the flow runs *inside* the gateway, as with ``aiwire serve``). The
helpdesk then sends each message of ``messages.jsonl`` as a signed webhook (plus a re-sent
duplicate and a forged one, which are dropped and refused); confident answers are sent back to
the helpdesk at once, the others wait in the review queue, where the agents' decisions from
``reviewer.yaml`` are taken through the gateway's review API. Every outcome is logged to
``out/flows/out/triage-log.jsonl``; the run writes only under ``out/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpdesk_standin import StandInHelpdesk  # noqa: E402

from aiwire.config import simulator_config  # noqa: E402
from aiwire.secrets import Secret  # noqa: E402
from aiwire.server.build import build_gateway  # noqa: E402
from aiwire.serving import BackgroundServer  # noqa: E402
from aiwire.simulator import SimulatorConfig, SimulatorServer  # noqa: E402

MASTER_KEY = secrets.token_urlsafe(24)  # this run only: the gateway lives as long as the script
HELPDESK_TOKEN = "demo-helpdesk-token-not-a-secret"
WEBHOOK_SECRET = "demo-webhook-secret-not-a-secret"


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the run, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def prepare(workdir: Path, helpdesk_url: str) -> Path:
    """A fresh copy of the flow in ``workdir``, pointed at the stand-in helpdesk."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "flows").mkdir(parents=True)
    flow = (HERE / "flow.yaml").read_text()
    flow = flow.replace('helpdesk_url: "http://127.0.0.1:8766"', f'helpdesk_url: "{helpdesk_url}"')
    (workdir / "flows" / "support-triage.yaml").write_text(flow)
    shutil.copytree(HERE / "schemas", workdir / "flows" / "schemas")
    return workdir / "flows"


def wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main(workdir: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    messages = [
        json.loads(line) for line in (HERE / "messages.jsonl").read_text().splitlines() if line
    ]
    decisions = yaml.safe_load((HERE / "reviewer.yaml").read_text())
    work = workdir or HERE / "out"
    with (
        scoped_env(HELPDESK_TOKEN=HELPDESK_TOKEN, HELPDESK_WEBHOOK_SECRET=WEBHOOK_SECRET),
        StandInHelpdesk(HELPDESK_TOKEN, WEBHOOK_SECRET) as helpdesk,
        SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim,
    ):
        flows_dir = prepare(work, helpdesk.url)
        with scoped_env(AIWIRE_FLOWS=str(flows_dir)):  # the flows `aiwire serve` mounts
            parts = build_gateway(
                simulator_config(sim.url),
                store_url=f"sqlite:///{work}/aiwire.db",
                master_key=Secret(MASTER_KEY),
            )
        with BackgroundServer(parts.gateway, lifespan="on") as gateway:
            admin = {"authorization": f"Bearer {MASTER_KEY}"}
            events = f"{gateway.url}/flows/support-triage/events"
            with httpx.Client(timeout=30) as http:
                accepted = 0
                for message in messages:
                    body, headers = helpdesk.event(message)
                    resp = http.post(events, content=body, headers=headers)
                    accepted += resp.status_code == 202
                body, headers = helpdesk.event(messages[2])  # the helpdesk re-sends an event
                duplicate = http.post(events, content=body, headers=headers).json()["status"]
                forged = http.post(
                    events, content=body.replace(b"crashes", b"works"), headers=headers
                ).status_code  # changed after signing
                console.print(
                    f"[bold]1. webhooks[/]: {accepted} accepted, the re-sent one was a "
                    f"{duplicate}, the forged one got HTTP {forged}"
                )

                def pending() -> list[dict[str, Any]]:
                    r = http.get(f"{gateway.url}/admin/review?flow=support-triage", headers=admin)
                    return list(r.json()["data"])

                wait("every message to be sent or queued",
                     lambda: len(helpdesk.replies) + len(pending()) == len(messages))  # fmt: skip
                queued = pending()
                console.print(
                    f"[bold]2. triage[/]: {len(helpdesk.replies)} replies sent automatically, "
                    f"{len(queued)} waiting for an agent"
                )
                for review in queued:
                    plan = decisions.get(
                        review["record"], {"decision": "approve", "reviewer": "agent.lee"}
                    )
                    action = {"approve": "approve", "edit": "edit", "reject": "reject"}[
                        plan["decision"]
                    ]
                    payload = {
                        "reviewer": plan["reviewer"],
                        "edits": plan.get("edits"),
                        "reason": plan.get("reason"),
                    }
                    r = http.post(
                        f"{gateway.url}/admin/review/{review['id']}/{action}",
                        json=payload,
                        headers=admin,
                    )
                    r.raise_for_status()
                    console.print(
                        f"   {review['record']}: {plan['decision']} by {plan['reviewer']}"
                    )
                log_path = flows_dir / "out" / "triage-log.jsonl"

                def logged() -> list[dict[str, Any]]:
                    if not log_path.exists():
                        return []
                    return [json.loads(x) for x in log_path.read_text().splitlines() if x]

                wait("every message to be logged", lambda: len(logged()) == len(messages))
                stats = http.get(
                    f"{gateway.url}/admin/review/stats?flow=support-triage", headers=admin
                ).json()
    log = sorted(logged(), key=lambda x: x["message_id"])
    table = Table(title="Triage log")
    for col in ("message", "category", "urgency", "sensitive", "route", "sent by"):
        table.add_column(col)
    for entry in log:
        table.add_row(
            entry["message_id"],
            entry["category"],
            entry["urgency"],
            str(entry["sensitive"]),
            entry["route"],
            entry["sent_by"],
        )
    console.print(table)
    console.print(f"[bold]3. helpdesk[/]: {len(helpdesk.replies)} replies received")
    s = stats["data"]["support-triage"]
    console.print(
        f"Review acceptance: {s['acceptance_rate']:.0%} of {s['human_decisions']} decisions"
    )
    return {
        "replies": list(helpdesk.replies),
        "log": log,
        "queued": [r["record"] for r in queued],
        "accepted": accepted,
        "duplicate": duplicate,
        "forged": forged,
        "stats": s,
    }


if __name__ == "__main__":
    main()
