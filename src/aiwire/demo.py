"""``aiwire demo``: the tour a newcomer takes, offline, against the built-in simulator."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Literal

import orjson
from pydantic import BaseModel
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aiwire.client import AsyncClient
from aiwire.config import Config, DeploymentConfig, ProviderConfig, simulator_config
from aiwire.demo_common import short, step
from aiwire.demo_gateway import gateway_tour
from aiwire.router import AttemptEvent
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorConfig, SimulatorServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Lead(BaseModel):
    """A sales lead, as a CRM would store it."""

    name: str
    email: str
    company: str
    interest: Literal["demo", "pricing", "support"]


def demo_config(url: str) -> Config:
    """The simulator models plus two that misbehave on purpose: a 429 once, and an outage."""
    cfg = simulator_config(url, retries=2, backoff_base=0.2, backoff_max=1.0)
    key = Secret("sim-key", "simulator")
    scope = uuid.uuid4().hex  # the 429 happens once per demo run
    cfg.providers["sim-openai-busy"] = ProviderConfig(
        type="openai",
        base_url=f"{url}/v1",
        api_key=key,
        headers={"x-aiwire-sim-fault": "429;times=1;retry_after=1", "x-aiwire-sim-scope": scope},
    )
    cfg.models += [
        DeploymentConfig(name="busy-gpt", provider="sim-openai-busy", model="gpt-4o-mini"),
        DeploymentConfig(
            name="primary-gpt",
            provider="sim-openai",
            model="gpt-4o-mini-outage",
            fallbacks=["sim-claude"],
        ),
    ]
    return Config.model_validate(cfg.model_dump())


def run_demo(console: Console, *, fast: bool = False) -> None:
    logging.getLogger("aiwire.router").setLevel(logging.ERROR)  # the tour narrates instead
    sim_cfg = SimulatorConfig(
        tokens_per_second=0 if fast else 150, faults={"gpt-4o-mini-outage": "503"}
    )
    started = time.perf_counter()
    with SimulatorServer(sim_cfg) as sim:
        console.print(
            Panel.fit(
                f"[bold]aiwire demo[/] — everything below runs offline against the built-in "
                f"provider simulator at {sim.url}\n(it speaks the OpenAI, Anthropic and Gemini "
                "wire protocols, with their streams, errors and rate-limit headers)",
                border_style="cyan",
            )
        )
        asyncio.run(_tour(console, demo_config(sim.url)))
        gateway_tour(console, sim.url)
    console.print(
        f"\n[bold green]Done in {time.perf_counter() - started:.1f}s.[/] Next: "
        "[cyan]aiwire serve[/] and open http://127.0.0.1:4000/ui/ (the master key is in "
        ".aiwire/master.key), "
        '[cyan]aiwire chat "hello" -m sim-claude --simulator[/], '
        "[cyan]python examples/support-triage/run.py[/], [cyan]aiwire capabilities[/]."
    )


async def _tour(console: Console, cfg: Config) -> None:
    async with AsyncClient(cfg) as client:
        events: list[AttemptEvent] = []
        client.router.on_attempt.append(events.append)
        await _one_format(console, client)
        await _streaming(console, client)
        await _tools(console, client)
        await _extract(console, client)
        await _retry(console, client, events)
        await _fallback(console, client, events)
        await _embeddings(console, client)


async def _one_format(console: Console, client: AsyncClient) -> None:
    step(console, 1, "One request format", "the same call, three provider protocols")
    table = Table(show_header=True, header_style="bold")
    for col in ("model", "protocol", "answer", "tokens in/out", "ms"):
        table.add_column(col)
    question = "In one sentence, why do integrations need retries?"
    for model in ("sim-gpt", "sim-claude", "sim-gemini"):
        t0 = time.perf_counter()
        resp = await client.chat(model, question, max_tokens=40)
        ms = (time.perf_counter() - t0) * 1000
        u = resp.usage
        protocol = client.router.deployments(model)[0].provider.type
        tokens = f"{u.input_tokens}/{u.output_tokens}" if u else "-"
        table.add_row(model, protocol, short(resp.text, 60), tokens, f"{ms:.0f}")
    console.print(table)


async def _streaming(console: Console, client: AsyncClient) -> None:
    step(console, 2, "Streaming", "chunks arrive as the model writes (Anthropic protocol)")
    t0 = time.perf_counter()
    first: float | None = None
    console.print("  ", end="")
    async for chunk in client.stream("sim-claude", "Write a short note about reliable APIs."):
        if chunk.text and first is None:
            first = time.perf_counter() - t0
        console.print(chunk.text, end="", markup=False, highlight=False)
    total = time.perf_counter() - t0
    console.print(
        f"\n  [dim]first chunk after {1000 * (first or 0):.0f} ms, done in {total:.2f}s[/]"
    )


async def _tools(console: Console, client: AsyncClient) -> None:
    step(console, 3, "Tool calls", "the model asks for two calls in parallel (Gemini protocol)")
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "What is the weather in Oslo and Paris?"}
    ]
    resp = await client.chat("sim-gemini", messages, tools=[WEATHER_TOOL])
    calls = resp.tool_calls
    for c in calls:
        console.print(f"  model calls [bold]{c.function.name}[/]({c.function.arguments})")
    messages.append(resp.message.model_dump(exclude_none=True))
    for c in calls:
        city = orjson.loads(c.function.arguments).get("city", "?")
        result = {"city": city, "temp_c": 4 if city == "Oslo" else 12, "sky": "rain"}
        console.print(f"  your code answers {result}")
        messages.append(
            {"role": "tool", "tool_call_id": c.id, "content": orjson.dumps(result).decode()}
        )
    final = await client.chat("sim-gemini", messages, tools=[WEATHER_TOOL])
    console.print(f"  model: {short(final.text, 100)}")


async def _extract(console: Console, client: AsyncClient) -> None:
    step(
        console,
        4,
        "Structured extraction",
        "JSON validated into a pydantic model; an invalid answer is re-asked with the error",
    )
    note = "Anna Berg (anna.berg@northwind.test) from Northwind wants a demo next week."
    lead = await client.extract("sim-claude", f"Extract the lead: {note}", schema=Lead)
    console.print(f"  {lead!r}")


async def _retry(console: Console, client: AsyncClient, events: list[AttemptEvent]) -> None:
    step(console, 5, "A 429, retried", "the provider says 'retry after 1s'; the router waits")
    events.clear()
    resp = await client.chat("busy-gpt", "Hello?")
    _narrate(console, events)
    console.print(f"  answer: {short(resp.text, 70)}")


async def _fallback(console: Console, client: AsyncClient, events: list[AttemptEvent]) -> None:
    step(console, 6, "A fallback", "primary-gpt is down (503); Claude answers instead")
    events.clear()
    resp = await client.chat("primary-gpt", "Hello?")
    _narrate(console, events)
    console.print(f"  answered by [bold]{resp.deployment}[/]: {short(resp.text, 50)}")
    down = client.router.deployments("primary-gpt")[0]
    console.print(
        f"  circuit breaker: {down.id} is now [bold]{down.state(time.monotonic())}[/] for "
        f"{client.router.settings.cooldown_seconds:g}s; the next request goes straight to the "
        "fallback:"
    )
    events.clear()
    await client.chat("primary-gpt", "Hello again?")
    _narrate(console, events)


async def _embeddings(console: Console, client: AsyncClient) -> None:
    step(console, 7, "Embeddings", "vectors for search and classification")
    texts = ["refund my order", "I want my money back", "reset my password"]
    resp = await client.embed("sim-embed", texts)
    v = resp.vectors
    console.print(
        f"  {len(v)} vectors of {len(v[0])} dimensions; cosine(0,1)={_cos(v[0], v[1]):.3f}, "
        f"cosine(0,2)={_cos(v[0], v[2]):.3f} "
        "[dim](simulated vectors: deterministic, not semantic)[/]"
    )


def _narrate(console: Console, events: list[AttemptEvent]) -> None:
    for e in events:
        waited = f" after waiting {e.waited:.2f}s" if e.waited else ""
        if e.error is None:
            outcome = "[green]ok[/]"
        else:
            hint = f", retry-after {e.error.retry_after:g}s" if e.error.retry_after else ""
            outcome = f"[red]{type(e.error).__name__}[/] ({e.error.status}{hint})"
        console.print(f"  attempt {e.attempt} → {e.deployment}{waited}: {outcome}")


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)
