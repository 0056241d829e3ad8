"""The router: the one place that decides where a request goes, and what happens when it fails.

A model name maps to one or more deployments (provider + upstream model). For each request the
router picks a healthy deployment (least in-flight or weighted), enforces the attempt's timeouts,
retries retryable errors with exponential backoff and full jitter (waiting at least the
``retry_after`` the provider asked for), moves on to configured fallbacks, and keeps a circuit
breaker per deployment. A stream is never retried once its first chunk has been yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from aiwire import errors
from aiwire.catalog import Catalog
from aiwire.config import Config, DeploymentConfig, RouterConfig
from aiwire.limits.pacing import Pacer, Slot
from aiwire.limits.state import LimitState, MemoryState
from aiwire.providers.base import Provider, Timeouts
from aiwire.providers.media import (
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
)
from aiwire.providers.registry import provider_class
from aiwire.ratelimit import RateLimitInfo
from aiwire.rollouts.split import Rollout
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    RawChatResponse,
    RawChunk,
    Usage,
)
from aiwire.watchdog import Watchdog

log = logging.getLogger("aiwire.router")
R = TypeVar("R", ChatResponse, RawChatResponse, ChatResponse | RawChatResponse)
R2 = TypeVar(
    "R2",
    ChatResponse,
    RawChatResponse,
    ChatResponse | RawChatResponse,
    EmbeddingResponse,
    ImageResponse,
    TranscriptionResponse,
)
#: What the pacing queue sees of a request (it estimates tokens from chat or embedding input).
Paced = ChatRequest | EmbeddingRequest
C = TypeVar("C", ChatChunk, RawChunk, ChatChunk | RawChunk)


@dataclass(eq=False)
class Deployment:
    """One upstream serving a model name, with its health state."""

    name: str
    provider: Provider
    model: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    weight: float = 1.0
    fallbacks: list[str] = field(default_factory=list)
    context_window_fallbacks: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    #: This deployment's label in its model name's canary rollout (``new``, ``old``).
    variant: str | None = None

    inflight: int = 0
    consecutive_failures: int = 0
    open_until: float = 0.0  # circuit open (cooling down) until this monotonic time
    probing: bool = False  # a half-open probe is in flight
    rate_limited_until: float = 0.0

    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    #: ``name@provider/model``: how logs, metrics and responses name this deployment.
    id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.id = f"{self.name}@{self.provider.name}/{self.model}"

    @property
    def full(self) -> bool:
        return self.max_concurrency is not None and self.inflight >= self.max_concurrency

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_concurrency`` upstream slots (waiting for one if all are taken)."""
        if self.max_concurrency is None:
            yield
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        async with self._slots:
            yield

    def state(self, now: float) -> str:
        if self.consecutive_failures == 0 or self.open_until == 0.0:
            return "closed"
        return "open" if now < self.open_until else "half-open"


class AttemptEvent(NamedTuple):
    """What one attempt did; observers (logs, metrics) subscribe with ``Router.on_attempt``."""

    model: str
    deployment: str
    attempt: int
    error: errors.ProviderError | None
    waited: float
    fallback: bool


class Router:
    def __init__(
        self,
        deployments: list[Deployment],
        settings: RouterConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        pacer: Pacer | None = None,
        rollouts: dict[str, Rollout] | None = None,
    ) -> None:
        self.settings = settings or RouterConfig()
        #: Canary rollouts by model name: which variant's deployments serve a request.
        self.rollouts: dict[str, Rollout] = dict(rollouts or {})
        self._by_name: dict[str, list[Deployment]] = {}
        for d in deployments:
            self._by_name.setdefault(d.name, []).append(d)
        self._by_id = {d.id: d for d in deployments}
        self._providers = {id(d.provider): d.provider for d in deployments}
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.on_attempt: list[Callable[[AttemptEvent], None]] = []
        #: Called when a deployment's circuit opens, with the cooldown in seconds (replicas
        #: share it through :class:`aiwire.limits.health.HealthSync`).
        self.on_cooldown: list[Callable[[Deployment, float], None]] = []
        #: Refuses, before sending, a request too large for a deployment's context window.
        self.context_guard: Callable[[str, ChatRequest], Awaitable[None]] | None = None
        #: The model catalog (prices, windows), when built from config.
        self.catalog: Catalog | None = None
        #: Keeps deployments under their providers' limits (see :mod:`aiwire.limits.pacing`).
        self.pacer = pacer or Pacer(MemoryState(), max_wait=self.settings.max_queue_wait)
        for d in deployments:
            if d.rpm is not None or d.tpm is not None:
                self.pacer.configure(d.id, d.rpm, d.tpm)

    # -- construction --

    @classmethod
    def from_config(cls, config: Config, *, state: LimitState | None = None) -> Router:
        """``state``: where pacing counters live (default: this process)."""
        providers: dict[str, Provider] = {}
        for pname, pconf in config.providers.items():
            adapter = provider_class(pconf.type)
            providers[pname] = adapter(
                name=pname,
                api_key=pconf.key(pname),
                base_url=pconf.base_url,
                headers=pconf.headers,
                options=pconf.adapter_options(),
            )
        deployments = [_deployment(d, providers[d.provider], config.router) for d in config.models]
        pacer = Pacer(state or MemoryState(), max_wait=config.router.max_queue_wait)
        router = cls(deployments, config.router, pacer=pacer, rollouts=config.rollouts())
        from aiwire import catalog
        from aiwire.limits.context import ContextGuard

        router.catalog = catalog.load(config.catalog)
        router.context_guard = ContextGuard(router.catalog).check
        return router

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def deployment(self, deployment_id: str) -> Deployment | None:
        """The deployment with this ``id`` (``name@provider/model``)."""
        return self._by_id.get(deployment_id)

    def deployments(self, name: str | None = None) -> list[Deployment]:
        if name is None:
            return [d for ds in self._by_name.values() for d in ds]
        return list(self._by_name.get(name, []))

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()

    # -- the three operations --

    async def chat(self, request: ChatRequest) -> ChatResponse:
        async def once(dep: Deployment) -> ChatResponse:
            return await _attempt(dep, dep.provider.chat, request, self.context_guard)

        return await self._run(request, once)

    async def chat_passthrough(self, request: ChatRequest) -> ChatResponse | RawChatResponse:
        """:meth:`chat` for a gateway that answers in OpenAI's protocol: a deployment whose
        adapter speaks it too answers with the upstream's own bytes (:class:`RawChatResponse`),
        any other with a canonical response. Retries and fallbacks are the same."""

        async def once(dep: Deployment) -> ChatResponse | RawChatResponse:
            provider = dep.provider
            call = provider.chat_raw if provider.passthrough else provider.chat
            return await _attempt(dep, call, request, self.context_guard)

        return await self._run(request, once)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        async def once(dep: Deployment) -> EmbeddingResponse:
            req = request.model_copy(update={"model": dep.model})
            total = dep.timeouts.total
            try:
                async with asyncio.timeout(total):
                    resp = await dep.provider.embed(req, dep.timeouts)
            except TimeoutError:
                raise _timed_out(dep, total) from None
            resp.deployment = dep.id
            return resp

        return await self._run(request, once)

    async def images(self, request: ImageRequest) -> ImageResponse:
        """Generate images, with the retries, fallbacks and pacing of every operation (a
        deployment's ``rpm`` counts image requests; the prompt counts as its tokens)."""

        async def once(dep: Deployment) -> ImageResponse:
            req = request.model_copy(update={"model": dep.model})
            resp = await _bounded(dep, dep.provider.images(req, dep.timeouts))
            resp.deployment = dep.id
            return resp

        pace = EmbeddingRequest(model=request.model, input=request.prompt)
        return await self._run(request, once, pace=pace, user=request.user)

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResponse:
        """Speech to text, with the retries, fallbacks and pacing of every operation."""

        async def once(dep: Deployment) -> TranscriptionResponse:
            req = request.model_copy(update={"model": dep.model})
            resp = await _bounded(dep, dep.provider.transcribe(req, dep.timeouts))
            resp.deployment = dep.id
            return resp

        pace = EmbeddingRequest(model=request.model, input=request.prompt or "")
        return await self._run(request, once, pace=pace)

    def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        return self._stream(request, _canonical)

    def stream_passthrough(
        self, request: ChatRequest
    ) -> AsyncGenerator[ChatChunk | RawChunk, None]:
        """:meth:`stream` for a gateway that answers in OpenAI's protocol: chunks from a
        deployment whose adapter speaks it too come as the upstream's own bytes
        (:class:`RawChunk`), any other's as canonical chunks."""
        return self._stream(request, _passthrough)

    async def _stream(
        self, request: ChatRequest, opener: Callable[[Provider], _Opener[C]]
    ) -> AsyncGenerator[C, None]:
        plan = _Plan(self, request.model, request.user)
        pacer = self.pacer
        while (dep := await plan.next()) is not None:
            yielded = False
            chunks = opener(dep.provider)(_for_deployment(request, dep), dep.timeouts)
            dep.inflight += 1
            slot = dep.slot()
            watchdog: Watchdog | None = None
            paced: Slot | None = None
            usage: Usage | None = None
            ratelimit: RateLimitInfo | None = None
            try:
                if self.context_guard is not None:
                    await self.context_guard(dep.model, request)
                paced = await self._paced(dep, request)
                await slot.__aenter__()
                # One timer for the whole attempt (not one per chunk): first chunk within
                # first_byte, each next one within idle, all of it within total.
                timeouts, dep_id = dep.timeouts, dep.id
                watchdog = Watchdog(total=timeouts.total)
                gap = timeouts.first_byte
                while True:
                    watchdog.arm(gap)
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if watchdog.expired():
                            raise _stream_timed_out(dep, watchdog, gap, yielded) from None
                        raise
                    watchdog.disarm()
                    chunk.deployment = dep_id
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not yielded:
                        ratelimit = chunk.ratelimit
                        yielded = True
                    gap = timeouts.idle
                    yield chunk
            except errors.ProviderError as exc:
                if isinstance(exc, errors.RateLimitError) and exc.provider is not None:
                    pacer.feedback(dep.id, paced, throttled=exc.retry_after or 1.0)
                if yielded:
                    # Never retry once the caller has seen part of an answer.
                    plan.failed(dep, exc, final=True)
                plan.failed(dep, exc)
                continue
            finally:
                if watchdog is not None:
                    watchdog.close()
                dep.inflight -= 1
                dep.probing = False  # however the attempt ended (even cancelled), the probe is over
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()
                await slot.__aexit__(None, None, None)
            pacer.feedback(
                dep.id,
                paced,
                used_tokens=usage.total_tokens if usage is not None else None,
                ratelimit=ratelimit,
            )
            plan.succeeded(dep)
            return
        raise plan.exhausted()

    # -- internals --

    async def _run(
        self,
        request: Paced | ImageRequest | TranscriptionRequest,
        once: Callable[[Deployment], Awaitable[R2]],
        *,
        pace: Paced | None = None,
        user: str | None = None,
    ) -> R2:
        """``pace``: what the pacing queue estimates tokens from (``request`` itself for chat
        and embeddings); ``user``: the end user, for sticky rollouts."""
        if isinstance(request, ChatRequest | EmbeddingRequest):
            pace, user = request, request.user
        assert pace is not None
        plan = _Plan(self, request.model, user)
        pacer = self.pacer
        while (dep := await plan.next()) is not None:
            dep.inflight += 1
            slot = None
            try:
                slot = await self._paced(dep, pace)
                if dep.max_concurrency is None:
                    result = await once(dep)
                else:
                    async with dep.slot():
                        result = await once(dep)
            except errors.ProviderError as exc:
                if isinstance(exc, errors.RateLimitError) and exc.provider is not None:
                    pacer.feedback(dep.id, slot, throttled=exc.retry_after or 1.0)
                plan.failed(dep, exc)
                continue
            finally:
                dep.inflight -= 1
                dep.probing = False  # however the attempt ended (even cancelled), the probe is over
            usage = result.usage
            pacer.feedback(
                dep.id,
                slot,
                used_tokens=usage.total_tokens if usage is not None else None,
                ratelimit=result.ratelimit,
            )
            plan.succeeded(dep)
            return result
        raise plan.exhausted()

    async def _paced(self, dep: Deployment, request: Paced) -> Slot | None:
        """Wait for the deployment's pacing queue; a RateLimitError (a queue too long to wait
        in: try elsewhere) when that would exceed ``router.max_queue_wait``."""
        paced = await self.pacer.wait(dep.id, request)
        if paced is None:
            raise errors.RateLimitError(
                f"deployment {dep.id} is at its rate limit and its queue is longer than "
                f"router.max_queue_wait ({self.pacer.max_wait:g}s)",
                model=dep.model,
                code="pacing_queue_full",
                retry_after=self.pacer.max_wait,
            )
        wait, slot = paced
        if wait > 0:
            await self._sleep(wait)
        return slot

    def _pick(
        self, name: str, avoid: Deployment | None, variant: str | None = None
    ) -> Deployment | None:
        now = self._clock()
        candidates = []
        for d in self._by_name[name]:
            state = d.state(now)
            if state == "open" or (state == "half-open" and d.probing):
                continue
            candidates.append(d)
        if variant is not None:
            # The request's rollout variant, while any of its deployments can serve; else the
            # other variants do (a broken canary must not fail the requests it drew).
            candidates = [d for d in candidates if d.variant == variant] or candidates
        if not candidates:
            return None
        fresh = [d for d in candidates if d.rate_limited_until <= now]
        candidates = fresh or candidates
        free = [d for d in candidates if not d.full]
        candidates = free or candidates
        if avoid is not None and len(candidates) > 1:
            candidates = [d for d in candidates if d is not avoid] or candidates
        if len(candidates) == 1:
            chosen = candidates[0]
        elif self.settings.strategy == "weighted":
            chosen = self._rng.choices(candidates, weights=[d.weight for d in candidates])[0]
        else:
            low = min(d.inflight / d.weight for d in candidates)
            best = [d for d in candidates if d.inflight / d.weight == low]
            chosen = self._rng.choices(best, weights=[d.weight for d in best])[0]
        if chosen.state(now) == "half-open":
            chosen.probing = True
        return chosen

    def _record(self, dep: Deployment, exc: errors.ProviderError | None) -> None:
        """Update a deployment's health after an attempt."""
        dep.probing = False
        if exc is None:
            dep.consecutive_failures = 0
            dep.open_until = 0.0
            return
        if isinstance(exc, errors.RateLimitError):
            # Rate-limited is not unhealthy: steer new requests elsewhere for the asked time.
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            dep.rate_limited_until = self._clock() + wait
            return
        if isinstance(exc, errors.BadRequestError | errors.NotFoundError):
            return  # the request's fault, not the deployment's
        dep.consecutive_failures += 1
        if dep.consecutive_failures >= self.settings.cooldown_failures:
            log.warning(
                "deployment %s cooling down for %.0fs after %d consecutive failures (%s)",
                dep.id,
                self.settings.cooldown_seconds,
                dep.consecutive_failures,
                type(exc).__name__,
            )
            self.open_circuit(dep, self._clock() + self.settings.cooldown_seconds)

    def open_circuit(self, dep: Deployment, until: float, *, publish: bool = True) -> None:
        """Cool ``dep`` down until ``until`` (this router's clock); then one probe decides.
        ``publish``: tell the ``on_cooldown`` observers (False when the news came from them)."""
        if until <= dep.open_until and dep.state(self._clock()) == "open":
            return
        dep.consecutive_failures = max(dep.consecutive_failures, self.settings.cooldown_failures)
        dep.open_until = until
        if publish:
            seconds = until - self._clock()
            for fn in self.on_cooldown:
                try:
                    fn(dep, seconds)
                except Exception:  # an observer must never break a request
                    log.exception("cooldown observer failed")

    def _backoff(self, retry_number: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(max, base * 2**n)), but never less than retry_after."""
        s = self.settings
        ceiling = min(s.backoff_max, s.backoff_base * (2**retry_number))
        delay = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _emit(self, event: AttemptEvent) -> None:
        for fn in self.on_attempt:
            try:
                fn(event)
            except Exception:  # an observer must never break a request
                log.exception("attempt observer failed")


class _Plan:
    """The sequence of attempts for one request: retries on a model name, then its fallbacks."""

    def __init__(self, router: Router, model: str, user: str | None = None) -> None:
        if model not in router._by_name:
            known = ", ".join(router.names) or "none configured"
            raise errors.NotFoundError(
                f"model {model!r} is not configured; known models: {known}",
                model=model,
                code="model_not_found",
                param="model",
            )
        self.router = router
        self.requested = model
        self.queue: list[str] = [model]
        self.seen = {model}
        self.name = model
        self.retries_used = 0
        self.attempt = 0
        self.delay = 0.0
        self.last_error: errors.ProviderError | None = None
        self.last_dep: Deployment | None = None
        self.user = user
        #: The rollout variant drawn for each model name tried (once per name and request).
        self.variants: dict[str, str] = {}

    def variant(self, name: str) -> str | None:
        rollout = self.router.rollouts.get(name)
        if rollout is None:
            return None
        chosen = self.variants.get(name)
        if chosen is None:
            chosen = self.variants[name] = rollout.choose(self.user, self.router._rng)
        return chosen

    async def next(self) -> Deployment | None:
        r = self.router
        while self.queue:
            self.name = self.queue[0]
            if self.delay > 0:
                await r._sleep(self.delay)
            waited, self.delay = self.delay, 0.0
            dep = r._pick(self.name, self.last_dep, self.variant(self.name))
            if dep is None:
                self.last_error = errors.OverloadedError(
                    f"every deployment of {self.name!r} is cooling down after failures",
                    model=self.name,
                    code="deployments_cooling_down",
                )
                self._next_name()
                continue
            self.attempt += 1
            self._waited = waited
            return dep
        return None

    def _next_name(self) -> None:
        name = self.queue.pop(0)
        self.retries_used = 0
        self.last_dep = None
        if name == self.requested or not self.queue:
            for fb in self._fallbacks_of(name):
                if fb not in self.seen:
                    self.seen.add(fb)
                    self.queue.append(fb)

    def _fallbacks_of(self, name: str, attr: str = "fallbacks") -> list[str]:
        out: list[str] = []
        for d in self.router._by_name.get(name, []):
            for fb in getattr(d, attr):
                if fb not in out and fb in self.router._by_name:
                    out.append(fb)
        return out

    def succeeded(self, dep: Deployment) -> None:
        self.router._record(dep, None)
        self.router._emit(
            AttemptEvent(
                self.requested,
                dep.id,
                self.attempt,
                None,
                self._waited,
                self.name != self.requested,
            )
        )

    def failed(self, dep: Deployment, exc: errors.ProviderError, *, final: bool = False) -> None:
        """Record a failure and plan what comes next; re-raise when nothing should (always when
        ``final``: part of a stream already reached the caller)."""
        r = self.router
        r._record(dep, exc)
        r._emit(
            AttemptEvent(
                self.requested, dep.id, self.attempt, exc, self._waited, self.name != self.requested
            )
        )
        if final:
            exc.attempts = self.attempt
            raise exc
        self.last_error = exc
        self.last_dep = dep
        if isinstance(exc, errors.ContextWindowExceededError):
            bigger = [
                m
                for m in self._fallbacks_of(self.name, "context_window_fallbacks")
                if m not in self.seen
            ]
            if not bigger:
                raise exc
            self.seen.update(bigger)
            self.queue = bigger + self.queue[1:]
            self.retries_used = 0
            self.last_dep = None
            return
        if not exc.retryable:
            raise exc
        too_long = exc.retry_after is not None and exc.retry_after > r.settings.max_retry_after
        if self.retries_used < r.settings.retries and not too_long:
            self.delay = r._backoff(self.retries_used, exc.retry_after)
            self.retries_used += 1
            log.info(
                "retrying %s after %s from %s in %.2fs",
                self.name,
                type(exc).__name__,
                dep.id,
                self.delay,
            )
            return
        self._next_name()

    def exhausted(self) -> errors.ProviderError:
        exc = self.last_error or errors.ServerError("no attempt was made", model=self.requested)
        exc.attempts = self.attempt
        return exc


# -- helpers ---------------------------------------------------------------------------------


def _deployment(d: DeploymentConfig, provider: Provider, rc: RouterConfig) -> Deployment:
    timeouts = Timeouts(
        connect=rc.connect_timeout,
        first_byte=d.first_byte_timeout or rc.first_byte_timeout,
        idle=d.idle_timeout or rc.idle_timeout,
        total=d.timeout or rc.timeout,
    )
    return Deployment(
        name=d.name,
        provider=provider,
        model=d.model,
        timeouts=timeouts,
        weight=d.weight,
        fallbacks=list(d.fallbacks),
        context_window_fallbacks=list(d.context_window_fallbacks),
        rpm=d.rpm,
        tpm=d.tpm,
        max_concurrency=d.max_concurrency,
        variant=d.variant,
    )


async def _bounded(dep: Deployment, call: Awaitable[R2]) -> R2:
    """``call`` within the deployment's total timeout (aiwire's retryable TimeoutError)."""
    total = dep.timeouts.total
    try:
        async with asyncio.timeout(total):
            return await call
    except TimeoutError:
        raise _timed_out(dep, total) from None


def _for_deployment(request: ChatRequest, dep: Deployment) -> ChatRequest:
    """The request with the deployment's upstream model name: a shallow copy (``__copy__``
    then the field set directly: ``model_copy(update=...)`` costs half as much again)."""
    if request.model == dep.model:
        return request
    copy = request.__copy__()
    copy.__dict__["model"] = dep.model
    return copy


async def _attempt(
    dep: Deployment,
    call: Callable[[ChatRequest, Timeouts], Awaitable[R]],
    request: ChatRequest,
    guard: Callable[[str, ChatRequest], Awaitable[None]] | None,
) -> R:
    """One non-streamed attempt on ``dep``, bounded by its total timeout."""
    if guard is not None:
        await guard(dep.model, request)
    total = dep.timeouts.total
    try:
        async with asyncio.timeout(total):
            resp = await call(_for_deployment(request, dep), dep.timeouts)
    except TimeoutError:
        raise _timed_out(dep, total) from None
    resp.deployment = dep.id
    return resp


_Opener = Callable[[ChatRequest, Timeouts], AsyncIterator[C]]


def _canonical(provider: Provider) -> _Opener[ChatChunk]:
    return provider.stream


def _passthrough(provider: Provider) -> _Opener[ChatChunk | RawChunk]:
    return provider.stream_raw if provider.passthrough else provider.stream


def _stream_timed_out(
    dep: Deployment, watchdog: Watchdog, gap: float, yielded: bool
) -> errors.TimeoutError:
    if watchdog.past_end:
        return _timed_out(dep, dep.timeouts.total, "complete stream")
    return _timed_out(dep, gap, "next chunk" if yielded else "first chunk")


def _timed_out(dep: Deployment, seconds: float, what: str = "response") -> errors.TimeoutError:
    """aiwire's typed, retryable TimeoutError for a lapsed deadline."""
    return errors.TimeoutError(
        f"no {what} from {dep.provider.name} within {max(seconds, 0.0):.3g}s",
        provider=dep.provider.name,
        model=dep.model,
    )
