"""Run the lead-followup example end to end, offline:

    python examples/lead-followup/run.py

It starts the built-in model simulator and a stand-in CRM on loopback, runs the flow over
``leads.csv`` (each lead gets a drafted email that waits for its sales rep), plays the reps'
decisions from ``reviewer.yaml`` through the review queue (approve, edit, reject), continues
the flow, and prints what the CRM received. Everything it writes goes under ``out/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crm_standin import StandInCRM  # noqa: E402

from aiwire.config import simulator_config  # noqa: E402
from aiwire.flows.loader import load_flow  # noqa: E402
from aiwire.flows.review import ReviewQueue  # noqa: E402
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
    """A fresh copy of the flow and its data in ``workdir`` (so every run starts clean)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in ("flow.yaml", "leads.csv", "reviewer.yaml"):
        shutil.copy(HERE / name, workdir / name)
    shutil.copytree(HERE / "schemas", workdir / "schemas")
    return workdir / "flow.yaml"


async def play(flow_path: Path, crm_url: str, sim_url: str, console: Console) -> dict[str, Any]:
    database = Database(f"sqlite:///{flow_path.parent}/state.db")
    await database.migrate()
    store = FlowStore(database)
    router = Router.from_config(simulator_config(sim_url))
    runner = FlowRunner(store, router)
    try:
        flow = load_flow(flow_path, vars={"crm_url": crm_url})
        first = await runner.run(flow)
        console.print(f"[bold]1. flow run[/]: {first.status}, {first.counts}")

        queue = ReviewQueue(store, {flow.name: flow})
        decisions = yaml.safe_load((flow_path.parent / "reviewer.yaml").read_text())
        waiting, _ = await queue.list(flow=flow.name)
        console.print(f"[bold]2. review queue[/]: {len(waiting)} drafts waiting")
        for review in waiting:
            plan = decisions.get(review["record"], {"decision": "approve", "reviewer": "rep"})
            if plan["decision"] == "approve":
                await queue.approve(review["id"], reviewer=plan["reviewer"])
            elif plan["decision"] == "edit":
                await queue.edit(review["id"], plan["edits"], reviewer=plan["reviewer"])
            else:
                await queue.reject(review["id"], reason=plan["reason"], reviewer=plan["reviewer"])
            console.print(f"   {review['record']}: {plan['decision']} by {plan['reviewer']}")

        second = await runner.run(flow, trigger="review", read_source=False)
        console.print(f"[bold]3. flow run after the decisions[/]: {second.status}, {second.counts}")
        again = await runner.run(flow)
        console.print(f"[bold]4. running again changes nothing[/]: {again.counts}")
        return {
            "runs": [first, second, again],
            "states": await store.state_counts(flow.name),
            "stats": (await queue.stats(flow.name))[flow.name],
            "dead_letters": len(await store.dead_letters(flow.name)),
        }
    finally:
        await runner.aclose()
        await router.aclose()
        await database.aclose()


def main(workdir: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    flow_path = prepare(workdir or HERE / "out")
    with (
        scoped_env(CRM_TOKEN=TOKEN),  # the flow reads it as env:CRM_TOKEN
        StandInCRM(TOKEN) as crm,
        SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim,
    ):
        result = asyncio.run(play(flow_path, crm.url, sim.url, console))
        result["activities"] = list(crm.activities)
        result["crm_requests"] = crm.requests
    table = Table(title="CRM activities received")
    for col in ("id", "lead", "to", "subject", "deal EUR", "review"):
        table.add_column(col)
    for a in result["activities"]:
        review = f"{a['review']['decision']} by {a['review']['reviewer']}"
        table.add_row(a["id"], a["lead_id"], a["to"], a["subject"], f"{a['deal_eur']:,.2f}", review)
    console.print(table)
    stats = result["stats"]
    console.print(
        f"Review acceptance: {stats['acceptance_rate']:.0%} of {stats['human_decisions']} "
        f"decisions (as is: {stats['approved_as_is_rate']:.0%}); record states: {result['states']}"
    )
    return result


if __name__ == "__main__":
    main()
