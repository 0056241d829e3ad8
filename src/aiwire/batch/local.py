"""``aiwire batch run``: a batch on this machine, resumable by running the same command again.

The run's state is an aiwire store in a SQLite file next to the output (``<output>.state.db``,
or ``--state``): the same tables, the same worker and the same guarantees as the gateway's
batches. A run is identified by the SHA-256 of its input and of the arguments that change what
is sent (model, template, endpoint, ...; not the concurrency): the same command finds its batch
and continues where it stopped - lines whose call completed are never sent again - while a
changed input or argument starts a new batch in the same state file.

Output and error files are written when the batch ends (to a temporary name, then renamed, so
a reader never sees half a file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from aiwire import errors
from aiwire.batch import lines
from aiwire.batch.budget import NATIVE_PRICE, Estimate, estimate
from aiwire.batch.execute import LineExecutor
from aiwire.batch.native import NativeBatches, native_deployment
from aiwire.batch.records import BatchRecord, Claimed, Counts, LineResult, window_seconds
from aiwire.batch.runner import BatchWorker, WorkerSettings
from aiwire.batch.store import BatchStore, Draft
from aiwire.config import Config
from aiwire.limits.pricing import CatalogPricing, NoPricing, Pricing
from aiwire.router import Router
from aiwire.store.db import Database


@dataclass(slots=True)
class RunOptions:
    input: Path
    output: Path
    errors: Path | None = None
    state: Path | None = None
    model: str | None = None
    endpoint: str = lines.CHAT
    max_concurrency: int = 16
    template: str | None = None
    id_column: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    completion_window: str = "7d"
    mode: str = "emulate"
    #: Seconds between polls of a provider's batch (native mode).
    poll_interval: float = 30.0
    max_attempts: int = 5

    @property
    def state_path(self) -> Path:
        return self.state or self.output.with_name(self.output.name + ".state.db")

    @property
    def errors_path(self) -> Path:
        if self.errors is not None:
            return self.errors
        stem = self.output.name.removesuffix(".jsonl")
        return self.output.with_name(f"{stem}.errors.jsonl")


class ValidationFailed(errors.AIWireError):
    """The input has invalid lines; ``problems`` lists them (with line numbers)."""

    def __init__(self, problems: list[lines.LineError], count: int) -> None:
        super().__init__(f"{count} invalid line(s) in the input; nothing was sent")
        self.problems = problems
        self.count = count


def input_lines(options: RunOptions) -> bytes:
    """The input as JSONL (a CSV file turned into chat lines with ``--template``)."""
    try:
        data = options.input.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {options.input}: {exc.strerror}") from None
    is_csv = options.input.suffix.lower() == ".csv" or options.template is not None
    if not is_csv:
        return data
    if options.template is None:
        raise errors.ConfigError(
            f"{options.input} is CSV: give --template with the prompt, naming columns in braces, "
            'e.g. --template "Classify this ticket: {text}"'
        )
    if options.model is None:
        raise errors.ConfigError("CSV input needs --model: the rows carry no model")
    try:
        return lines.csv_to_jsonl(
            data,
            options.template,
            model=options.model,
            id_column=options.id_column,
            system=options.system,
            max_tokens=options.max_tokens,
        )
    except (lines.TemplateError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(str(exc)) from None


def run_key(content: bytes, options: RunOptions) -> str:
    """What identifies a run: the input and every argument that changes what is sent."""
    args = {
        "model": options.model,
        "endpoint": options.endpoint,
        "template": options.template,
        "id_column": options.id_column,
        "system": options.system,
        "max_tokens": options.max_tokens,
        "mode": options.mode,
    }
    digest = hashlib.sha256(content)
    digest.update(orjson.dumps(args, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def parse(content: bytes, options: RunOptions, router: Router) -> lines.Parsed:
    known = set(router.names)
    return lines.parse_jsonl(
        content, endpoint=options.endpoint, known_model=known.__contains__, model=options.model
    )


def estimate_input(config: Config, options: RunOptions) -> tuple[Estimate, Estimate]:
    """What the input costs (synchronously, and in native mode) before anything is sent."""
    router = Router.from_config(config)
    pricing = _pricing(router)
    parsed = parse(input_lines(options), options, router)
    if parsed.errors:
        raise ValidationFailed(parsed.errors, parsed.error_count)
    full = estimate(router, pricing, options.endpoint, parsed.lines)
    half = estimate(router, pricing, options.endpoint, parsed.lines, price_factor=NATIVE_PRICE)
    return full, half


def _pricing(router: Router) -> Pricing:
    return CatalogPricing(router.catalog) if router.catalog is not None else NoPricing()


@dataclass(slots=True)
class Progress:
    """What a progress display needs, updated as lines end."""

    total: int
    done: int = 0
    failed: int = 0
    spend: float = 0.0
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0
    resumed: bool = False

    @classmethod
    def of(cls, record: BatchRecord, resumed: bool) -> Progress:
        counts: Counts = record.counts
        done = counts.succeeded + counts.failed
        return cls(
            total=counts.total,
            done=done,
            failed=counts.failed,
            spend=counts.cost_usd,
            done_at_start=done,
            resumed=resumed,
        )

    def line(self, result: LineResult) -> None:
        if result.state == "pending":
            return  # re-queued for another attempt: not done yet
        self.done += 1
        if result.state != "succeeded":
            self.failed += 1
        self.spend += result.cost_usd

    @property
    def rate(self) -> float:
        """Lines per second in this run."""
        elapsed = time.monotonic() - self.started
        return (self.done - self.done_at_start) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass(slots=True)
class Outcome:
    batch: BatchRecord
    output: Path
    errors: Path | None
    resumed: bool
    elapsed: float


async def run_local(
    config: Config,
    options: RunOptions,
    *,
    on_start: Callable[[Progress], None] | None = None,
    on_line: Callable[[Progress], None] | None = None,
) -> Outcome:
    """Run (or resume) the batch of ``options`` to its end; write its output files."""
    started = time.monotonic()
    content = input_lines(options)
    try:
        seconds = window_seconds(options.completion_window)
    except ValueError as exc:
        raise errors.ConfigError(str(exc)) from None
    database = Database(f"sqlite:///{options.state_path}")
    router = Router.from_config(config)
    try:
        await database.migrate()
        store = BatchStore(database)
        key = run_key(content, options)
        record = await store.find_run(key)
        resumed = record is not None
        if record is None:
            record = await _create(store, router, content, options, key, seconds)
        progress = Progress.of(record, resumed)
        if on_start is not None:
            on_start(progress)
        if not record.terminal:
            record = await _work(store, router, record, options, progress, on_line)
        return Outcome(
            record, *await _write(store, record, options), resumed, time.monotonic() - started
        )
    finally:
        await router.aclose()
        await database.aclose()


async def _create(
    store: BatchStore,
    router: Router,
    content: bytes,
    options: RunOptions,
    key: str,
    seconds: float,
) -> BatchRecord:
    parsed = await asyncio.to_thread(parse, content, options, router)
    if parsed.errors:
        raise ValidationFailed(parsed.errors, parsed.error_count)
    models = parsed.models
    if options.mode == "native" and (
        len(models) != 1 or native_deployment(router, models[0]) is None
    ):
        raise errors.ConfigError(
            "--mode native needs one model, served by an openai or anthropic provider; "
            f"the input uses: {', '.join(models)}"
        )
    source = await store.add_file(
        key_id=None, purpose="batch", filename=options.input.name, content=content
    )
    cost = await asyncio.to_thread(
        estimate,
        router,
        _pricing(router),
        options.endpoint,
        parsed.lines,
        price_factor=NATIVE_PRICE if options.mode == "native" else 1.0,
    )
    draft = Draft(
        endpoint=options.endpoint,
        input_file_id=source.id,
        completion_window=options.completion_window,
        window_seconds=seconds,
        mode=options.mode,
        model=models[0] if len(models) == 1 else None,
        max_attempts=options.max_attempts,
        estimate_usd=cost.max_usd,
        run_key=key,
    )
    return await store.create(draft, parsed.lines)


async def _work(
    store: BatchStore,
    router: Router,
    record: BatchRecord,
    options: RunOptions,
    progress: Progress,
    on_line: Callable[[Progress], None] | None,
) -> BatchRecord:
    pricing = _pricing(router)
    settings = WorkerSettings(
        max_concurrency=options.max_concurrency,
        poll_interval=0.5,
        native_poll_interval=options.poll_interval,
        grace=5.0,
    )
    worker = BatchWorker(
        store,
        LineExecutor(router, pricing, clock=store.now),
        settings=settings,
        native=NativeBatches(store, router, pricing),
    )

    def observe(line: Claimed, result: LineResult) -> None:
        progress.line(result)
        if on_line is not None:
            on_line(progress)

    worker.on_line.append(observe)
    return await worker.run(record.id)


async def _write(
    store: BatchStore, record: BatchRecord, options: RunOptions
) -> tuple[Path, Path | None]:
    """The output file (always, possibly empty) and the error file (when a line failed)."""
    output = b""
    if record.output_file_id is not None:
        output = await store.file_content(record.output_file_id) or b""
    _replace(options.output, output)
    errors_path: Path | None = None
    if record.error_file_id is not None:
        errors_path = options.errors_path
        _replace(errors_path, await store.file_content(record.error_file_id) or b"")
    else:
        with contextlib.suppress(FileNotFoundError):
            options.errors_path.unlink()  # a stale one from an earlier run of another input
    return options.output, errors_path


def _replace(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
