"""OpenTelemetry spans for each request, each router attempt and each upstream HTTP call.

Optional: needs ``pip install 'aiwire[otel]'`` and ``tracing.enabled: true``. Without either,
this module is never imported and tracing costs nothing.

One request gives this tree (attribute names follow OpenTelemetry's GenAI and HTTP semantic
conventions)::

    POST /v1/chat/completions      SERVER  gen_ai.operation.name, gen_ai.request.model (the name
    │                                      the client asked for), gen_ai.usage.*, status code
    ├── chat gpt-4o-mini-2024-…    CLIENT  one router attempt: gen_ai.system, gen_ai.request.model
    │   │                                  (upstream), gen_ai.response.model, gen_ai.usage.*
    │   │                                  (the answering attempt), error.type, aiwire.attempt
    │   └── POST                   CLIENT  the upstream HTTP call: server.address, url.full
    │                                      (without query), http.response.status_code
    └── chat gpt-4o-mini-2024-…    ...     a retry or fallback

How it hooks in without touching the hot path's code: the three model endpoints' handlers are
wrapped (request span, current while the request runs), each provider's transport is wrapped
(upstream spans), and ``Router.on_attempt`` closes each attempt's span. An attempt span opens
when its first upstream call starts (an attempt refused before any call - a full pacing queue,
a prompt too large - gets a zero-length span). No span or attribute ever holds a prompt, a
completion or a credential.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from aiwire.errors import ConfigError
from aiwire.providers.transport import (
    HttpTimeout,
    Response,
    StreamedResponse,
    Transport,
    TransportError,
)

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError:  # pragma: no cover - exercised in a subprocess test
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from aiwire.config import Config
    from aiwire.router import AttemptEvent, Router
    from aiwire.server.app import Gateway
    from aiwire.server.asgi import Message, Receive, Scope, Send
    from aiwire.store.writer import RequestLogRow

INSTALL_HINT = "tracing needs OpenTelemetry: pip install 'aiwire[otel]'"

#: ``gen_ai.system`` for each provider type (the semantic conventions' well-known values).
GEN_AI_SYSTEM = {
    "openai": "openai",
    "azure": "az.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "huggingface": "huggingface",
}
#: The model endpoints and the GenAI operation each performs.
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/embeddings": "embeddings",
}
#: Upstream JSON bodies larger than this are not parsed for ``gen_ai.response.model``.
_MAX_PARSE = 1 << 20

Handler = Callable[["Scope", "Receive", "Send"], Awaitable[None]]


def available() -> bool:
    return trace is not None


class _RequestTrace:
    """The spans of the request being served (a context variable holds it)."""

    __slots__ = ("attempt", "operation", "span", "won", "won_end")

    def __init__(self, span: Span, operation: str) -> None:
        self.span = span
        self.operation = operation
        self.attempt: Span | None = None  # the attempt whose upstream call is under way
        self.won: Span | None = None  # the attempt that answered, kept open for its usage
        self.won_end = 0


_current: contextvars.ContextVar[_RequestTrace | None] = contextvars.ContextVar(
    "aiwire_trace", default=None
)


class Tracing:
    def __init__(self, tracer: Tracer, router: Router) -> None:
        self.tracer = tracer
        self.router = router

    # -- the request span ---------------------------------------------------------------------

    def wrap(self, method: str, path: str, handler: Handler) -> Handler:
        operation = OPERATIONS.get(path, "chat")
        name = f"{method} {path}"
        tracer = self.tracer

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            span = tracer.start_span(
                name,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "http.route": path,
                    "url.path": path,
                    "gen_ai.operation.name": operation,
                },
            )
            state = _RequestTrace(span, operation)
            token = _current.set(state)
            status = 0

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                with trace.use_span(span, end_on_exit=False):
                    await handler(scope, receive, sending)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                _current.reset(token)
                _finish(state, status)

        return traced

    def observe(self, row: RequestLogRow) -> None:
        """The finished request's figures onto its spans (a ``Gateway.observers`` callback)."""
        state = _current.get()
        if state is None:
            return
        span = state.span
        span.set_attribute("gen_ai.request.model", row.model)
        if row.input_tokens or row.output_tokens:
            span.set_attribute("gen_ai.usage.input_tokens", row.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", row.output_tokens)
        span.set_attribute("aiwire.retries", row.retries)
        span.set_attribute("aiwire.fallback", row.fallback)
        span.set_attribute("aiwire.cache_hit", row.cache_hit)
        span.set_attribute("aiwire.cost_usd", row.cost_usd)
        if row.deployment:
            span.set_attribute("aiwire.deployment", row.deployment)
        if row.error_type:
            span.set_attribute("error.type", row.error_type)
        won = state.won
        if won is not None:
            if row.input_tokens or row.output_tokens:
                won.set_attribute("gen_ai.usage.input_tokens", row.input_tokens)
                won.set_attribute("gen_ai.usage.output_tokens", row.output_tokens)
            won.end(end_time=state.won_end)
            state.won = None

    # -- attempt spans ------------------------------------------------------------------------

    def _open_attempt(self, state: _RequestTrace) -> Span:
        if state.attempt is None:
            state.attempt = self.tracer.start_span(
                state.operation,
                context=trace.set_span_in_context(state.span),
                kind=SpanKind.CLIENT,
            )
        return state.attempt

    def on_attempt(self, event: AttemptEvent) -> None:
        state = _current.get()
        if state is None:
            return
        span = self._open_attempt(state)
        state.attempt = None
        dep = self.router.deployment(event.deployment)
        upstream_model = dep.model if dep is not None else event.deployment
        span.update_name(f"{state.operation} {upstream_model}")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": state.operation,
            "gen_ai.request.model": upstream_model,
            "aiwire.deployment": event.deployment,
            "aiwire.attempt": event.attempt,
            "aiwire.fallback": event.fallback,
            "aiwire.backoff_seconds": event.waited,
        }
        if dep is not None:
            system = GEN_AI_SYSTEM.get(dep.provider.type, dep.provider.type)
            attributes["gen_ai.system"] = system
            attributes["gen_ai.provider.name"] = system
            attributes["aiwire.provider"] = dep.provider.name
        span.set_attributes(attributes)
        if event.error is None:
            if dep is not None and "gen_ai.response.model" not in _attributes(span):
                span.set_attribute("gen_ai.response.model", dep.model)
            state.won, state.won_end = span, time.time_ns()
            return
        error = event.error
        span.set_attribute("error.type", type(error).__name__)
        if error.status:
            span.set_attribute("http.response.status_code", error.status)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # -- upstream HTTP spans --------------------------------------------------------------------

    def start_upstream(self, method: str, url: str) -> Span:
        state = _current.get()
        context = trace.set_span_in_context(self._open_attempt(state)) if state else None
        parts = urlsplit(url)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": parts.hostname or "",
            "url.full": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
        }
        if parts.port is not None:
            attributes["server.port"] = parts.port
        return self.tracer.start_span(
            method, context=context, kind=SpanKind.CLIENT, attributes=attributes
        )

    def response_model(self, content: bytes) -> None:
        """``gen_ai.response.model`` from a non-streamed JSON answer, onto the attempt span."""
        state = _current.get()
        if state is None or state.attempt is None or len(content) > _MAX_PARSE:
            return
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            model = data.get("model") or data.get("modelVersion")
            if isinstance(model, str) and model:
                state.attempt.set_attribute("gen_ai.response.model", model)


def _attributes(span: Span) -> Mapping[str, Any]:
    return getattr(span, "attributes", None) or {}


def _finish(state: _RequestTrace, status: int) -> None:
    if state.attempt is not None:  # cut short (client gone, cancelled)
        state.attempt.end()
        state.attempt = None
    if state.won is not None:  # no log row was made (the request was cancelled)
        state.won.end(end_time=state.won_end)
        state.won = None
    span = state.span
    if status:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end()


class TracedTransport(Transport):
    """A provider's transport with a span around every upstream call."""

    def __init__(self, inner: Transport, tracing: Tracing) -> None:
        self.inner = inner
        self.tracing = tracing

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        span = self.tracing.start_upstream(method, url)
        try:
            resp = await self.inner.request(
                method, url, headers=headers, timeout=timeout, content=content, params=params
            )
        except TransportError as exc:
            _failed(span, exc.kind)
            raise
        except BaseException as exc:
            _failed(span, type(exc).__name__)
            raise
        _answered(span, resp.status)
        if resp.status < 300:
            self.tracing.response_model(resp.content)
        span.end()
        return resp

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractAsyncContextManager[StreamedResponse]:
        return self._stream(method, url, headers, timeout, content, params)

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None,
        params: Mapping[str, str] | None,
    ) -> AsyncIterator[StreamedResponse]:
        span = self.tracing.start_upstream(method, url)
        opened = self.inner.stream(
            method, url, headers=headers, timeout=timeout, content=content, params=params
        )
        try:
            async with opened as resp:
                _answered(span, resp.status)
                yield resp
        except TransportError as exc:
            _failed(span, exc.kind)
            raise
        except BaseException as exc:
            _failed(span, type(exc).__name__)
            raise
        span.end()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def _failed(span: Span, kind: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))
    span.end()


# -- installation ---------------------------------------------------------------------------


def tracer_provider(config: Config) -> tuple[TracerProvider, Callable[[], None] | None]:
    """The tracer provider ``tracing.exporter`` asks for, and how to flush it at shutdown
    (None when it is the process' own, which its owner shuts down)."""
    if trace is None:
        raise ConfigError(INSTALL_HINT)
    settings = config.tracing
    if settings.exporter == "global":
        return trace.get_tracer_provider(), None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "tracing.exporter: otlp needs pip install opentelemetry-exporter-otlp-proto-http "
                "(or set tracing.exporter: console or global)"
            ) from None
        exporter = OTLPSpanExporter()
    provider = SDKTracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, provider.shutdown


def install(gateway: Gateway, provider: TracerProvider) -> Tracing:
    """Trace ``gateway``'s model endpoints, router attempts and upstream calls."""
    if trace is None:
        raise ConfigError(INSTALL_HINT)
    from aiwire import __version__

    tracing = Tracing(provider.get_tracer("aiwire", __version__), gateway.router)
    routes = gateway._routes  # the gateway has no public wrapping hook (yet): see docs
    for (method, path), handler in list(routes.items()):
        if path in OPERATIONS:
            routes[(method, path)] = tracing.wrap(method, path, handler)
    gateway.router.on_attempt.append(tracing.on_attempt)
    gateway.observers.append(tracing.observe)
    seen: set[int] = set()
    for dep in gateway.router.deployments():
        provider_ = dep.provider
        if id(provider_) in seen or isinstance(provider_._http, TracedTransport):
            continue
        seen.add(id(provider_))
        provider_._http = TracedTransport(provider_.http, tracing)
    return tracing
