"""The gateway: an ASGI app speaking OpenAI's and Anthropic's client protocols over the router.

Hot path per request: route by dict lookup, authenticate (cached), read and parse the body once,
route through :class:`aiwire.router.Router`, render in the client's protocol, then hand a log row
to the background writer (no database work before the answer). A client that disconnects cancels
its upstream call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from aiwire import errors
from aiwire.cache import (
    HEADER,
    HEADER_BYTES,
    MISS,
    CacheBackend,
    CacheConfig,
    Entry,
    StreamRecorder,
    cache_key,
    decide,
    key_opted_out,
    replay,
    scope_for,
)
from aiwire.cache.semantic import SemanticCache
from aiwire.guardrails.gateway import Guardrails
from aiwire.guardrails.restore import Vault
from aiwire.limits.admission import Admission, Refused, Ticket
from aiwire.limits.pricing import (
    DEFAULT_MAX_OUTPUT,
    CatalogPricing,
    NoPricing,
    Pricing,
    rough_input_tokens,
)
from aiwire.limits.windows import window
from aiwire.observability.alerts import Alerts
from aiwire.rollouts.split import set_caller
from aiwire.router import AttemptEvent, Router
from aiwire.server import anthropic_wire, openai_wire
from aiwire.server.admin import PREFIX as ADMIN_PREFIX
from aiwire.server.admin import AdminAPI
from aiwire.server.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    end_stream,
    header,
    read_body,
    respond,
    start_stream,
    stream_piece,
)
from aiwire.server.auth import Authenticator, Principal, presented_secret
from aiwire.server.gcpace import GcPacer
from aiwire.server.turns import TurnGate
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore
from aiwire.store.writer import LogWriter, RequestLogRow
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    RawChatResponse,
    RawChunk,
    Usage,
    new_id,
)

log = logging.getLogger("aiwire.server")

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MESSAGES = "/v1/messages"
MODELS = "/v1/models"

#: The router's attempt events for the request being served (set per request).
_attempts: contextvars.ContextVar[list[AttemptEvent] | None] = contextvars.ContextVar(
    "aiwire_attempts", default=None
)


@dataclass
class GatewaySettings:
    max_body_bytes: int = 20 * 1024 * 1024
    store_content: bool = False
    #: The garbage collector on the gateway's schedule (server/gcpace.py): everything that exists
    #: after start-up is set aside (``gc.freeze``), automatic collection is off, a young pass
    #: runs every 20 ms and its survivors are set aside too, a full pass every 10 minutes.
    #: Automatic collection paused the loop for 10-120 ms under 1,000 concurrent streams. For a
    #: dedicated server process (it changes the whole process's collector).
    freeze_gc: bool = False
    #: At most this many model calls start per turn of the event loop; the rest of a burst
    #: waits a turn or two, so streams already flowing keep their pace (see server/turns.py).
    #: None: no limit.
    starts_per_turn: int | None = 8


class AuthGuard(Protocol):
    """Slows and blocks clients that keep presenting bad keys (see the hardening module)."""

    def check(self, scope: Scope) -> None:
        """Raise (e.g. a 429 RateLimitError) if this client is blocked right now."""

    def failed(self, scope: Scope) -> None: ...

    def succeeded(self, scope: Scope) -> None: ...


class _Streamer(Protocol):
    def render(self, chunk: Any) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, exc: BaseException) -> bytes: ...


class _OpenAIStream:
    def __init__(self, request: ChatRequest) -> None:
        self._r = openai_wire.StreamRenderer(request)
        self.render = self._r.render
        self.error = self._r.error

    def end(self) -> bytes:
        return self._r.done()


class _AnthropicStream:
    def __init__(self, request: ChatRequest) -> None:
        self._r = anthropic_wire.AnthropicStreamRenderer(request.model)
        self.render = self._r.render
        self.error = self._r.error

    def end(self) -> bytes:
        return self._r.finish()


ErrorBody = Callable[[errors.AIWireError], tuple[int, bytes, dict[str, str]]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class _Wire:
    """One client protocol: how to parse, render and fail."""

    endpoint: str
    parse: Callable[[bytes], ChatRequest]
    render: Callable[[Any, str], bytes]  # ChatResponse (or RawChatResponse if passthrough)
    streamer: Callable[[ChatRequest], _Streamer]
    error_body: ErrorBody
    internal_error: Callable[[str | None], tuple[int, bytes, dict[str, str]]]
    #: Whether this protocol is OpenAI's, so OpenAI-compatible upstreams' bytes pass through.
    passthrough: bool = False
    #: The protocol's name in cache keys.
    protocol: str = "openai"


OPENAI = _Wire(
    CHAT,
    openai_wire.parse_chat,
    lambda resp, model: openai_wire.render_chat(resp),
    _OpenAIStream,
    openai_wire.error_body,
    openai_wire.internal_error_body,
    passthrough=True,
)
ANTHROPIC = _Wire(
    MESSAGES,
    anthropic_wire.parse_messages,
    anthropic_wire.render_message,
    _AnthropicStream,
    anthropic_wire.error_body,
    anthropic_wire.internal_error_body,
    protocol="anthropic",
)


@dataclass
class _Outcome:
    """What a request did, for its log row."""

    status: int = 200
    error: str | None = None
    usage: Usage | None = None
    deployment: str | None = None
    provider: str | None = None
    ttft_ms: float | None = None
    attempts: list[AttemptEvent] = field(default_factory=list)
    finished: bool = False  # the last bytes of the answer are being sent
    #: Response headers: the request id, and the key's x-ratelimit-* when it has limits.
    headers: list[tuple[str, str]] = field(default_factory=list)
    ticket: Ticket | None = None
    cost: float = 0.0
    #: The response cache: the key to store this answer under (None: not stored).
    cache_key: str | None = None
    cache_hit: bool = False
    #: The semantic cache's tenant scope for this request (None: not stored there).
    semantic_scope: str | None = None
    #: Personal data was masked in the request; ``vault`` puts it back into the answer.
    masked: bool = False
    vault: Vault | None = None
    #: What went upstream when it differs from the client's body (masked), and the answer
    #: sent back: the request log keeps them only for keys that log content.
    sent: ChatRequest | None = None
    answer: bytes | None = None


class Gateway:
    def __init__(
        self,
        router: Router,
        auth: Authenticator,
        *,
        database: Database | None = None,
        writer: LogWriter | None = None,
        keys: KeyStore | None = None,
        settings: GatewaySettings | None = None,
        admission: Admission | None = None,
        pricing: Pricing | None = None,
        alerts: Alerts | None = None,
        budgets: BudgetStore | None = None,
        cache: CacheBackend | None = None,
        cache_config: CacheConfig | None = None,
        guardrails: Guardrails | None = None,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.router = router
        self.auth = auth
        self.database = database
        self.writer = writer
        self.settings = settings or GatewaySettings()
        self._gc: GcPacer | None = None
        per_turn = self.settings.starts_per_turn
        self._turns = TurnGate(per_turn) if per_turn else None
        self.admission = admission
        self.pricing: Pricing = pricing or NoPricing()
        self.alerts = alerts
        self.budgets = budgets
        self.cache = cache
        self.cache_config = cache_config or CacheConfig()
        #: Paraphrases of cached questions (``cache.semantic``), looked up after an exact miss.
        self.semantic = semantic
        self.guardrails = guardrails
        #: The admin API under /admin/ (master or admin-scoped keys), where the keys live;
        #: more admin routes: ``gateway.admin.include(router)``.
        self.admin = (
            None
            if keys is None
            else AdminAPI(
                keys,
                auth,
                model_names=lambda: router.names,
                budgets=budgets,
                on_budget_change=admission.book.invalidate
                if admission is not None and admission.book is not None
                else None,
                spent=self._budget_spent if admission is not None else None,
                authenticate=self.principal,  # through the auth guard
            )
        )
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", CHAT): lambda s, r, w: self._chat(s, r, w, OPENAI),
            ("POST", MESSAGES): lambda s, r, w: self._chat(s, r, w, ANTHROPIC),
            ("POST", EMBEDDINGS): self._embeddings,
            ("GET", MODELS): self._models,
            ("GET", "/health/live"): self._live,
            ("GET", "/health/ready"): self._ready,
        }
        from aiwire.server import media_api  # its handlers build on this module

        #: ``/v1/images/generations`` and ``/v1/audio/transcriptions`` (``max_audio_bytes``).
        self.media = media_api.MediaRoutes(self)
        self._routes[("POST", media_api.IMAGES)] = self.media.images
        self._routes[("POST", media_api.TRANSCRIPTIONS)] = self.media.transcriptions
        router.on_attempt.append(_record_attempt)
        #: Called with every finished request's log row, whether or not it reached a provider
        #: (metrics, alerts); rows of refused requests are not written to the store.
        self.observers: list[Callable[[RequestLogRow], None]] = []
        #: Consulted before and told after every authentication (repeated-failure throttling).
        self.auth_guard: AuthGuard | None = None
        #: Wraps :meth:`serve_http` when browsers may call (``server.cors_origins``).
        self.cors: ASGIApp | None = None
        #: The caller of a request that presents no key, from a web console session cookie
        #: (None: not one; see :mod:`aiwire.server.ui.sessions`). Unset: keys only.
        self.session_auth: Callable[[Scope], Awaitable[Principal | None]] | None = None
        #: Requests being answered right now (a gauge for metrics).
        self.inflight = 0
        self._mounts: list[tuple[str, ASGIApp]] = []
        self._on_startup: list[Callable[[], Awaitable[None]]] = []
        self._on_shutdown: list[Callable[[], Awaitable[None]]] = []

    # -- ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.cors is None:
                await self.serve_http(scope, receive, send)
            else:
                await self.cors(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request: exact routes first, then mounted apps, then the admin API."""
        try:
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            path = scope["path"]
            mounted = self._mounted(path) if self._mounts else None
            if mounted is not None:
                await mounted(scope, receive, send)
            elif self.admin is not None and path.startswith(ADMIN_PREFIX):
                await self.admin(scope, receive, send)
            else:
                await self._no_route(scope, send)
        except Exception:  # a bug or an unreachable dependency: still the caller's protocol
            await self._crashed(scope, send)

    async def _crashed(self, scope: Scope, send: Send) -> None:
        """Answer an unexpected exception with a protocol-shaped 500 (never its text), and log
        it here with its traceback."""
        log.exception("%s %s failed", scope["method"], scope["path"])
        shape = (
            anthropic_wire.internal_error_body
            if scope["path"].startswith(MESSAGES)
            else openai_wire.internal_error_body
        )
        status, body, headers = shape(None)
        try:
            await respond(send, status, body, headers=headers.items())
        except Exception:  # the answer had already begun: the server closes the connection
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report start-up failure to the server, then stop
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def mount(
        self,
        prefix: str,
        app: ASGIApp,
        *,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Serve every path under ``prefix`` (e.g. ``/v1/batches``) with another ASGI app (the
        batch API, flow webhooks, ...), with its start-up/shutdown work run after the store is
        migrated and before it is closed. Mounted paths are looked up only when no hot-path route
        matched, so they cost the model endpoints nothing."""
        self._mounts.append((prefix.rstrip("/"), app))
        self._mounts.sort(key=lambda m: -len(m[0]))  # the longest prefix wins
        self.mount_hooks(on_startup=on_startup, on_shutdown=on_shutdown)

    def mount_hooks(
        self,
        *,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run work at start-up (after the store is migrated) and at shutdown (before the
        request log is flushed), e.g. a component's background task."""
        if on_startup is not None:
            self._on_startup.append(on_startup)
        if on_shutdown is not None:
            self._on_shutdown.append(on_shutdown)

    def _mounted(self, path: str) -> ASGIApp | None:
        for prefix, app in self._mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    async def startup(self) -> None:
        if self.database is not None:
            await self.database.migrate()
        if self.writer is not None:
            self.writer.start()
        for hook in self._on_startup:
            await hook()
        if self.settings.freeze_gc:
            self._gc = GcPacer()
            self._gc.start()

    async def shutdown(self) -> None:
        """Called after the server stopped accepting and in-flight requests ended."""
        for hook in reversed(self._on_shutdown):
            try:
                await hook()
            except Exception:  # one component's failure must not keep the log from flushing
                log.exception("shutdown hook failed")
        if self.writer is not None:
            await self.writer.aclose()
        if self.alerts is not None:
            await self.alerts.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.admission is not None:
            await self.admission.state.aclose()
        await self.router.aclose()
        if self.database is not None:
            await self.database.aclose()
        if self._gc is not None:
            self._gc.stop()
            self._gc = None

    # -- chat, both protocols -----------------------------------------------------------------

    async def _chat(self, scope: Scope, receive: Receive, send: Send, wire: _Wire) -> None:
        if self._turns is not None:
            await self._turns.enter()
        started = time.perf_counter()
        request_id = new_id("req_")
        try:
            principal = await self.principal(scope)
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            request = wire.parse(body)
            principal.authorize(request.model, wire.endpoint)
            set_caller(principal.key_id)  # sticky canary rollouts keep a key on its variant
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await self._fail(send, wire.error_body, _too_large(exc), request_id)
            return
        except errors.AIWireError as exc:
            await self._fail(send, wire.error_body, exc, request_id)
            return
        outcome = _Outcome(headers=[("x-request-id", request_id)])
        if not await self._admit(send, wire.error_body, principal, request, outcome):
            self._log(request_id, principal, request, wire.endpoint, outcome, started, body)
            return
        self.inflight += 1
        try:
            await self._answer(scope, receive, send, wire, principal, request, outcome, started)
        finally:
            self.inflight -= 1
        self._log(request_id, principal, request, wire.endpoint, outcome, started, body)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        wire: _Wire,
        principal: Principal,
        request: ChatRequest,
        outcome: _Outcome,
        started: float,
    ) -> None:
        """From the cache, or through the router; the outcome records what happened."""
        if self.guardrails is not None:
            try:
                request, redaction = await self.guardrails.before(principal.record, request)
            except errors.AIWireError as exc:  # pii_detected, content_policy
                outcome.finished = True
                outcome.status = await self._fail(send, wire.error_body, exc, outcome.headers)
                outcome.error = exc.code or type(exc).__name__
                await self._settle(request.model, outcome)
                return
            if redaction is not None:
                outcome.vault = redaction.vault
                outcome.masked = True
                outcome.sent = request
        if self.cache is not None and not outcome.masked:  # answers with personal data: never
            try:
                hit = await self._cached(scope, send, wire, principal, request, outcome)
            except errors.AIWireError as exc:  # a malformed x-aiwire-cache header
                await self._fail(send, wire.error_body, exc, outcome.headers)
                await self._settle(request.model, outcome)
                return
            if hit:
                await self._settle(request.model, outcome)
                return
        _attempts.set(outcome.attempts)
        if request.stream:
            work = self._stream(send, wire, request, outcome, started)
        else:
            work = self._whole(send, wire, request, outcome)
        try:
            finished = await _until_disconnect(work, receive, outcome)
            if not finished:
                outcome.status, outcome.error = 499, "client_disconnected"
        finally:
            await self._settle(request.model, outcome)

    async def _whole(
        self, send: Send, wire: _Wire, request: ChatRequest, outcome: _Outcome
    ) -> None:
        router = self.router
        try:
            if wire.passthrough:
                resp: ChatResponse | RawChatResponse = await router.chat_passthrough(request)
            else:
                resp = await router.chat(request)
        except errors.AIWireError as exc:
            outcome.finished = True
            outcome.status = await self._fail(send, wire.error_body, exc, outcome.headers)
            outcome.error = type(exc).__name__
            return
        outcome.usage, outcome.deployment, outcome.provider = (
            resp.usage,
            resp.deployment,
            resp.provider,
        )
        if outcome.vault is not None:
            resp = outcome.vault.restore(resp)
        if self.guardrails is not None and self.guardrails.hooks.checks_responses:
            try:
                await self.guardrails.hooks.check_response(request, resp)
            except errors.AIWireError as exc:
                outcome.finished = True
                outcome.status = await self._fail(send, wire.error_body, exc, outcome.headers)
                outcome.error = exc.code or type(exc).__name__
                return
        outcome.finished = True
        answer = outcome.answer = wire.render(resp, request.model)
        await respond(send, 200, answer, headers=outcome.headers)
        if outcome.cache_key is not None:
            entry = Entry.whole(answer, usage=resp.usage, ttl=self.cache_config.ttl)
            await self._remember(outcome, wire, request, entry)

    async def _stream(
        self,
        send: Send,
        wire: _Wire,
        request: ChatRequest,
        outcome: _Outcome,
        started: float,
    ) -> None:
        chunks: AsyncGenerator[ChatChunk | RawChunk, None] = (
            self.router.stream_passthrough(request)
            if wire.passthrough
            else self.router.stream(request)
        )
        streamer = wire.streamer(request)
        try:
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                first = None
            except errors.AIWireError as exc:
                # Nothing was sent yet: a proper HTTP error in the client's protocol.
                outcome.finished = True
                outcome.status = await self._fail(send, wire.error_body, exc, outcome.headers)
                outcome.error = type(exc).__name__
                return
            outcome.ttft_ms = (time.perf_counter() - started) * 1000
            await start_stream(send, headers=outcome.headers)
            recorder = (
                StreamRecorder(self.cache_config.max_entry_bytes)
                if outcome.cache_key is not None
                else None
            )
            restorer = outcome.vault.stream() if outcome.vault is not None else None
            try:
                if first is not None:
                    outcome.deployment, outcome.provider = first.deployment, first.provider
                    if first.usage is not None:
                        outcome.usage = first.usage
                    if restorer is not None:
                        first = restorer(first)
                    piece = streamer.render(first)
                    if recorder is not None:
                        recorder.add(piece)
                    await stream_piece(send, piece)
                    render = streamer.render
                    async for chunk in chunks:  # the per-chunk loop: keep it lean
                        if chunk.usage is not None:
                            outcome.usage = chunk.usage
                        if restorer is not None:
                            chunk = restorer(chunk)
                        piece = render(chunk)
                        if piece:
                            if recorder is not None:
                                recorder.add(piece)
                            await send(
                                {"type": "http.response.body", "body": piece, "more_body": True}
                            )
            except errors.AIWireError as exc:
                # Part of the answer is out: end with the protocol's in-stream error event.
                outcome.status, outcome.error = exc.status or 502, type(exc).__name__
                outcome.finished = True
                await end_stream(send, streamer.error(exc))
                return
            if restorer is not None and (held := restorer.leftover()):
                # text held back in case it was the start of a placeholder: it was not
                await stream_piece(send, streamer.render(_text_chunk(first, held)))
            outcome.finished = True
            last = streamer.end()
            await end_stream(send, last)
            if recorder is not None and outcome.cache_key is not None:
                recorder.add(last)
                entry = recorder.entry(usage=outcome.usage, ttl=self.cache_config.ttl)
                if entry is not None:
                    await self._remember(outcome, wire, request, entry)
        finally:
            await chunks.aclose()

    # -- other endpoints ----------------------------------------------------------------------

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = new_id("req_")
        try:
            principal = await self.principal(scope)
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            request = openai_wire.parse_embeddings(body)
            principal.authorize(request.model, EMBEDDINGS)
            set_caller(principal.key_id)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await self._fail(send, openai_wire.error_body, _too_large(exc), request_id)
            return
        except errors.AIWireError as exc:
            await self._fail(send, openai_wire.error_body, exc, request_id)
            return
        outcome = _Outcome(headers=[("x-request-id", request_id)])
        if not await self._admit(send, openai_wire.error_body, principal, request, outcome):
            return
        _attempts.set(outcome.attempts)
        try:
            try:
                resp = await self.router.embed(request)
            except errors.AIWireError as exc:
                outcome.status = await self._fail(
                    send, openai_wire.error_body, exc, outcome.headers
                )
                outcome.error = type(exc).__name__
            else:
                outcome.deployment, outcome.provider = resp.deployment, resp.provider
                outcome.usage = Usage.of(resp.usage.prompt_tokens, 0)
                body_out = openai_wire.render_embeddings(resp, request.encoding_format)
                await respond(send, 200, body_out, headers=outcome.headers)
        finally:
            await self._settle(request.model, outcome)
        self._log(request_id, principal, request, EMBEDDINGS, outcome, started, None)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = await self.principal(scope)
        except errors.AIWireError as exc:
            await self._fail(send, openai_wire.error_body, exc, None)
            return
        record = principal.record
        names = [n for n in self.router.names if record is None or record.allows_model(n)]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "aiwire"} for n in names]
        await respond(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, b'{"status":"ok"}')

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        store_ok = True if self.database is None else await self.database.ping()
        models = bool(self.router.names)
        ok = store_ok and models
        body = {"status": "ok" if ok else "unavailable", "store": store_ok, "models": models}
        await respond(send, 200 if ok else 503, orjson.dumps(body))

    async def _no_route(self, scope: Scope, send: Send) -> None:
        path = scope["path"]
        known = sorted({p for _, p in self._routes} | {f"{p}/..." for p, _ in self._mounts})
        wrong_method = any(p == path for _, p in self._routes)
        status = 405 if wrong_method else 404
        message = (
            f"{scope['method']} is not allowed on {path}"
            if wrong_method
            else f"no route {path}; this gateway serves: {', '.join(known)}"
        )
        exc = errors.NotFoundError(message, status=status, code="unknown_route")
        shape = anthropic_wire.error_body if path.startswith(MESSAGES) else openai_wire.error_body
        await self._fail(send, shape, exc, None)

    # -- helpers ------------------------------------------------------------------------------

    async def principal(self, scope: Scope) -> Principal:
        """The caller of the request ``scope`` describes, through the auth guard (429 for an
        address that keeps presenting bad keys): what apps mounted on the gateway use.

        A request that presents no key may be a web console session (:attr:`session_auth`)
        on the paths where those count; the resolver ignores cookies on every other path (the
        model calls among them), which then need a key as always."""
        secret = presented_secret(scope["headers"])
        if secret is None and self.session_auth is not None:
            session = await self.session_auth(scope)
            if session is not None:
                return session
        guard = self.auth_guard
        if guard is None:
            return await self.auth.authenticate(secret)
        guard.check(scope)
        try:
            principal = await self.auth.authenticate(secret)
        except errors.AuthenticationError:
            guard.failed(scope)
            raise
        guard.succeeded(scope)
        return principal

    async def _fail(
        self,
        send: Send,
        shape: ErrorBody,
        exc: errors.AIWireError,
        extra: str | list[tuple[str, str]] | None,
    ) -> int:
        """Answer with ``exc`` in the client's protocol; ``extra``: the request id, or the
        response headers gathered so far."""
        status, body, headers = shape(exc)
        out = list(headers.items())
        if isinstance(extra, str):
            out.append(("x-request-id", extra))
        elif extra:
            out += extra
        await respond(send, status, body, headers=out)
        return status

    # -- the response cache ---------------------------------------------------------------

    async def _cached(
        self,
        scope: Scope,
        send: Send,
        wire: _Wire,
        principal: Principal,
        request: ChatRequest,
        outcome: _Outcome,
    ) -> bool:
        """Answer from the cache if this request's answer is there (True), else mark the
        request's answer for storing (when it may be stored)."""
        assert self.cache is not None
        cfg = self.cache_config
        record = principal.record
        decision = decide(
            request,
            cfg.mode,
            header(scope, HEADER_BYTES),
            opted_out=key_opted_out(record.options if record is not None else None),
        )
        if not decision.store:
            return False
        team = record.team if record is not None else None
        key = cache_key(
            scope_for(cfg.scope, principal.key_id, team),
            wire.protocol,
            request,
            bool(request.stream),
        )
        stream = bool(request.stream)
        semantic_scope = (
            None
            if self.semantic is None or cfg.semantic is None
            else scope_for(cfg.semantic.scope or cfg.scope, principal.key_id, team)
        )
        if decision.lookup:
            entry = await self.cache.get(key)
            if entry is None and semantic_scope is not None:
                assert self.semantic is not None
                entry = await self.semantic.lookup(semantic_scope, wire.protocol, request, stream)
            if entry is not None:
                outcome.finished = outcome.cache_hit = True
                outcome.usage = entry.usage
                await replay(send, entry, headers=outcome.headers)
                return True
        outcome.cache_key = key
        outcome.semantic_scope = semantic_scope
        outcome.headers.append((HEADER, MISS))
        return False

    async def _remember(
        self, outcome: _Outcome, wire: _Wire, request: ChatRequest, entry: Entry
    ) -> None:
        """Store an answer under its exact key, and under its question's meaning when the
        semantic cache is on."""
        assert self.cache is not None and outcome.cache_key is not None
        await self.cache.set(outcome.cache_key, entry)
        if self.semantic is not None and outcome.semantic_scope is not None:
            await self.semantic.store(
                outcome.semantic_scope, wire.protocol, request, bool(request.stream), entry
            )

    # -- admission: key limits and budgets ------------------------------------------------

    async def _budget_spent(self, budget: BudgetRecord) -> float:
        """A budget's spend in its current window (counters first, else the request log)."""
        assert self.admission is not None and self.budgets is not None
        window_id, start, _ = window(budget.period, datetime.now(UTC))
        counted = await self.admission.state.spent(f"bg:{budget.id}:{window_id}")
        return counted if counted is not None else await self.budgets.spent(budget, start)

    async def _admit(
        self,
        send: Send,
        shape: ErrorBody,
        principal: Principal,
        request: ChatRequest | EmbeddingRequest,
        outcome: _Outcome,
    ) -> bool:
        """Reserve the request under its key's limits and budgets; False (after answering
        429) when refused."""
        if self.admission is None:
            return True
        try:
            outcome.ticket = await self.admission.admit(
                principal.record,
                tokens=lambda: self._estimate(request),
                max_cost=lambda i, o: self._max_cost(request.model, i, o),
            )
        except Refused as exc:
            outcome.status = await self._fail(send, shape, exc, [*outcome.headers, *exc.headers])
            outcome.error = exc.code or type(exc).__name__
            return False
        if outcome.ticket is not None:
            outcome.headers += outcome.ticket.headers
        return True

    def _estimate(self, request: ChatRequest | EmbeddingRequest) -> tuple[int, int]:
        """Input tokens (estimated) and the most output tokens the request may produce."""
        if isinstance(request, EmbeddingRequest):
            return rough_input_tokens(request), 0
        limit = request.output_limit
        if limit is None:
            known = [
                self.pricing.max_output(d.model) for d in self.router.deployments(request.model)
            ]
            limit = max((k for k in known if k), default=DEFAULT_MAX_OUTPUT)
        return rough_input_tokens(request), limit

    def _max_cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """The most the request can cost: its dearest deployment's price (a fallback dearer
        still is settled at its actual cost)."""
        prices = [
            self.pricing.max_cost(d.model, input_tokens, output_tokens)
            for d in self.router.deployments(model)
        ]
        return max((p for p in prices if p is not None), default=0.0)

    async def _settle(self, model: str, outcome: _Outcome) -> None:
        """What the request cost, into its log row and (if admitted) its key's counters."""
        usage = outcome.usage
        dep = self.router.deployment(outcome.deployment) if outcome.deployment else None
        if dep is not None and isinstance(self.pricing, CatalogPricing):
            warning = self.pricing.note_use(dep.model)
            if warning is not None and self.alerts is not None:
                await self.alerts.fire("deprecated_model", dep.model, warning, {"model": dep.model})
        if usage is not None and dep is not None:
            outcome.cost = self.pricing.cost(dep.model, usage) or 0.0
        elif outcome.attempts and outcome.status in (200, 499) and outcome.ticket is not None:
            # It reached a provider and ended without a usage report (client gone, stream
            # cut): count what it may have cost rather than nothing.
            outcome.cost = outcome.ticket.reserved_usd
        if outcome.cache_hit:
            outcome.cost = 0.0
            usage = Usage.of(0, 0)  # a hit uses no provider tokens
        if self.admission is not None and outcome.ticket is not None:
            tokens = usage.total_tokens if usage is not None else None
            try:
                await self.admission.settle(outcome.ticket, tokens, outcome.cost)
            except Exception:  # the answer is out; a counter hiccup must not fail the request
                log.exception("settling limits and budgets failed")

    def _keeps_content(self, principal: Principal) -> bool:
        """Content goes into the request log only where the deployment allows it
        (``server.store_content``) and the key asked for it (its ``log_content`` option)."""
        record = principal.record
        return (
            self.settings.store_content
            and record is not None
            and record.options.get("log_content") is True
        )

    def _prompt(self, principal: Principal, outcome: _Outcome, body: bytes | None) -> str | None:
        if not self._keeps_content(principal):
            return None
        # Masked personal data stays masked in the log: keep what was sent, not the body.
        return _content_of(outcome.sent) if outcome.sent is not None else _content(body)

    def _log(
        self,
        request_id: str,
        principal: Principal,
        request: Any,
        endpoint: str,
        outcome: _Outcome,
        started: float,
        body: bytes | None,
    ) -> None:
        reached = bool(outcome.attempts) or outcome.cache_hit
        write = self.writer is not None and reached  # a usage row only if a provider was reached
        if not (write or self.observers):
            return
        usage = outcome.usage
        last = outcome.attempts[-1] if outcome.attempts else None
        row = RequestLogRow(
            request_id=request_id,
            model=request.model,
            endpoint=endpoint,
            status=outcome.status,
            key_id=principal.key_id,
            deployment=outcome.deployment or (last.deployment if last else None),
            provider=outcome.provider or (last.error.provider if last and last.error else None),
            error_type=outcome.error,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_input_tokens if usage else 0,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=outcome.ttft_ms,
            retries=max(0, len(outcome.attempts) - 1),
            fallback=last.fallback if last else False,
            stream=bool(getattr(request, "stream", False)),
            prompt=self._prompt(principal, outcome, body),
            completion=_content(outcome.answer) if self._keeps_content(principal) else None,
            team=principal.record.team if principal.record is not None else None,
            cost_usd=outcome.cost,
            cache_hit=outcome.cache_hit,
        )
        if write:
            self.writer.submit(row)  # type: ignore[union-attr]
        for observe in self.observers:
            try:
                observe(row)
            except Exception:  # an observer (metrics, alerts) must never break a request
                log.exception("request observer failed")


def _record_attempt(event: AttemptEvent) -> None:
    attempts = _attempts.get()
    if attempts is not None:
        attempts.append(event)


def _text_chunk(like: ChatChunk | RawChunk | None, text: str) -> ChatChunk:
    """A canonical chunk carrying ``text`` (for the end of a stream whose PII restorer held
    some back)."""
    model = getattr(like, "model", None) or ""
    return ChatChunk.model_validate(
        {"id": new_id(), "model": model, "choices": [{"index": 0, "delta": {"content": text}}]}
    )


def _too_large(exc: BodyTooLarge) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"request body is larger than {exc.limit} bytes", status=413, code="request_too_large"
    )


async def _until_disconnect(work: Awaitable[None], receive: Receive, outcome: _Outcome) -> bool:
    """Run ``work`` in this task; if the client disconnects before its answer is complete, cancel
    it (and so the upstream call). Returns whether ``work`` finished.

    One watcher task per request (the work itself runs inline). The watcher wakes when the
    client goes away, or when the server reports the response complete (``outcome.finished``
    is set before the last send, so a completed answer is never counted as abandoned).
    """
    task = asyncio.current_task()
    assert task is not None
    base = task.cancelling()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        if not outcome.finished:
            gone = True
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if gone and task.uncancel() <= base:
            return False
        raise
    finally:
        watcher.cancel()
    return True


def _content_of(sent: ChatRequest) -> str:
    return sent.model_dump_json(exclude_none=True)


def _content(body: bytes | None) -> str | None:
    return body.decode("utf-8", "replace") if body else None
