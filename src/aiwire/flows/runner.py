"""The runner: source → steps → sinks for each record, durably, with retries and a DLQ.

One run: expire overdue reviews, read the source into ``flow_records`` (records already known
are skipped by key), then work every runnable record with up to ``concurrency`` at a time:

- claim it (one process at a time), resume at its stored position, run each step, and after each
  step write a checkpoint (step metrics + the record's new data and position) in one transaction,
  so a crash repeats at most the step that was running — never a completed model call;
- a ``review`` step stores the record as ``waiting_review`` and leaves it; a decision moves it on
  (:mod:`aiwire.flows.review`) and the next run, or the server at once, continues it;
- each sink: skip if this record's delivery is ``delivered``; else mark it ``pending`` with the
  payload's fingerprint, write (HTTP with an ``Idempotency-Key`` derived from flow, record and
  sink), mark it ``delivered``. A ``pending`` delivery found on resume is first checked against
  the destination where that is possible (files), so a record reaches each sink once;
- a failure is retried (retryable ones: timeouts, 429, 5xx, connection errors) with exponential
  backoff, then handled by ``on_error``: the dead-letter queue (default, with the error and the
  record), ``skip``, or ``stop`` the run.

Run history (per-step count, time, tokens, cost) is written to ``flow_runs``; webhook alerts go
out when a run fails, when the dead-letter queue grows past the flow's threshold, and when a
credential is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import orjson

from aiwire import errors
from aiwire.flows import llm as llm_steps
from aiwire.flows import sources, steps
from aiwire.flows.context import Outcome, RecordContext, StepFailure, record_key
from aiwire.flows.definition import (
    BranchStep,
    ChunkStep,
    ClassifyStep,
    FilterStep,
    HttpSink,
    MapStep,
    ModelStep,
    PromptStep,
    ReviewStep,
    Sink,
    Step,
    TransformStep,
    WebhookSource,
)
from aiwire.flows.llm import LLM, Meter
from aiwire.flows.loader import Flow
from aiwire.flows.sinks import Engines, HttpClients, Writer, idempotency_key, writer_for
from aiwire.flows.store import FlowStore, StepMetrics, jsonable, now, owner_id
from aiwire.observability.alerts import Alerts, AlertsConfig
from aiwire.router import Router

log = logging.getLogger("aiwire.flows")

Progress = Callable[[str, str], None]
#: Records scheduled at once (each waits for one of ``concurrency`` slots).
WORK_BATCH = 1000
Sleep = Callable[[float], Awaitable[None]]


class StopRun(Exception):
    """``on_error: stop``: a record failed and the run ends."""


class _Failed(Exception):
    def __init__(self, stage: str, failure: StepFailure, attempts: int) -> None:
        super().__init__(failure.message)
        self.stage = stage
        self.failure = failure
        self.attempts = attempts


def classify(exc: BaseException, flow: Flow) -> StepFailure:
    """Any exception from a step or sink as a :class:`StepFailure` with a scrubbed message."""
    if isinstance(exc, StepFailure):
        failure = exc
    elif isinstance(exc, errors.AuthenticationError | errors.PermissionDeniedError):
        failure = StepFailure(str(exc), error_class="auth", status=exc.status)
    elif isinstance(exc, errors.ProviderError):
        failure = StepFailure(
            str(exc),
            error_class="transient" if exc.retryable else "permanent",
            retryable=exc.retryable,
            status=exc.status,
        )
    elif isinstance(exc, errors.AIWireError):
        failure = StepFailure(exc.message, error_class="permanent")
    else:
        log.debug("flow %s: unexpected %s", flow.name, type(exc).__name__, exc_info=exc)
        failure = StepFailure(f"{type(exc).__name__}: {exc}", error_class="permanent")
    message = errors.scrub(failure.message, flow.secret_values())
    if message != failure.message:
        scrubbed = StepFailure(
            message,
            error_class=failure.error_class,
            retryable=failure.retryable,
            details=failure.details,
            status=failure.status,
        )
        scrubbed.retry_after = failure.retry_after
        failure = scrubbed
    return failure


@dataclass
class RunStats:
    counts: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def step(self, sid: str, metrics: StepMetrics, outcome: str) -> None:
        s = self.steps.setdefault(
            sid,
            {"done": 0, "skipped": 0, "failed": 0, "ms": 0.0, "calls": 0,
             "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
        )  # fmt: skip
        s[outcome] += 1
        s["ms"] += metrics.ms
        s["calls"] += metrics.calls
        s["input_tokens"] += metrics.input_tokens
        s["output_tokens"] += metrics.output_tokens
        s["cost_usd"] += metrics.cost_usd


@dataclass
class RunSummary:
    run_id: str
    flow: str
    status: str
    counts: dict[str, int]
    steps: dict[str, dict[str, Any]]
    error: str | None = None
    dead_letters: int = 0

    @property
    def cost_usd(self) -> float:
        return sum(float(s.get("cost_usd", 0.0)) for s in self.steps.values())


class FlowRunner:
    """Runs flows over one store and one router. ``aclose()`` when done."""

    def __init__(
        self,
        store: FlowStore,
        router: Router,
        *,
        alerts: Alerts | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.llm = LLM(router)
        self.clients = HttpClients()
        self.engines = Engines()
        self.owner = owner_id()
        self.alerts = alerts
        self._flow_alerts: dict[str, Alerts] = {}
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._writers: dict[tuple[str, str, str], Writer] = {}

    async def aclose(self) -> None:
        await self.clients.aclose()
        await self.engines.aclose()
        for a in self._flow_alerts.values():
            await a.aclose()

    # -- a run -------------------------------------------------------------------------------

    def check_models(self, flow: Flow) -> None:
        known = set(self.router.names)
        for sid, step in flow.steps():
            if isinstance(step, ModelStep | ClassifyStep | ChunkStep) and step.model not in known:
                raise errors.ConfigError(
                    f"flow {flow.name}: step {sid} uses model {step.model!r}, which is not "
                    f"configured (models: {', '.join(sorted(known)) or 'none'}); give a config "
                    "with it, or --simulator for the sim-* models"
                )

    async def run(
        self,
        flow: Flow,
        *,
        trigger: str = "manual",
        read_source: bool = True,
        keys: list[str] | None = None,
        progress: Progress | None = None,
    ) -> RunSummary:
        """One run: read the source (unless ``read_source`` is False or it is a webhook), then
        work every runnable record (or only ``keys``)."""
        self.check_models(flow)
        await self.store.register(flow.name, str(flow.path) if flow.path else None, flow.digest)
        run_id = await self.store.start_run(flow.name, trigger, self.owner, flow.digest)
        stats = RunStats()
        dlq_before = await self.store.open_dead_letters(flow.name)
        status, error = "succeeded", None
        try:
            await self.expire_reviews(flow, stats)
            if read_source and not isinstance(flow.spec.source, WebhookSource):
                await self._ingest_with_retries(flow, stats, run_id)
            todo = keys if keys is not None else await self.store.runnable_keys(flow.name)
            if progress is not None:
                progress("total", str(len(todo)))
            await self._work(flow, todo, run_id, stats, progress)
        except StopRun as exc:
            status, error = "failed", f"stopped (on_error: stop): {exc}"
        except (StepFailure, errors.AIWireError) as exc:
            status, error = "failed", classify(exc, flow).message
        except BaseException:  # cancelled (shutdown), or the process is going down
            status, error = "interrupted", "the run was cancelled before it finished"
            raise
        finally:
            if status == "succeeded" and stats.counts.get("dead", 0):
                status = "partial"
            dlq_after = await asyncio.shield(self.store.open_dead_letters(flow.name))
            await asyncio.shield(
                self.store.finish_run(
                    run_id, status=status, counts=stats.counts, steps=stats.steps, error=error
                )
            )
            if status != "interrupted":
                await self._alert_run(flow, run_id, status, error, dlq_before, dlq_after)
        return RunSummary(run_id, flow.name, status, stats.counts, stats.steps, error, dlq_after)

    async def _ingest_with_retries(self, flow: Flow, stats: RunStats, run_id: str) -> None:
        policy = flow.spec.on_error
        for attempt in range(policy.retries + 1):
            try:
                await self.ingest(flow, stats, run_id)
                return
            except StepFailure as exc:
                if not exc.retryable or attempt >= policy.retries:
                    raise
                await self._sleep(self._backoff(policy.backoff, policy.max_backoff, attempt))

    async def ingest(self, flow: Flow, stats: RunStats, run_id: str) -> None:
        cursor_name = flow.spec.source.kind
        async for batch in sources.read(flow, self.store, self.clients, self.engines):
            good: list[tuple[str, dict[str, Any]]] = []
            bad: list[tuple[str, dict[str, Any], str]] = []
            for item in batch.items:
                if item.error is not None:
                    bad.append((_hash_key(item.data), item.data, item.error))
                    continue
                try:
                    good.append((record_key(flow, item.data), item.data))
                except StepFailure as exc:
                    bad.append((_hash_key(item.data), item.data, exc.message))
            new = await self.store.ingest(flow.name, good)
            stats.count("read", len(good) + len(bad))
            stats.count("new", new)
            stats.count("already_known", len(good) - new)
            for key, data, why in bad:
                if await self.store.ingest(flow.name, [(key, data)]):
                    await self.store.dead_letter(
                        flow.name,
                        key,
                        stage="source",
                        error_class="invalid_input",
                        error=why,
                        record={"source": data},
                        attempts=1,
                        run_id=run_id,
                    )
                    stats.count("dead")
            if batch.cursor is not None:
                await self.store.set_cursor(flow.name, cursor_name, batch.cursor)

    async def _work(
        self, flow: Flow, keys: list[str], run_id: str, stats: RunStats, progress: Progress | None
    ) -> None:
        gate = asyncio.Semaphore(flow.spec.concurrency)
        stop = asyncio.Event()

        async def one(key: str) -> None:
            async with gate:
                if stop.is_set():
                    return
                try:
                    await self.process(flow, key, run_id, stats)
                except StopRun:
                    stop.set()
                    raise
                finally:
                    if progress is not None:
                        progress("record", key)

        for start in range(0, len(keys), WORK_BATCH):  # bounded: no task per record up front
            batch = keys[start : start + WORK_BATCH]
            results = await asyncio.gather(*(one(k) for k in batch), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if stop.is_set():
                return

    # -- one record --------------------------------------------------------------------------

    async def process(
        self, flow: Flow, key: str, run_id: str | None, stats: RunStats
    ) -> str | None:
        """Work one record as far as it goes; its final (or waiting) state, or None when it
        could not be claimed (finished, or another process has it)."""
        claimed = await self.store.claim(flow.name, key, self.owner, run_id or "")
        if claimed is None:
            return None
        ctx = RecordContext(flow, key, claimed.source, claimed.data, run_id)
        try:
            state = await self._steps_and_sinks(flow, ctx, claimed.position, stats)
        except _Failed as failed:
            return await self._failed(flow, ctx, failed, stats)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(flow.name, key))
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(flow.name, key))
            raise
        stats.count(state)
        return state

    async def _steps_and_sinks(
        self, flow: Flow, ctx: RecordContext, position: int, stats: RunStats
    ) -> str:
        all_steps = flow.steps()
        ids = [sid for sid, _ in all_steps]
        pos = position
        while pos < len(all_steps):
            sid, step = all_steps[pos]
            if step.when is not None and not self._holds(step.when, ctx, flow, sid):
                await self.store.checkpoint(
                    flow.name,
                    ctx.key,
                    self.owner,
                    step=sid,
                    status="skipped",
                    position=pos + 1,
                    data=ctx.data,
                    run_id=ctx.run_id,
                )
                stats.step(sid, StepMetrics(), "skipped")
                pos += 1
                continue
            outcome = await self._attempt(flow, sid, step, ctx, stats)
            if outcome.review is not None:
                request = outcome.review
                due = None if request.timeout is None else now() + _seconds(request.timeout)
                await self.store.open_review(
                    flow.name,
                    ctx.key,
                    step=sid,
                    queue=request.queue,
                    draft=request.draft,
                    source=ctx.source,
                    editable=request.editable,
                    instructions=request.instructions,
                    due_at=due,
                    position=pos,
                    data=ctx.data,
                )
                return "waiting_review"
            if isinstance(step, ReviewStep) and outcome.output is not None:
                await self.store.auto_review(
                    flow.name,
                    ctx.key,
                    step=sid,
                    queue=step.queue,
                    draft=outcome.output.get("draft", {}),
                    source=ctx.source,
                    policy=str(step.auto_approve),
                )
            if outcome.filtered is not None:
                await self.store.checkpoint(
                    flow.name,
                    ctx.key,
                    self.owner,
                    step=sid,
                    status="done",
                    position=len(all_steps),
                    data=outcome.data,
                    run_id=ctx.run_id,
                    metrics=outcome.metrics,
                    output={"filtered": outcome.filtered},
                )
                await self.store.finish(flow.name, ctx.key, "filtered", error=outcome.filtered)
                return "filtered"
            if outcome.goto == "next":
                nxt = pos + 1
            elif outcome.goto == "end":
                nxt = len(all_steps)
            else:
                nxt = ids.index(outcome.goto)
            await self.store.checkpoint(
                flow.name,
                ctx.key,
                self.owner,
                step=sid,
                status="done",
                position=nxt,
                data=outcome.data,
                run_id=ctx.run_id,
                metrics=outcome.metrics,
                output=outcome.output,
            )
            ctx.data = outcome.data
            pos = nxt
        for sink_id, sink in zip(flow.spec.sink_ids(), flow.spec.sinks, strict=True):
            if sink.when is not None and not self._holds(sink.when, ctx, flow, f"sink:{sink_id}"):
                stats.step(f"sink:{sink_id}", StepMetrics(), "skipped")
                continue
            await self._deliver(flow, sink_id, sink, ctx, stats)
        await self.store.finish(flow.name, ctx.key, "done", data=ctx.data)
        return "done"

    def _holds(self, expression: str, ctx: RecordContext, flow: Flow, stage: str) -> bool:
        try:
            return steps.test(expression, ctx.names())
        except StepFailure as exc:
            raise _Failed(stage, classify(exc, flow), 1) from None

    async def _attempt(
        self, flow: Flow, sid: str, step: Step, ctx: RecordContext, stats: RunStats
    ) -> Outcome:
        policy = flow.spec.on_error
        retries = policy.retries if step.retries is None else step.retries
        attempt = 0
        while True:
            meter = Meter(self.router)
            started = time.perf_counter()
            try:
                outcome = await self._execute(sid, step, ctx, meter)
            except Exception as exc:
                ms = (time.perf_counter() - started) * 1000
                stats.step(sid, meter.metrics(ms), "failed")
                failure = classify(exc, flow)
                if failure.retryable and attempt < retries:
                    await self._sleep(self._backoff(policy.backoff, policy.max_backoff, attempt))
                    attempt += 1
                    continue
                raise _Failed(sid, failure, attempt + 1) from None
            ms = (time.perf_counter() - started) * 1000
            outcome.metrics = replace(outcome.metrics, ms=ms)
            stats.step(sid, outcome.metrics, "done")
            return outcome

    async def _execute(self, sid: str, step: Step, ctx: RecordContext, meter: Meter) -> Outcome:
        if isinstance(step, MapStep):
            return steps.run_map(step, ctx)
        if isinstance(step, TransformStep):
            return steps.run_transform(step, ctx)
        if isinstance(step, PromptStep):
            return steps.run_prompt(step, ctx)
        if isinstance(step, BranchStep):
            return steps.run_branch(step, ctx)
        if isinstance(step, FilterStep):
            return steps.run_filter(step, ctx)
        if isinstance(step, ReviewStep):
            return steps.run_review(step, ctx)
        if isinstance(step, ModelStep):
            return await llm_steps.run_model(step, sid, ctx, self.llm, meter)
        if isinstance(step, ClassifyStep):
            return await llm_steps.run_classify(step, sid, ctx, self.llm, meter)
        return await llm_steps.run_chunk(step, sid, ctx, self.llm, meter)

    # -- sinks -------------------------------------------------------------------------------

    def _writer(self, flow: Flow, sink_id: str, sink: Sink) -> Writer:
        cache = (flow.name, flow.digest, sink_id)
        writer = self._writers.get(cache)
        if writer is None:
            writer = self._writers[cache] = writer_for(
                sink,
                allow=tuple(flow.spec.allow_hosts),
                clients=self.clients,
                engines=self.engines,
                resolve_path=lambda p: flow.resolve_path(p),
                where=f"{flow.name}: sinks.{sink_id}.url",
            )
        return writer

    async def _deliver(
        self, flow: Flow, sink_id: str, sink: Sink, ctx: RecordContext, stats: RunStats
    ) -> None:
        stage = f"sink:{sink_id}"
        existing = await self.store.delivery(flow.name, ctx.key, sink_id)
        if existing is not None and existing.status == "delivered":
            stats.step(stage, StepMetrics(), "skipped")
            return
        writer = self._writer(flow, sink_id, sink)
        idem = idempotency_key(flow.name, ctx.key, sink_id)
        policy = flow.spec.on_error
        retries = policy.retries if sink.retries is None else sink.retries
        backoff = sink.backoff if isinstance(sink, HttpSink) else policy.backoff
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                prepared = writer.prepare(ctx)
                if (
                    existing is not None
                    and existing.status == "pending"
                    and existing.fingerprint == prepared.fingerprint
                    and await writer.present(prepared)
                ):
                    await self.store.delivered(flow.name, ctx.key, sink_id, None)
                    stats.step(
                        stage, StepMetrics(ms=(time.perf_counter() - started) * 1000), "done"
                    )
                    return
                await self.store.delivery_pending(
                    flow.name, ctx.key, sink_id, idem, prepared.fingerprint
                )
                status = await writer.write(prepared, idem, ctx)
                await self.store.delivered(flow.name, ctx.key, sink_id, status)
            except Exception as exc:
                stats.step(stage, StepMetrics(ms=(time.perf_counter() - started) * 1000), "failed")
                failure = classify(exc, flow)
                if failure.retryable and attempt < retries:
                    delay = self._backoff(backoff, policy.max_backoff, attempt)
                    if failure.retry_after:  # the destination said when to come back
                        delay = min(policy.max_backoff, max(delay, failure.retry_after))
                    await self._sleep(delay)
                    attempt += 1
                    continue
                raise _Failed(stage, failure, attempt + 1) from None
            stats.step(stage, StepMetrics(ms=(time.perf_counter() - started) * 1000), "done")
            return

    # -- failures, reviews, alerts -----------------------------------------------------------

    async def _failed(
        self, flow: Flow, ctx: RecordContext, failed: _Failed, stats: RunStats
    ) -> str:
        failure = failed.failure
        action = flow.spec.on_error.action
        log.warning(
            "flow %s: record %s failed at %s (%s): %s",
            flow.name,
            ctx.key,
            failed.stage,
            failure.error_class,
            failure.message,
        )
        if failure.error_class == "auth":
            await self._fire(
                flow,
                "flow_credential_error",
                f"{flow.name}:{failed.stage}",
                f"flow {flow.name}: a credential was refused at {failed.stage}: {failure.message}",
                {"flow": flow.name, "stage": failed.stage},
            )
        if action == "skip":
            await self.store.finish(flow.name, ctx.key, "skipped", error=failure.message)
            stats.count("skipped")
            return "skipped"
        await self.store.dead_letter(
            flow.name,
            ctx.key,
            stage=failed.stage,
            error_class=failure.error_class,
            error=failure.message,
            record={"data": ctx.data, "source": ctx.source},
            attempts=failed.attempts,
            run_id=ctx.run_id,
            details=failure.details,
        )
        stats.count("dead")
        if action == "stop":
            raise StopRun(f"record {ctx.key} failed at {failed.stage}: {failure.message}")
        return "dead"

    async def expire_reviews(self, flow: Flow, stats: RunStats | None = None) -> int:
        from aiwire.flows.review import ReviewQueue

        queue = ReviewQueue(self.store, {flow.name: flow})
        expired = 0
        for review in await self.store.due_reviews(flow.name):
            if await queue.expire(review.id):
                expired += 1
        if stats is not None and expired:
            stats.count("reviews_timed_out", expired)
        return expired

    def _alerts_for(self, flow: Flow) -> list[Alerts]:
        out = [self.alerts] if self.alerts is not None else []
        if flow.spec.alerts.webhooks:
            mine = self._flow_alerts.get(flow.name)
            if mine is None:
                mine = self._flow_alerts[flow.name] = Alerts(
                    AlertsConfig(
                        webhooks=list(flow.spec.alerts.webhooks),
                        dedupe_seconds=flow.spec.alerts.dedupe_seconds,
                        # the flow's SSRF allow-list covers its own alert webhooks too
                        allow_hosts=list(flow.spec.allow_hosts),
                    )
                )
            out.append(mine)
        return out

    async def _fire(
        self, flow: Flow, kind: str, key: str, text: str, details: dict[str, Any]
    ) -> None:
        for alerts in self._alerts_for(flow):
            await alerts.fire(kind, key, text, details)

    async def _alert_run(
        self, flow: Flow, run_id: str, status: str, error: str | None, before: int, after: int
    ) -> None:
        if status == "failed":
            await self._fire(
                flow,
                "flow_run_failed",
                f"{flow.name}:{run_id}",
                f"flow {flow.name}: run {run_id} failed: {error}",
                {"flow": flow.name, "run_id": run_id, "error": error},
            )
        if after > before and after > flow.spec.alerts.dlq_threshold:
            await self._fire(
                flow,
                "flow_dlq_grew",
                f"{flow.name}:{after}",
                f"flow {flow.name}: the dead-letter queue grew from {before} to {after} "
                f"(see: aiwire flow dlq {flow.name}; replay: aiwire flow replay {flow.name} --dlq)",
                {"flow": flow.name, "run_id": run_id, "before": before, "after": after},
            )

    def _backoff(self, base: float, cap: float, attempt: int) -> float:
        delay = min(cap, base * (2**attempt))
        return float(
            delay * (0.5 + self._rng.random() / 2)
        )  # jitter: replicas do not retry in step

    async def replay(
        self, flow: Flow, *, ids: list[str] | None = None, progress: Progress | None = None
    ) -> RunSummary:
        """Requeue the flow's open dead letters (or ``ids``) and run those records again from
        the step that failed (completed steps and deliveries are not repeated)."""
        keys = await self.store.requeue_dead_letters(flow.name, ids)
        return await self.run(
            flow, trigger="replay", read_source=False, keys=keys, progress=progress
        )


def _hash_key(data: dict[str, Any]) -> str:
    """The key of something read that is not a usable record (its content hash)."""
    canonical = orjson.dumps(jsonable(data), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
