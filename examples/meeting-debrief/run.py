"""Run the meeting-debrief example end to end, offline:

    python examples/meeting-debrief/run.py

It starts the built-in model simulator and a stand-in CRM on loopback, runs the flow over
``meetings.jsonl`` (the long meeting is summarised in parts first), and prints the notes the CRM
received and the email drafts written to ``out/out/drafts/``. The run writes only under ``out/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crm_notes_standin import StandInNotesCRM  # noqa: E402

from aiwire.config import simulator_config  # noqa: E402
from aiwire.flows.loader import load_flow  # noqa: E402
from aiwire.flows.runner import FlowRunner  # noqa: E402
from aiwire.flows.store import FlowStore  # noqa: E402
from aiwire.router import Router  # noqa: E402
from aiwire.simulator import SimulatorConfig, SimulatorServer  # noqa: E402
from aiwire.store.db import Database  # noqa: E402

TOKEN = "demo-crm-token-not-a-real-secret"


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


def prepare(workdir: Path) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in ("flow.yaml", "meetings.jsonl"):
        shutil.copy(HERE / name, workdir / name)
    shutil.copytree(HERE / "schemas", workdir / "schemas")
    return workdir / "flow.yaml"


async def play(flow_path: Path, crm_url: str, sim_url: str) -> dict[str, Any]:
    database = Database(f"sqlite:///{flow_path.parent}/state.db")
    await database.migrate()
    store = FlowStore(database)
    router = Router.from_config(simulator_config(sim_url))
    runner = FlowRunner(store, router)
    try:
        flow = load_flow(flow_path, vars={"crm_url": crm_url})
        summary = await runner.run(flow)
        steps = {
            s.key: s.output
            for s in await store.steps_of(flow.name, "mtg-2025-031")
            if s.step == "chunk"
        }
        return {
            "summary": summary,
            "again": await runner.run(flow),
            "chunk": steps.get("mtg-2025-031"),
            "states": await store.state_counts(flow.name),
        }
    finally:
        await runner.aclose()
        await router.aclose()
        await database.aclose()


def main(workdir: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    flow_path = prepare(workdir or HERE / "out")
    with (
        scoped_env(CRM_TOKEN=TOKEN),
        StandInNotesCRM(TOKEN) as crm,
        SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim,
    ):
        result = asyncio.run(play(flow_path, crm.url, sim.url))
        result["notes"] = list(crm.notes)
    run = result["summary"]
    console.print(f"[bold]flow run[/]: {run.status}, {run.counts}; cost ${run.cost_usd:.6f}")
    console.print(f"[bold]running again[/]: {result['again'].counts}")
    chunk = run.steps.get("chunk", {})
    console.print(f"long notes summarised in parts: {chunk.get('calls', 0)} model calls")
    table = Table(title="CRM notes received")
    for col in ("id", "account", "title", "attendees", "action items"):
        table.add_column(col)
    for n in result["notes"]:
        table.add_row(
            n["id"],
            n["account_id"],
            n["title"],
            str(len(n["attendees"])),
            str(len(n["action_items"])),
        )
    console.print(table)
    drafts = sorted((flow_path.parent / "out" / "drafts").glob("*.eml"))
    result["drafts"] = {p.name: email.message_from_bytes(p.read_bytes()) for p in drafts}
    for name, message in result["drafts"].items():
        console.print(f"draft {name}: To {message['To']} / Subject {message['Subject']}")
    return result


if __name__ == "__main__":
    main()
