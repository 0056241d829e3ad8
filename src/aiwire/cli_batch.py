"""``aiwire batch`` (run a batch here, estimate it, or follow batches on a gateway) and
``aiwire worker`` (a batch worker for a gateway's shared store).

``batch run`` needs no gateway: it routes every line through this machine's configuration and
keeps its state in a SQLite file next to the output, so the same command resumes after an
interruption. ``batch list|status|cancel|submit`` talk to a running gateway's OpenAI-compatible
``/v1/batches`` with a virtual key (or the master key, which sees every batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aiwire import errors

if TYPE_CHECKING:
    from aiwire.batch.local import Progress

batch_app = typer.Typer(
    name="batch",
    help="Run many requests as one job: locally with resume (run), priced before you start "
    "(estimate), or on a gateway (submit, list, status, cancel).\n\n"
    "Example: aiwire batch run tickets.jsonl -o answers.jsonl --max-concurrency 32",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
worker_app = typer.Typer(
    name="worker",
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:4000"
TIMEOUT = 30.0

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
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Send every line to this model (required for CSV)."),
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(
        "--template",
        "-t",
        help='CSV input: the user message, naming columns in braces, e.g. "Classify: {text}".',
    ),
]
IdColumnOpt = Annotated[
    str | None,
    typer.Option(
        help="CSV input: the column holding each row's custom_id (default: custom_id "
        "or id if present, else row-<n>)."
    ),
]
SystemOpt = Annotated[str | None, typer.Option(help="CSV input: a system message for every row.")]
MaxTokensOpt = Annotated[int | None, typer.Option(help="CSV input: max_tokens for every row.")]
EndpointOpt = Annotated[
    str, typer.Option(help="/v1/chat/completions or /v1/embeddings (the lines' url).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
UrlOpt = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="AIWIRE_URL",
        help="The gateway's base URL (default: $AIWIRE_URL, else http://127.0.0.1:4000).",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar=["AIWIRE_API_KEY", "AIWIRE_MASTER_KEY"],
        help="Your aiwire key (default: $AIWIRE_API_KEY, else $AIWIRE_MASTER_KEY). Prefer the "
        "variable, so the key stays out of your shell history.",
        show_default=False,
        show_envvar=False,
    ),
]


def _die(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _friendly() -> Iterator[None]:
    try:
        yield
    except errors.AIWireError as exc:
        _die(exc.message if isinstance(exc, errors.ConfigError) else str(exc))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: run the same command again to resume")
        raise typer.Exit(130) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _usd(value: float) -> str:
    from aiwire.cli_usage import money

    return money(value)


# --- batch run / estimate (local) -------------------------------------------------------------


@batch_app.command("run")
def run(
    input_file: Annotated[
        Path,
        typer.Argument(
            help="Requests: JSONL ({custom_id, method, url, body} per line) or CSV with "
            "--template.",
            exists=True,
            dir_okay=False,
            metavar="INPUT",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the successful answers go (JSONL).")
    ],
    model: ModelOpt = None,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", "-j", min=1, help="Lines in flight at once.")
    ] = 16,
    template: TemplateOpt = None,
    id_column: IdColumnOpt = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    errors_file: Annotated[
        Path | None,
        typer.Option("--errors", help="Where failed lines go (default: <output>.errors.jsonl)."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="The run's state (default: <output>.state.db, next to the output)."),
    ] = None,
    endpoint: EndpointOpt = "/v1/chat/completions",
    window: Annotated[
        str, typer.Option(help="Give up on lines not done within this (e.g. 24h, 7d).")
    ] = "7d",
    mode: Annotated[
        str,
        typer.Option(
            help="emulate: through the router at full price; native: the provider's "
            "batch API at half price (openai and anthropic providers)."
        ),
    ] = "emulate",
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    as_json: JsonOpt = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Run a batch here, paced under each deployment's rate limits; re-run to resume.

    Run the same command again after an interruption: lines already answered are not sent
    again. The progress bar shows lines done and failed, the rate, the ETA and the spend.

    Example: aiwire batch run tickets.jsonl -o answers.jsonl -j 32
    CSV: aiwire batch run tickets.csv -o out.jsonl -m gpt-4o-mini -t "Classify: {text}"
    Offline: aiwire batch run tickets.jsonl -o out.jsonl -m sim-claude --simulator
    """
    from aiwire.batch.local import RunOptions, ValidationFailed, run_local
    from aiwire.cli import _config

    if mode not in ("emulate", "native"):
        _die(f"--mode must be emulate or native, not {mode!r}")
    options = RunOptions(
        input=input_file,
        output=output,
        errors=errors_file,
        state=state,
        model=model,
        endpoint=endpoint,
        max_concurrency=max_concurrency,
        template=template,
        id_column=id_column,
        system=system,
        max_tokens=max_tokens,
        completion_window=window,
        mode=mode,
    )
    display = _Display(enabled=not no_progress and not as_json)
    with _friendly(), _config(config, simulator) as cfg:
        try:
            with display:
                outcome = asyncio.run(
                    run_local(cfg, options, on_start=display.start, on_line=display.update)
                )
        except ValidationFailed as exc:
            _report_invalid(exc)
    batch = outcome.batch
    if as_json:
        _print_json(
            {
                "batch": batch.public(),
                "output": str(outcome.output),
                "errors": str(outcome.errors) if outcome.errors else None,
                "state": str(options.state_path),
                "resumed": outcome.resumed,
                "seconds": round(outcome.elapsed, 3),
            }
        )
        return
    counts = batch.counts
    verb = "Resumed and finished" if outcome.resumed else "Finished"
    console.print(
        f"{verb} batch {batch.id} ({batch.status}): {counts.succeeded:,} succeeded, "
        f"{counts.failed:,} failed, {_usd(counts.cost_usd)} in {outcome.elapsed:.1f}s",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"Answers: {outcome.output}", highlight=False, soft_wrap=True)
    if outcome.errors is not None:
        console.print(f"Failed lines: {outcome.errors}", highlight=False, soft_wrap=True)


def _report_invalid(exc: Any) -> NoReturn:
    for problem in exc.problems[:20]:
        err_console.print(f"  {escape(str(problem))}", highlight=False, soft_wrap=True)
    if exc.count > 20:
        err_console.print(f"  ... and {exc.count - 20} more", highlight=False)
    _die(f"{exc.count} invalid line(s) in the input: fix them and run again (nothing was sent)")


class _Display:
    """The progress bar: done, failed, rate, ETA and spend so far."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and err_console.is_terminal
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Display:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}/s"),
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("[green]{task.fields[spend]}"),
                console=err_console,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, progress: Progress) -> None:
        if self._bar is None:
            return
        label = "resuming" if progress.resumed else "batch"
        self._task = self._bar.add_task(label, total=progress.total, **_fields(progress))
        self._bar.update(self._task, completed=progress.done)

    def update(self, progress: Progress) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=progress.done, **_fields(progress))


def _fields(progress: Progress) -> dict[str, str | int]:
    eta = progress.eta
    return {
        "failed": progress.failed,
        "rate": f"{progress.rate:.1f}",
        "eta": "-" if eta is None else _duration(eta),
        "spend": _usd(progress.spend),
    }


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@batch_app.command("estimate")
def estimate_cmd(
    input_file: Annotated[
        Path,
        typer.Argument(help="JSONL or CSV requests.", exists=True, dir_okay=False, metavar="INPUT"),
    ],
    model: ModelOpt = None,
    template: TemplateOpt = None,
    id_column: IdColumnOpt = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    endpoint: EndpointOpt = "/v1/chat/completions",
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Count a batch's tokens and price it with the model catalog, sending nothing.

    Input tokens (exact for OpenAI models, estimated for others), the most output tokens it may
    produce, and what that costs synchronously and in native mode (half price).

    Example: aiwire batch estimate tickets.jsonl
    CSV: aiwire batch estimate tickets.csv -m gpt-4o-mini -t "Classify: {text}" --max-tokens 5
    """
    from aiwire.batch.local import RunOptions, ValidationFailed, estimate_input
    from aiwire.cli import _config

    options = RunOptions(
        input=input_file,
        output=input_file,
        model=model,
        endpoint=endpoint,
        template=template,
        id_column=id_column,
        system=system,
        max_tokens=max_tokens,
    )
    with _friendly(), _config(config, simulator) as cfg:
        try:
            full, native = estimate_input(cfg, options)
        except ValidationFailed as exc:
            _report_invalid(exc)
    data = {
        "lines": full.lines,
        "input_tokens": full.input_tokens,
        "input_tokens_exact": full.exact,
        "max_output_tokens": full.max_output_tokens,
        "input_usd": full.input_usd,
        "max_usd": full.max_usd,
        "native_input_usd": native.input_usd,
        "native_max_usd": native.max_usd,
        "unpriced_models": list(full.unpriced),
    }
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"Estimate for {input_file.name}", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{full.lines:,}")
    exactness = "exact" if full.exact else "estimated"
    table.add_row(f"input tokens ({exactness})", f"{full.input_tokens:,}")
    table.add_row("output tokens, at most", f"{full.max_output_tokens:,}")
    table.add_row("cost: input only .. at most", f"{_usd(full.input_usd)} .. {_usd(full.max_usd)}")
    table.add_row("native mode (50 %)", f"{_usd(native.input_usd)} .. {_usd(native.max_usd)}")
    console.print(table)
    if full.unpriced:
        err_console.print(
            f"[yellow]not in the catalog (counted as $0):[/] {', '.join(full.unpriced)}; add "
            "their prices under catalog: in the config",
            soft_wrap=True,
        )


# --- batches on a gateway ---------------------------------------------------------------------


class _Gateway:
    """A small synchronous client for a gateway's ``/v1/files`` and ``/v1/batches``."""

    def __init__(self, url: str, key: str | None) -> None:
        if not key:
            _die("no key: export AIWIRE_API_KEY=aiw-... (or AIWIRE_MASTER_KEY) or pass --key")
        if not url.startswith(("http://", "https://")):
            _die(f"--url must start with http:// or https://, e.g. {DEFAULT_URL}")
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=TIMEOUT
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.ConnectError:
            _die(f"cannot reach the gateway at {self.url}: is it running? Point --url at it")
        except httpx.HTTPError as exc:
            _die(f"request to {self.url} failed: {type(exc).__name__}")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.is_success and data is not None:
            return data
        message = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = data["error"].get("message")
        _die(f"{resp.status_code}: {message or 'the gateway answered without a message'}")


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


def _summary(batch: dict[str, Any]) -> str:
    counts = batch.get("request_counts") or {}
    return (
        f"{batch['id']}: {batch['status']}, {counts.get('completed', 0):,}/"
        f"{counts.get('total', 0):,} done, {counts.get('failed', 0):,} failed"
    )


def _print_errors(batch: dict[str, Any]) -> None:
    for error in (batch.get("errors") or {}).get("data") or []:
        where = f"line {error.get('line')}: " if error.get("line") is not None else ""
        err_console.print(
            f"  {where}{escape(str(error.get('message')))} ({error.get('code')})",
            highlight=False,
            soft_wrap=True,
        )


@batch_app.command("list")
def list_batches(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Your batches on a gateway, newest first.

    Example: aiwire batch list --limit 5
    """
    data = _Gateway(url, key).call("GET", "/v1/batches", params={"limit": limit})["data"]
    if as_json:
        _print_json(data)
        return
    if not data:
        console.print("No batches. Submit one: aiwire batch submit requests.jsonl")
        return
    table = Table(title="Batches", box=box.SIMPLE_HEAD)
    for col in ("id", "status", "mode", "done", "failed", "total", "cost", "created"):
        table.add_column(col, no_wrap=col == "id")
    for b in data:
        counts = b.get("request_counts") or {}
        table.add_row(
            b["id"],
            b["status"],
            b.get("mode", "-"),
            f"{counts.get('completed', 0):,}",
            f"{counts.get('failed', 0):,}",
            f"{counts.get('total', 0):,}",
            _usd(float(b.get("cost_usd") or 0.0)),
            _when(b.get("created_at")),
        )
    console.print(table)


@batch_app.command("status")
def status(
    batch_id: Annotated[str, typer.Argument(help="The batch's id (batch_...).")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One batch: status, counts, spend, files and validation errors.

    Example: aiwire batch status batch_0123456789abcdef01234567
    """
    batch = _Gateway(url, key).call("GET", f"/v1/batches/{batch_id}")
    if as_json:
        _print_json(batch)
        return
    console.print(_summary(batch), highlight=False, soft_wrap=True)
    console.print(
        f"mode {batch.get('mode', '-')}, spent {_usd(float(batch.get('cost_usd') or 0.0))} "
        f"(estimate up to {_usd(float(batch.get('estimate_usd') or 0.0))}), expires "
        f"{_when(batch.get('expires_at'))}",
        highlight=False,
        soft_wrap=True,
    )
    for name in ("output_file_id", "error_file_id"):
        if batch.get(name):
            console.print(f"{name}: {batch[name]}", highlight=False)
    _print_errors(batch)


@batch_app.command("cancel")
def cancel(
    batch_id: Annotated[str, typer.Argument(help="The batch's id (batch_...).")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a batch: no new line starts, running ones finish, the output keeps what is done.

    Example: aiwire batch cancel batch_0123456789abcdef01234567
    """
    batch = _Gateway(url, key).call("POST", f"/v1/batches/{batch_id}/cancel")
    if as_json:
        _print_json(batch)
        return
    console.print(_summary(batch), highlight=False, soft_wrap=True)


@batch_app.command("submit")
def submit(
    input_file: Annotated[
        Path,
        typer.Argument(help="JSONL requests.", exists=True, dir_okay=False, metavar="INPUT"),
    ],
    endpoint: EndpointOpt = "/v1/chat/completions",
    window: Annotated[str, typer.Option(help="The completion window.")] = "24h",
    mode: Annotated[
        str | None,
        typer.Option(help="emulate, native or auto (default: the deployment's default)."),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a JSONL file and start a batch on a gateway.

    The same as the openai SDK's files.create + batches.create.

    Example: aiwire batch submit tickets.jsonl --window 24h
    """
    gateway = _Gateway(url, key)
    uploaded = gateway.call(
        "POST",
        "/v1/files",
        files={"file": (input_file.name, input_file.read_bytes())},
        data={"purpose": "batch"},
    )
    body: dict[str, Any] = {
        "input_file_id": uploaded["id"],
        "endpoint": endpoint,
        "completion_window": window,
    }
    if mode is not None:
        body["mode"] = mode
    batch = gateway.call("POST", "/v1/batches", json=body)
    if as_json:
        _print_json(batch)
        return
    console.print(_summary(batch), highlight=False, soft_wrap=True)
    _print_errors(batch)
    if batch["status"] == "failed":
        raise typer.Exit(1)


# --- aiwire worker ----------------------------------------------------------------------------


@worker_app.callback(invoke_without_command=True)
def worker(
    config: ConfigOpt = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", min=1, help="Lines in flight in this process.")
    ] = 64,
    poll: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks for new or finished batches.")
    ] = 1.0,
    native_poll: Annotated[
        float, typer.Option(min=0.05, help="Seconds between polls of a provider's batch.")
    ] = 30.0,
) -> None:
    """Run a batch worker on a gateway's store until stopped (SIGTERM or Ctrl-C).

    Run any number, on any machines, with the store on PostgreSQL: they share the lines of
    running batches through row locks, and pacing through Redis (server.redis). On stop,
    running lines get 10 s to finish; the rest go back to the queue. Start the gateway with
    AIWIRE_BATCH_WORKER=0 to leave the batches to these workers.

    Example: aiwire worker -c aiwire.yaml --concurrency 64
    """
    from aiwire.batch.runner import WorkerSettings
    from aiwire.cli import _load

    settings = WorkerSettings(
        max_concurrency=concurrency, poll_interval=poll, native_poll_interval=native_poll
    )
    with _friendly():
        cfg = _load(config)
        if not cfg.models:
            _die("no models configured: give --config (the gateway's config file)")
        asyncio.run(_work(cfg, settings))


async def _work(cfg: Any, settings: Any) -> None:
    from aiwire.batch.budget import BudgetGuard
    from aiwire.batch.execute import LineExecutor
    from aiwire.batch.native import NativeBatches
    from aiwire.batch.runner import BatchWorker
    from aiwire.batch.store import BatchStore
    from aiwire.limits.admission import Admission, BudgetBook
    from aiwire.limits.pricing import CatalogPricing, NoPricing, Pricing
    from aiwire.router import Router
    from aiwire.server.build import limit_state
    from aiwire.store.budgets import BudgetStore
    from aiwire.store.db import Database
    from aiwire.store.keys import KeyStore

    database = Database(cfg.server.store)
    state, _ = limit_state(cfg)
    router = Router.from_config(cfg, state=state)
    try:
        await database.migrate()
        pricing: Pricing = (
            CatalogPricing(router.catalog) if router.catalog is not None else NoPricing()
        )
        budgets = BudgetStore(database)
        budget = BudgetGuard(
            Admission(state, BudgetBook(budgets)),
            budgets,
            router,
            pricing,
            KeyStore(database).get,
        )
        store = BatchStore(database)
        worker = BatchWorker(
            store,
            LineExecutor(router, pricing, clock=store.now),
            settings=settings,
            budget=budget,
            native=NativeBatches(store, router, pricing, budget=budget),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        err_console.print(
            f"batch worker {worker.owner} on {database.display_url} "
            f"(up to {settings.max_concurrency} lines in flight)",
            highlight=False,
            soft_wrap=True,
        )
        await worker.serve()
    finally:
        await router.aclose()
        await state.aclose()
        await database.aclose()


__all__ = ["batch_app", "worker_app"]
