"""Prometheus metrics at ``/metrics``: what the gateway served, how fast, at what cost.

Sources, all off the request's critical path except one observer call per request:

* every finished request's log row (``Gateway.observers``): requests by model, deployment,
  provider, key name and status; latency and time to first token; tokens; cost; retries;
  fallbacks; cache hits;
* every router attempt (``Router.on_attempt``) by deployment and outcome, and every circuit
  that opens (``Router.on_cooldown``);
* every pacing decision, through :class:`PacingMeter` around the pacer's counter state;
* in-flight requests and open circuits, sampled when ``/metrics`` is read.

**Cardinality is bounded by construction**: a model label is a configured model name (anything
a client made up is ``other``), deployments and providers are the configured ones, a key is
labelled by its *name* (never its id, prefix or secret) and only the first ``max_key_labels``
distinct names get their own value (later ones share ``other``). No label ever holds request
content.

**Cost per request**: recording a row is a tuple-keyed dictionary lookup and a few additions to
plain attributes (about 1 µs, measured in ``tests/observability/test_metrics.py``);
prometheus-client's children (a lock per value, memory-mapped files in multiprocess mode) are
updated in batches, when /metrics is read or every ``metrics.sample_seconds``.

**Several worker processes** (``aiwire serve --workers N``): export ``PROMETHEUS_MULTIPROC_DIR``
(an empty directory, wiped before each start) before starting; every worker then writes its
values to files there and whichever worker answers ``/metrics`` reports the sum over all of
them (prometheus-client's multiprocess mode). Gauges are kept current by each worker every
``metrics.sample_seconds``: in-flight requests are summed over live workers, an open circuit
counts if any live worker has it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from aiwire import errors
from aiwire.limits.state import BudgetCheck, LimitState, PaceCheck, RateCheck, Verdict
from aiwire.observability.directory import KeyDirectory, KeyInfo
from aiwire.server import openai_wire
from aiwire.server.asgi import Receive, Scope, Send, respond
from aiwire.server.auth import ScopeAuth
from aiwire.store.writer import RequestLogRow

if TYPE_CHECKING:
    from aiwire.router import AttemptEvent, Deployment

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The label value for anything outside the bounded set (unknown model, keys past the cap).
OTHER = "other"
MASTER = "master"
#: A key whose name could not be looked up (deleted, or the store was down).
UNKNOWN = "unknown"

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
PACING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Rows of one not-yet-known key kept while its name is looked up (more are counted anyway).
MAX_PENDING = 10_000


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


class _Pending:
    """A histogram's observations since the last flush: per-bucket counts and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value

    def flush(self, child: Histogram) -> None:
        if not any(self.counts):
            return
        # Histogram children keep one (non-cumulative) value per bucket plus the sum: add the
        # batch to each (prometheus-client's own observe() does the same one at a time).
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)
        child._sum.inc(self.sum)
        self.counts = [0] * len(self.counts)
        self.sum = 0.0


class _Series:
    """One (model, deployment, key, status): values accumulated since the last flush, and the
    prometheus-client children they are flushed into.

    Recording a request only adds to plain attributes (a few hundred nanoseconds); the
    children's locks and (in multiprocess mode) memory-mapped files are touched once per
    flush: when /metrics is read, and every ``sample_seconds`` in multiprocess mode.
    """

    __slots__ = (
        "cache_hits",
        "children",
        "cost",
        "fallbacks",
        "latency",
        "requests",
        "retries",
        "tokens_in",
        "tokens_out",
        "ttft",
    )

    def __init__(self, m: Metrics, model: str, dep: str, provider: str, key: str, status: str):
        self.children = (
            m.requests.labels(model, dep, provider, key, status),
            m.latency.labels(model, dep),
            m.ttft.labels(model, dep),
            m.tokens.labels(model, dep, key, "input"),
            m.tokens.labels(model, dep, key, "output"),
            m.cost.labels(model, dep, key),
            m.retries.labels(model, dep),
            m.fallbacks.labels(model, dep),
            m.cache_hits.labels(model, key),
        )
        self.requests = 0
        self.latency = _Pending(LATENCY_BUCKETS)
        self.ttft = _Pending(TTFT_BUCKETS)
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.retries = 0
        self.fallbacks = 0
        self.cache_hits = 0

    def flush(self) -> None:
        if not self.requests:
            return
        requests, latency, ttft, tin, tout, cost, retries, fallbacks, hits = self.children
        requests.inc(self.requests)
        self.latency.flush(latency)
        self.ttft.flush(ttft)
        for child, amount in (
            (tin, self.tokens_in),
            (tout, self.tokens_out),
            (cost, self.cost),
            (retries, self.retries),
            (fallbacks, self.fallbacks),
            (hits, self.cache_hits),
        ):
            if amount:
                child.inc(amount)
        self.requests = self.tokens_in = self.tokens_out = 0
        self.retries = self.fallbacks = self.cache_hits = 0
        self.cost = 0.0


class Metrics:
    """The metric families and the observers that feed them.

    ``models``: the configured model names; ``deployments``: configured deployment id ->
    provider name. ``directory`` names keys (without one, every key is ``unknown``).
    """

    def __init__(
        self,
        *,
        models: Iterable[str],
        deployments: Mapping[str, str],
        directory: KeyDirectory | None = None,
        max_key_labels: int = 50,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._models = frozenset(models)
        self._providers = dict(deployments)
        self.directory = directory
        self.max_key_labels = max_key_labels
        self._key_labels: dict[str | None, str] = {None: MASTER}
        self._names: set[str] = set()
        self._series: dict[tuple[str, str | None, str, int], _Series] = {}
        self._attempt_counts: dict[tuple[str, str], int] = {}
        self._pacing: dict[str, tuple[_Pending, list[int]]] = {}
        self._pending: dict[str, list[RequestLogRow]] = {}
        r = self.registry
        req_labels = ["model", "deployment", "provider", "key", "status"]
        self.requests = Counter(
            "aiwire_requests", "Requests answered, by outcome.", req_labels, registry=r
        )
        self.latency = Histogram(
            "aiwire_request_duration_seconds",
            "Time from request received to the last byte of the answer.",
            ["model", "deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aiwire_time_to_first_token_seconds",
            "Streamed requests: time from request received to the first chunk.",
            ["model", "deployment"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "aiwire_tokens",
            "Tokens the provider reported, by type (input or output).",
            ["model", "deployment", "key", "type"],
            registry=r,
        )
        self.cost = Counter(
            "aiwire_cost_usd",
            "What the provider bills, by the catalog's prices (cache hits cost nothing).",
            ["model", "deployment", "key"],
            registry=r,
        )
        self.retries = Counter(
            "aiwire_retries",
            "Upstream attempts beyond a request's first.",
            ["model", "deployment"],
            registry=r,
        )
        self.fallbacks = Counter(
            "aiwire_fallbacks",
            "Requests answered by a fallback model.",
            ["model", "deployment"],
            registry=r,
        )
        self.cache_hits = Counter(
            "aiwire_cache_hits",
            "Requests answered from the response cache.",
            ["model", "key"],
            registry=r,
        )
        self.attempts = Counter(
            "aiwire_upstream_attempts",
            "Upstream attempts by deployment and outcome (ok, or the error class).",
            ["deployment", "outcome"],
            registry=r,
        )
        self.pacing_wait = Histogram(
            "aiwire_pacing_wait_seconds",
            "Time an attempt waited in its deployment's pacing queue (rpm/tpm).",
            ["deployment"],
            buckets=PACING_BUCKETS,
            registry=r,
        )
        self.pacing_full = Counter(
            "aiwire_pacing_queue_full",
            "Attempts refused because the pacing queue was longer than router.max_queue_wait.",
            ["deployment"],
            registry=r,
        )
        self.cooldowns = Counter(
            "aiwire_cooldowns",
            "Times a deployment's circuit opened after consecutive failures.",
            ["deployment"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "aiwire_deployment_circuit_open",
            "1 while the deployment is cooling down (its circuit is open).",
            ["deployment"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.inflight = Gauge(
            "aiwire_inflight_requests",
            "Requests being answered right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        #: Set by :func:`install`: reads the gauges' current values.
        self.sampler: Callable[[], None] | None = None

    # -- request rows (the hot path) ----------------------------------------------------------

    def observe(self, row: RequestLogRow) -> None:
        """Record one finished request (a ``Gateway.observers`` callback)."""
        label = self._key_labels.get(row.key_id)
        if label is None:
            label = self._label_of_new(row)
            if label is None:
                return  # recorded once the key's name is known
        model = row.model if row.model in self._models else OTHER
        series = self._series.get((model, row.deployment, label, row.status))
        if series is None:
            series = self._new_series(model, row.deployment, label, row.status)
        series.requests += 1
        series.latency.observe(row.latency_ms / 1000.0)
        if row.ttft_ms is not None:
            series.ttft.observe(row.ttft_ms / 1000.0)
        series.tokens_in += row.input_tokens
        series.tokens_out += row.output_tokens
        series.cost += row.cost_usd
        series.retries += row.retries
        series.fallbacks += row.fallback
        series.cache_hits += row.cache_hit

    def flush(self) -> None:
        """Move what was recorded since the last flush into the metric families."""
        for series in self._series.values():
            series.flush()
        counts, self._attempt_counts = self._attempt_counts, {}
        for (dep, outcome), n in counts.items():
            self.attempts.labels(self._dep_label(dep), outcome).inc(n)
        for dep, (waits, full) in self._pacing.items():
            label = self._dep_label(dep)
            waits.flush(self.pacing_wait.labels(label))
            if full[0]:
                self.pacing_full.labels(label).inc(full[0])
                full[0] = 0

    def _dep_label(self, deployment: str) -> str:
        return deployment if deployment in self._providers else OTHER

    def _new_series(self, model: str, dep: str | None, key: str, status: int) -> _Series:
        provider = self._providers.get(dep, OTHER) if dep is not None else ""
        dep_label = (dep if dep in self._providers else OTHER) if dep is not None else ""
        series = _Series(self, model, dep_label, provider, key, str(status))
        self._series[(model, dep, key, status)] = series
        return series

    def _label_of_new(self, row: RequestLogRow) -> str | None:
        """The label of a key seen for the first time, or None when its name must be looked
        up first (the row is recorded then)."""
        key_id = row.key_id
        assert key_id is not None  # the master key's label is preset
        info = self.directory.get(key_id) if self.directory is not None else None
        if info is not None:
            return self._assign(key_id, info.name)
        if self.directory is None:
            return self._assign(key_id, None)
        pending = self._pending.get(key_id)
        if pending is not None:
            if len(pending) < MAX_PENDING:
                pending.append(row)
            return None
        self._pending[key_id] = [row]
        try:
            self.directory.resolve(key_id, lambda info: self._resolved(key_id, info))
        except RuntimeError:  # no event loop (a synchronous caller): no lookup possible
            self._pending.pop(key_id, None)
            return self._assign(key_id, None)
        return None

    def _resolved(self, key_id: str, info: KeyInfo | None) -> None:
        self._assign(key_id, info.name if info is not None else None)
        for row in self._pending.pop(key_id, []):
            self.observe(row)

    def _assign(self, key_id: str, name: str | None) -> str:
        if name is None:
            label = UNKNOWN
        elif name in self._names or len(self._names) < self.max_key_labels:
            self._names.add(name)
            label = name
        else:
            label = OTHER
        if name is not None:  # an unknown key may become known later
            self._key_labels[key_id] = label
        return label

    # -- router and pacing ----------------------------------------------------------------

    def on_attempt(self, event: AttemptEvent) -> None:
        outcome = "ok" if event.error is None else type(event.error).__name__
        key = (event.deployment, outcome)
        self._attempt_counts[key] = self._attempt_counts.get(key, 0) + 1

    def on_cooldown(self, dep: Deployment, seconds: float) -> None:
        label = dep.id if dep.id in self._providers else OTHER
        self.cooldowns.labels(label).inc()
        self.circuit_open.labels(label).set(1)

    def on_pace(self, deployment: str, wait: float | None) -> None:
        pending = self._pacing.get(deployment)
        if pending is None:
            pending = self._pacing[deployment] = (_Pending(PACING_BUCKETS), [0])
        if wait is None:
            pending[1][0] += 1
        else:
            pending[0].observe(wait)

    def sample_gauges(self, inflight: int, deployments: Sequence[Deployment]) -> None:
        self.inflight.set(inflight)
        now = time.monotonic()
        for dep in deployments:
            if dep.id in self._providers:
                self.circuit_open.labels(dep.id).set(1 if dep.state(now) == "open" else 0)

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition: this process' registry, or every worker's in multiprocess
        mode."""
        self.flush()
        if self.sampler is not None:
            self.sampler()
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class PacingMeter(LimitState):
    """The pacer's counter state, reporting each pacing decision: wraps ``Pacer.state``, so
    waits are measured where they are decided without the pacer knowing about metrics."""

    def __init__(self, inner: LimitState, on_pace: Callable[[str, float | None], None]) -> None:
        self.inner = inner
        self._on_pace = on_pace

    async def pace(self, key: str, dims: Sequence[PaceCheck], max_wait: float) -> float | None:
        wait = await self.inner.pace(key, dims, max_wait)
        with contextlib.suppress(Exception):  # metrics must never fail an attempt
            self._on_pace(key.removeprefix("pace:"), wait)
        return wait

    async def admit(
        self, rid: str, rates: Sequence[RateCheck], budgets: Sequence[BudgetCheck], lease: float
    ) -> Verdict:
        return await self.inner.admit(rid, rates, budgets, lease)

    async def settle(
        self,
        rid: str,
        rates: Sequence[tuple[str, float]],
        budgets: Sequence[tuple[str, float]],
    ) -> list[float]:
        return await self.inner.settle(rid, rates, budgets)

    async def spent(self, key: str) -> float | None:
        return await self.inner.spent(key)

    async def pace_feedback(
        self,
        key: str,
        *,
        corrections: Sequence[tuple[int, float, float]] = (),
        remaining: Sequence[tuple[int, float, float]] = (),
        throttled: float | None = None,
    ) -> None:
        await self.inner.pace_feedback(
            key, corrections=corrections, remaining=remaining, throttled=throttled
        )

    async def aclose(self) -> None:
        return None  # the inner state belongs to whoever created it


class MetricsEndpoint:
    """``GET /metrics``: the master key or an admin-scoped key, unless ``public``."""

    def __init__(self, metrics: Metrics, authenticate: ScopeAuth, *, public: bool = False) -> None:
        self.metrics = metrics
        self.authenticate = authenticate
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            exc = errors.BadRequestError(
                f"{scope['method']} is not allowed on /metrics; use GET", status=405
            )
            await _fail(send, exc)
            return
        if not self.public:
            try:
                principal = await self.authenticate(scope)
            except errors.AIWireError as exc:
                await _fail(send, exc)
                return
            if not principal.is_admin:
                await _fail(
                    send,
                    errors.PermissionDeniedError(
                        "/metrics needs the master key or a key with the admin scope (or "
                        "metrics.public: true in the config)",
                        code="master_key_required",
                    ),
                )
                return
        body = self.metrics.render()
        await respond(send, 200, body, content_type=CONTENT_TYPE_LATEST.encode())


async def _fail(send: Send, exc: errors.AIWireError) -> None:
    status, body, headers = openai_wire.error_body(exc)
    await respond(send, status, body, headers=headers.items())


class Publisher:
    """Multiprocess mode: writes this worker's values to the shared directory every
    ``interval`` seconds and at shutdown (another worker may be the one answering /metrics).
    In a single process nothing is needed: /metrics reads the values directly."""

    def __init__(self, metrics: Metrics, interval: float) -> None:
        self.metrics = metrics
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> None:
        self.metrics.flush()
        if self.metrics.sampler is not None:
            self.metrics.sampler()

    async def _run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.tick()  # the last requests' values
        path = multiprocess_dir()
        if path is not None:
            # This worker's live gauges stop counting (its counters stay in the sums).
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
