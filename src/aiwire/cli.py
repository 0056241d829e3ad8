"""The ``aiwire`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from aiwire import errors
from aiwire.cli_batch import batch_app, worker_app
from aiwire.cli_budgets import budgets_app
from aiwire.cli_classify import classify
from aiwire.cli_flows import flow_app
from aiwire.cli_keys import keys_app
from aiwire.cli_ops import audit_app, doctor, logs_app
from aiwire.cli_review import review_app
from aiwire.cli_usage import usage
from aiwire.config import Config, config_from_env, simulator_config

if TYPE_CHECKING:
    from aiwire.catalog import Catalog, ModelInfo

app = typer.Typer(
    name="aiwire",
    help="Connect applications to AI model APIs: one request format, retries, fallbacks, limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(budgets_app, name="budgets")
app.add_typer(batch_app, name="batch")
app.add_typer(worker_app, name="worker")
app.add_typer(flow_app, name="flow")
app.add_typer(review_app, name="review")
app.command("usage")(usage)
app.command("classify")(classify)
app.add_typer(audit_app, name="audit")
app.add_typer(logs_app, name="logs")
app.command("doctor")(doctor)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $AIWIRE_CONFIG, then ./aiwire.yaml, then provider keys "
        "found in the environment).",
        exists=True,
        dir_okay=False,
    ),
]
SimOpt = Annotated[
    bool,
    typer.Option("--simulator", help="Start the built-in simulator and use its sim-* models."),
]


def _load(config: Path | None) -> Config:
    if config is not None:
        return Config.from_file(config)
    if env := os.environ.get("AIWIRE_CONFIG"):
        return Config.from_file(env)
    if Path("aiwire.yaml").exists():
        return Config.from_file("aiwire.yaml")
    return config_from_env()


@contextlib.contextmanager
def _config(config: Path | None, simulator: bool) -> Iterator[Config]:
    """The config to use, with a simulator running for the duration when asked."""
    if not simulator:
        yield _load(config)
        return
    from aiwire.simulator import SimulatorConfig, SimulatorServer

    with SimulatorServer(SimulatorConfig(tokens_per_second=40)) as sim:
        yield simulator_config(sim.url)


@contextlib.contextmanager
def _friendly_errors() -> Iterator[None]:
    try:
        yield
    except errors.AIWireError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask. Use - to read it from stdin.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name from the config.")],
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on output tokens.")] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Wait for the whole answer.")
    ] = False,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
) -> None:
    """Send one prompt and stream the answer to the terminal.

    Example: aiwire chat "Summarise our refund policy" -m gpt-4o-mini
    Offline: aiwire chat "hello" -m sim-claude --simulator
    """
    from aiwire.client import AsyncClient

    text = sys.stdin.read() if prompt == "-" else prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    params = {
        k: v
        for k, v in {"temperature": temperature, "max_tokens": max_tokens}.items()
        if v is not None
    }

    async def run(cfg: Config) -> None:
        async with AsyncClient(cfg) as client:
            if no_stream:
                resp = await client.chat(model, messages, **params)
                console.print(resp.text, markup=False, highlight=False)
                usage = resp.usage
            else:
                usage = None
                async for chunk in client.stream(model, messages, **params):
                    console.print(chunk.text, end="", markup=False, highlight=False)
                    usage = chunk.usage or usage
                console.print()
            if usage is not None:
                err_console.print(
                    f"[dim]{usage.input_tokens} in / {usage.output_tokens} out tokens[/]"
                )

    with _friendly_errors(), _config(config, simulator) as cfg:
        asyncio.run(run(cfg))


@app.command()
def models(
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    prices: Annotated[
        bool,
        typer.Option(
            "--prices",
            help="Add each upstream model's catalog entry: USD per 1M input / cached input / "
            "output tokens, context window, max output tokens, deprecation.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    rollout: Annotated[
        bool,
        typer.Option(
            "--rollout",
            help="Canary rollouts: each variant's split, served share, error rate, latency, "
            "cost (from the request log in server.store) and review acceptance.",
        ),
    ] = False,
    since: Annotated[
        str, typer.Option(help="With --rollout: how far back the figures go (24h, 7d).")
    ] = "24h",
) -> None:
    """List the model names clients can ask for and the deployments behind each.

    Example: aiwire models -c aiwire.yaml
    Prices: aiwire models --prices --simulator (add --json for scripts)
    Rollouts: aiwire models --rollout --since 7d
    """
    from aiwire.router import Router

    with _friendly_errors(), _config(config, simulator) as cfg:
        router = Router.from_config(cfg)
        if rollout:
            from aiwire.cli_rollout import print_rollouts, rollout_report

            stats, note = rollout_report(cfg, router, since)
            print_rollouts(console, stats, note, as_json=as_json)
            return
        if not router.names:
            err_console.print(
                "No models configured. Give a config file (-c), export OPENAI_API_KEY / "
                "ANTHROPIC_API_KEY / GEMINI_API_KEY, or try --simulator."
            )
            raise typer.Exit(1)
        rows: list[dict[str, Any]] = [
            {
                "name": d.name,
                "provider": d.provider.name,
                "type": d.provider.type,
                "model": d.model,
                "weight": d.weight,
                "fallbacks": list(d.fallbacks),
            }
            for d in router.deployments()
        ]
        if prices:
            from aiwire import catalog

            # The config's catalog: section, once Config has one.
            cat = catalog.load(getattr(cfg, "catalog", None))
            for row in rows:
                row.update(_catalog_fields(_catalog_entry(cat, row["name"], row["model"])))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        elif prices:
            console.print(_price_table(rows, cat))
        else:
            console.print(_deployment_table(rows))


def _catalog_entry(cat: Catalog, name: str, model: str) -> ModelInfo | None:
    """The upstream model's entry; for the built-in simulator's own names (sim-gpt, ...), their
    simulator entries, which carry the real models' figures but never retire."""
    own = cat.lookup(name)
    if own is not None and own.provider == "simulator":
        return own
    return cat.lookup(model)


def _catalog_fields(info: ModelInfo | None) -> dict[str, Any]:
    keys = ("input_per_1m", "cached_input_per_1m", "output_per_1m", "context_window")
    if info is None:
        return {"catalog_id": None} | dict.fromkeys(
            (*keys, "max_output_tokens", "deprecation_date", "replacement", "retired")
        )
    return {
        "catalog_id": info.id,
        **{k: getattr(info, k) for k in keys},
        "cached_input_per_1m": info.cached_input_per_1m,
        "max_output_tokens": info.max_output_tokens,
        "deprecation_date": info.deprecation_date.isoformat() if info.deprecation_date else None,
        "replacement": info.replacement,
        "retired": info.retired(),
    }


def _deployment_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Models")
    for col in ("name", "provider", "type", "upstream model", "weight", "fallbacks"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["provider"],
            r["type"],
            r["model"],
            f"{r['weight']:g}",
            ", ".join(r["fallbacks"]) or "-",
        )
    return table


def _price_table(rows: list[dict[str, Any]], cat: Catalog) -> Table:
    table = Table(
        title="Models and prices",
        caption=f"USD per 1M tokens · catalog as of {cat.as_of} · exact figures: --json",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("name", overflow="fold")
    table.add_column("upstream model (deprecation)", overflow="fold")
    for col in ("input", "cached", "output", "context", "max out"):
        table.add_column(col, justify="right")
    for r in rows:
        model = r["model"] + _deprecation(r)
        if r["catalog_id"] is None:
            table.add_row(r["name"], model, "[yellow]not in catalog[/]", *["-"] * 4)
            continue
        embedding = r["max_output_tokens"] == 0
        cached = r["cached_input_per_1m"]
        table.add_row(
            r["name"],
            model,
            _usd(r["input_per_1m"]),
            "-" if cached is None else _usd(cached),
            "-" if embedding else _usd(r["output_per_1m"]),
            _tokens(r["context_window"]),
            "-" if embedding else _tokens(r["max_output_tokens"]),
        )
    return table


def _deprecation(row: dict[str, Any]) -> str:
    """A second line under the model id: when it shuts down (or did) and what replaces it."""
    if row.get("deprecation_date") is None:
        return ""
    style, label = ("red", "retired") if row["retired"] else ("yellow", "deprecated")
    then = f" → {row['replacement']}" if row["replacement"] else ""
    return f"\n[{style}]{label} {row['deprecation_date']}[/]{then}"


def _tokens(n: int) -> str:
    """128k, 1.05M, 16.4k: compact enough for a table; --json has the exact figures."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}M"
    return f"{n / 1000:.3g}k" if n >= 1000 else str(n)


def _usd(per_1m: float) -> str:
    """Two decimals, more only when the price has them: 2.50, 0.075, 0.005."""
    return f"{per_1m:.2f}" if round(per_1m, 2) == per_1m else f"{per_1m:g}"


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface (default: server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: server.port, 4000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Run the gateway: OpenAI- and Anthropic-compatible endpoints over your configured models.

    Example: AIWIRE_MASTER_KEY=sk-... aiwire serve -c aiwire.yaml --port 4000
    With no config: a SQLite store under ./.aiwire/, the built-in simulator's models (sim-gpt,
    sim-claude, sim-gemini, ...) and every provider whose key is in the environment. Point any
    OpenAI SDK at http://127.0.0.1:4000/v1 and any Anthropic SDK at http://127.0.0.1:4000.
    """
    from aiwire.server import serve as gateway

    with _friendly_errors():
        if (
            config is None
            and not os.environ.get("AIWIRE_CONFIG")
            and not Path("aiwire.yaml").exists()
        ):
            from aiwire.simulator import SimulatorConfig, SimulatorServer

            with SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim:
                err_console.print(
                    f"built-in simulator at {sim.url}; models: sim-gpt, sim-claude, sim-gemini"
                )
                gateway.run(
                    config_path=None, host=host, port=port, workers=workers, simulator_url=sim.url
                )
            return
        path = str(config) if config else os.environ.get("AIWIRE_CONFIG") or "aiwire.yaml"
        gateway.run(config_path=path, host=host, port=port, workers=workers, simulator_url=None)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    tokens_per_second: Annotated[
        float, typer.Option(help="Streaming speed; 0 sends as fast as possible.")
    ] = 50.0,
) -> None:
    """Run the provider simulator: OpenAI, Anthropic and Gemini protocols, offline.

    Example: aiwire simulate --port 8787, then point any SDK at it, e.g.
    OpenAI(base_url="http://127.0.0.1:8787/v1", api_key="x"). Inject faults per request with the
    header x-aiwire-sim-fault: 429;retry_after=2 (also 500, 503, 529, 401, hang, drop, malformed).
    """
    from aiwire.simulator import SimulatorConfig
    from aiwire.simulator.server import run

    console.print(
        f"aiwire simulator on http://{host}:{port}  "
        f"(OpenAI: /v1, Anthropic: /v1/messages, Gemini: /v1beta/models)"
    )
    run(host, port, SimulatorConfig(tokens_per_second=tokens_per_second))


@app.command()
def demo(
    fast: Annotated[bool, typer.Option(help="Skip the typing effect of streamed text.")] = False,
) -> None:
    """A tour of aiwire, offline, against the built-in simulator: three provider protocols,
    streaming, tools, extraction, a retried 429, a fallback, then the gateway: keys, limits and
    budgets, cache and PII masking, a batch, a flow with human review, metrics, the console,
    the audit trail and a usage report.

    Example: aiwire demo
    """
    from aiwire.demo import run_demo

    with _friendly_errors():
        run_demo(console, fast=fast)


@app.command()
def capabilities(
    markdown: Annotated[
        bool, typer.Option(help="Print the Markdown for docs/capabilities.md.")
    ] = False,
) -> None:
    """Show which request features each provider type supports, emulates or refuses.

    Example: aiwire capabilities --markdown > docs/capabilities.md
    """
    from aiwire import capabilities as caps

    if markdown:
        sys.stdout.write(caps.markdown())
        return
    m = caps.matrix()
    from aiwire.providers.base import FEATURES

    table = Table(title="Capabilities")
    table.add_column("feature")
    for t in m:
        table.add_column(t)
    style = {"supported": "green", "emulated": "yellow", "refused": "red"}
    for feature, label in FEATURES.items():
        table.add_row(label, *(f"[{style[m[t][feature]]}]{m[t][feature]}[/]" for t in m))
    console.print(table)


def main() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=os.environ.get("AIWIRE_LOG_LEVEL", "WARNING").upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
    )
    app()


if __name__ == "__main__":
    main()
