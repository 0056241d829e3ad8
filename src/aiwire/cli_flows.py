"""``aiwire flow``: run, check, serve and inspect flows (source → steps → sinks).

State lives in the store (``--store``, else the config's ``server.store``, else
``sqlite:///.aiwire/aiwire.db``): the same database ``aiwire serve`` uses, so a flow run here
and one served by the gateway share their records, reviews and dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aiwire import errors

T = TypeVar("T")

flow_app = typer.Typer(
    name="flow",
    help="Declarative AI integrations: a source's records → mapped fields → a prompt → a "
    "validated model answer → optional review → a destination.\n\n"
    "Example: aiwire flow run examples/lead-followup/flow.yaml --simulator",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_STORE = "sqlite:///.aiwire/aiwire.db"

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file with the models the flow uses (default: $AIWIRE_CONFIG, then "
        "./aiwire.yaml, then provider keys in the environment).",
        exists=True,
        dir_okay=False,
    ),
]
SimOpt = Annotated[
    bool, typer.Option("--simulator", help="Start the built-in simulator; use its sim-* models.")
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="AIWIRE_STORE",
        help="Database for flow state: sqlite:///path or postgresql://... (default: the "
        "config's server.store, else sqlite:///.aiwire/aiwire.db).",
        show_default=False,
    ),
]
FlowsOpt = Annotated[
    str | None,
    typer.Option(
        "--flows",
        envvar="AIWIRE_FLOWS",
        help="Where flow files are found by name: files or directories, ':'-separated "
        "(default: ./flows).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
VarOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="NAME=VALUE overriding one of the flow's vars: (repeatable); VALUE is JSON when "
        "it parses as JSON, else text.",
    ),
]


def parse_vars(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            die(f"--var {item!r}: write NAME=VALUE, e.g. --var crm_url=http://127.0.0.1:8080")
        try:
            out[name.strip()] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[name.strip()] = raw
    return out


def die(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except errors.AIWireError as exc:
        die(str(exc) if not isinstance(exc, errors.ConfigError) else exc.message)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _config_file(config: Path | None) -> Path | None:
    if config is not None:
        return config
    if env := os.environ.get("AIWIRE_CONFIG"):
        return Path(env)
    return Path("aiwire.yaml") if Path("aiwire.yaml").exists() else None


def store_url(store: str | None, config: Path | None = None) -> str:
    if store:
        return store
    path = _config_file(config)
    if path is not None:
        from aiwire.config import Config

        return Config.from_file(path).server.store
    return DEFAULT_STORE


@contextlib.asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Any]:
    """A migrated store for the duration."""
    from aiwire.flows.store import FlowStore
    from aiwire.store.db import Database

    database = Database(url)
    try:
        await database.migrate()
        yield FlowStore(database)
    finally:
        await database.aclose()


@contextlib.asynccontextmanager
async def open_router(config: Path | None, simulator: bool) -> AsyncIterator[Any]:
    """The router for model steps: the simulator's, or the config's."""
    from aiwire.config import Config, config_from_env, simulator_config
    from aiwire.router import Router

    if simulator:
        from aiwire.simulator import SimulatorConfig, SimulatorServer

        with SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim:
            router = Router.from_config(simulator_config(sim.url))
            try:
                yield router
            finally:
                await router.aclose()
        return
    path = _config_file(config)
    router = Router.from_config(Config.from_file(path) if path else config_from_env())
    try:
        yield router
    finally:
        await router.aclose()


def _local_flow(name: str, flows: str | None, vars: dict[str, Any] | None = None) -> Any:
    """A flow by file path or by name among ``--flows`` (None when neither finds it)."""
    from aiwire.flows.loader import load_flow
    from aiwire.flows.server import discover

    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return load_flow(candidate, vars=vars)
    for path in discover(flows):
        with contextlib.suppress(errors.ConfigError):
            flow = load_flow(path)
            if flow.name == name:
                return load_flow(path, vars=vars) if vars else flow
    return None


def _registered_flow(path: str | None, vars: dict[str, Any] | None = None) -> Any:
    from aiwire.flows.loader import load_flow

    return load_flow(path, vars=vars) if path and Path(path).exists() else None


async def find_flow(
    name: str, flows: str | None, store: Any | None = None, vars: dict[str, Any] | None = None
) -> Any:
    """A flow by file path, by name among ``--flows``, or by the path its last run registered."""
    flow = _local_flow(name, flows, vars)
    if flow is None and store is not None:
        flow = _registered_flow(await store.definition_path(name), vars)
    if flow is None:
        raise errors.ConfigError(
            f"no flow named {name!r}: give its file (flow.yaml), or put it under --flows DIR"
        )
    return flow


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with friendly_errors():
        return asyncio.run(work())


# --- commands -------------------------------------------------------------------------------------


def _progress() -> tuple[Progress, Callable[[str, str], None]]:
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = bar.add_task("records", total=None)

    def on(event: str, value: str) -> None:
        if event == "total":
            bar.update(task, total=int(value))
        else:
            bar.advance(task)

    return bar, on


def _summary(summary: Any) -> None:
    status_style = {"succeeded": "green", "partial": "yellow"}.get(summary.status, "red")
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items()) or "no records"
    console.print(
        f"[bold]{summary.flow}[/] run {summary.run_id}: [{status_style}]{summary.status}[/] "
        f"({escape(counts)}); dead letters open: {summary.dead_letters}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.error:
        console.print(f"[red]{escape(summary.error)}[/]", soft_wrap=True)
    console.print(steps_table(summary.steps))


def steps_table(steps: dict[str, dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Steps")
    for col in ("step", "done", "skipped", "failed", "avg ms", "calls", "tokens in/out", "cost $"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for sid, s in steps.items():
        runs = s.get("done", 0) + s.get("failed", 0)
        avg = s.get("ms", 0.0) / runs if runs else 0.0
        table.add_row(
            sid,
            str(s.get("done", 0)),
            str(s.get("skipped", 0)),
            str(s.get("failed", 0)),
            f"{avg:.1f}",
            str(s.get("calls", 0)),
            f"{s.get('input_tokens', 0)}/{s.get('output_tokens', 0)}",
            f"{s.get('cost_usd', 0.0):.6f}",
        )
    return table


@flow_app.command()
def run(
    name: Annotated[str, typer.Argument(help="The flow's file, or its name (see --flows).")],
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    flows: FlowsOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a flow once: read its source, work every new or unfinished record, write the sinks.

    Example: aiwire flow run examples/lead-followup/flow.yaml --simulator
    Re-running is safe: records already done are skipped and no sink gets a record twice.
    """
    overrides = parse_vars(var)

    async def work() -> Any:
        from aiwire.flows.runner import FlowRunner

        async with (
            open_store(store_url(store, config)) as st,
            open_router(config, simulator) as router,
        ):
            flow = await find_flow(name, flows, st, overrides)
            runner = FlowRunner(st, router)
            bar, on = _progress()
            try:
                with bar if not as_json else contextlib.nullcontext():
                    return await runner.run(flow, progress=None if as_json else on)
            finally:
                await runner.aclose()

    summary = run_async(work)
    if as_json:
        print_json(summary.__dict__)
    else:
        _summary(summary)
    if summary.status == "failed":
        raise typer.Exit(1)


@flow_app.command()
def replay(
    name: Annotated[str, typer.Argument(help="The flow's file or name.")],
    dlq: Annotated[
        bool, typer.Option("--dlq", help="Replay the records in the dead-letter queue.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--id", help="Only this dead letter (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    flows: FlowsOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the dead-lettered records again, from the step that failed.

    Steps that completed and sinks already written are not repeated.

    Example: aiwire flow replay support-triage --dlq --simulator
    """
    if not dlq:
        die("say what to replay: --dlq (the records in the dead-letter queue)")
    overrides = parse_vars(var)

    async def work() -> Any:
        from aiwire.flows.runner import FlowRunner

        async with (
            open_store(store_url(store, config)) as st,
            open_router(config, simulator) as router,
        ):
            flow = await find_flow(name, flows, st, overrides)
            runner = FlowRunner(st, router)
            bar, on = _progress()
            try:
                with bar if not as_json else contextlib.nullcontext():
                    return await runner.replay(
                        flow, ids=only or None, progress=None if as_json else on
                    )
            finally:
                await runner.aclose()

    summary = run_async(work)
    if as_json:
        print_json(summary.__dict__)
    else:
        _summary(summary)


@flow_app.command("dlq")
def dead_letters(
    name: Annotated[str, typer.Argument(help="The flow's name (or file).")],
    discard: Annotated[
        str | None, typer.Option(help="Discard this dead letter (it will not be replayed).")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include replayed and discarded ones.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The dead-letter queue of a flow: each record that failed, where and why.

    Example: aiwire flow dlq lead-followup --json
    """
    flow_name = _name(name)

    async def work() -> Any:
        async with open_store(store_url(store, config)) as st:
            if discard:
                if not await st.discard_dead_letter(discard):
                    raise errors.NotFoundError(f"no open dead letter {discard!r}")
                return None
            rows = await st.dead_letters(flow_name, None if show_all else "open")
            return [
                {
                    "id": r.id, "record": r.key, "stage": r.stage, "error_class": r.error_class,
                    "error": r.error, "details": r.details, "attempts": r.attempts,
                    "status": r.status, "created_at": r.created_at.isoformat(), "data": r.record,
                }
                for r in rows
            ]  # fmt: skip

    rows = run_async(work)
    if discard:
        console.print(f"Discarded {discard}.", highlight=False)
        return
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"The dead-letter queue of {flow_name} is empty.", highlight=False)
        return
    table = Table(title=f"Dead letters: {flow_name}", box=box.SIMPLE_HEAD)
    for col in ("id", "record", "stage", "class", "error"):
        table.add_column(col, overflow="fold", no_wrap=col == "id")
    for r in rows:
        table.add_row(r["id"], r["record"], r["stage"], r["error_class"], escape(r["error"]))
    console.print(table)


@flow_app.command()
def runs(
    name: Annotated[str, typer.Argument(help="The flow's name (or file).")],
    run_id: Annotated[str | None, typer.Option("--run", help="One run, step by step.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run history: trigger, outcome, records, tokens and cost (--run ID: step by step).

    Example: aiwire flow runs lead-followup --run run_0123...
    """
    flow_name = _name(name)

    def row(r: Any) -> dict[str, Any]:
        return {
            "id": r.id, "trigger": r.trigger, "status": r.status, "counts": r.counts,
            "steps": r.steps, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cost_usd": r.cost_usd, "error": r.error, "started_at": r.started_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        }  # fmt: skip

    async def work() -> Any:
        async with open_store(store_url(store, config)) as st:
            if run_id:
                found = await st.run(run_id)
                if found is None or found.flow != flow_name:
                    raise errors.NotFoundError(f"no run {run_id!r} of flow {flow_name}")
                return [row(found)]
            return [row(r) for r in await st.runs(flow_name, limit)]

    rows = run_async(work)
    if as_json:
        print_json(rows[0] if run_id else rows)
        return
    if run_id:
        r = rows[0]
        console.print(
            f"[bold]{run_id}[/] {r['trigger']} {r['status']} {r['started_at']}: {r['counts']}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(steps_table(r["steps"]))
        return
    table = Table(title=f"Runs: {flow_name}", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("trigger")
    table.add_column("status")
    table.add_column("records", overflow="fold")
    table.add_column("cost $", justify="right")
    for r in rows:
        shown = {k: v for k, v in r["counts"].items() if k not in ("read", "already_known")}
        table.add_row(
            r["id"], r["started_at"][5:19].replace("T", " "), r["trigger"], r["status"],
            ", ".join(f"{k} {v}" for k, v in shown.items()) or "-", f"{r['cost_usd']:.6f}",
        )  # fmt: skip
    console.print(table)


@flow_app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The flow file.", exists=True, dir_okay=False)],
    config: ConfigOpt = None,
    simulator: SimOpt = False,
) -> None:
    """Validate a flow file; errors name the file, line and field.

    Checks fields, templates, expressions and schemas; with a config or --simulator also that
    its models exist.

    Example: aiwire flow check examples/support-triage/flow.yaml --simulator
    """

    async def work() -> Any:
        from aiwire.flows.loader import load_flow

        flow = load_flow(file)
        if config is not None or simulator:
            async with open_router(config, simulator) as router:
                _check_models(router, flow)
        return flow

    flow = run_async(work)
    console.print(
        f"[green]ok[/] {flow.name}: {len(flow.spec.steps)} steps, {len(flow.spec.sinks)} sinks",
        highlight=False,
    )


def _check_models(router: Any, flow: Any) -> None:
    from aiwire.flows.definition import ChunkStep, ClassifyStep, ModelStep

    known = set(router.names)
    for sid, step in flow.steps():
        if isinstance(step, ModelStep | ClassifyStep | ChunkStep) and step.model not in known:
            raise errors.ConfigError(
                f"{flow.path}: step {sid}: model {step.model!r} is not configured "
                f"(models: {', '.join(sorted(known)) or 'none'})"
            )


@flow_app.command()
def status(
    name: Annotated[str, typer.Argument(help="The flow's name (or file).")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Records by state, open dead letters, and the review queue's acceptance rate.

    Example: aiwire flow status lead-followup
    """
    flow_name = _name(name)

    async def work() -> Any:
        from aiwire.flows.review import ReviewQueue

        async with open_store(store_url(store, config)) as st:
            return {
                "flow": flow_name,
                "records": await st.state_counts(flow_name),
                "dead_letters_open": await st.open_dead_letters(flow_name),
                "reviews": (await ReviewQueue(st).stats(flow_name)).get(flow_name),
            }

    data = run_async(work)
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{flow_name}[/]", highlight=False)
    console.print(f"records: {data['records'] or 'none'}", highlight=False)
    console.print(f"dead letters open: {data['dead_letters_open']}", highlight=False)
    reviews = data["reviews"]
    if reviews:
        rate = reviews["acceptance_rate"]
        console.print(
            f"reviews: {reviews['pending']} pending; acceptance "
            f"{'-' if rate is None else f'{rate:.0%}'} of {reviews['human_decisions']} decisions",
            highlight=False,
        )


@flow_app.command()
def serve(
    flows: FlowsOpt = None,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 4100,
) -> None:
    """Serve flows without the gateway: webhooks, the review API and schedules.

    Webhook events at POST /flows/NAME/events, the review API at /admin/review (master key),
    scheduled runs; until interrupted.

    Example: AIWIRE_MASTER_KEY=... aiwire flow serve --flows examples/support-triage --simulator
    """
    import uvicorn

    from aiwire.config import Config
    from aiwire.flows.runner import FlowRunner
    from aiwire.flows.server import FlowsApp, discover, load_all
    from aiwire.flows.service import FlowService
    from aiwire.flows.store import FlowStore
    from aiwire.server.auth import Authenticator, scope_auth
    from aiwire.server.serve import master_key
    from aiwire.serving import uvicorn_config
    from aiwire.store.db import Database

    with friendly_errors():
        loaded = load_all(discover(flows))
        if not loaded:
            die("no flow files found: give --flows DIR (or put them under ./flows)")
        key = master_key(Config())

    async def main() -> None:
        database = Database(store_url(store, config))
        await database.migrate()
        async with open_router(config, simulator) as router:
            flow_store = FlowStore(database)
            service = FlowService(flow_store, FlowRunner(flow_store, router), loaded)
            app = FlowsApp(service, scope_auth(Authenticator(master_key=key, lookup=None)))
            await service.start()
            err_console.print(
                f"flows {', '.join(loaded)} on http://{host}:{port} (events: /flows/NAME/events, "
                "reviews: /admin/review)",
                highlight=False,
            )
            try:
                await uvicorn.Server(uvicorn_config(app, host=host, port=port)).serve()
            finally:
                await service.stop()
                await database.aclose()

    with friendly_errors():
        asyncio.run(main())


def _name(name: str) -> str:
    """A flow's name from its name or its file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from aiwire.flows.loader import load_flow

        with friendly_errors():
            return load_flow(path).name
    return name


__all__ = ["flow_app"]
