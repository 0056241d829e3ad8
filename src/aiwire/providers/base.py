"""The contract every provider adapter fulfils, and the HTTP plumbing they share.

An adapter translates canonical requests (:mod:`aiwire.types`) to one wire protocol and back,
maps that protocol's errors to :mod:`aiwire.errors` in one place (:meth:`Provider.map_error`) and
declares what it can do (:attr:`Provider.capabilities`). It knows nothing of routing: it makes one
attempt and raises a typed error; the router decides about retries and fallbacks.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import orjson

from aiwire import errors
from aiwire.providers.transport import (
    AiohttpTransport,
    Headers,
    HttpTimeout,
    HttpxTransport,
    Response,
    StreamedResponse,
    Transport,
    TransportError,
)
from aiwire.ratelimit import RateLimitInfo, parse_retry_after, retry_after_from_reset
from aiwire.secrets import Secret
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ImagePart,
    NamedToolChoice,
    RawChatResponse,
    RawChunk,
)

if TYPE_CHECKING:
    from aiwire.providers.media import (
        ImageRequest,
        ImageResponse,
        TranscriptionRequest,
        TranscriptionResponse,
    )

# --- capabilities -----------------------------------------------------------------------------


class Support(StrEnum):
    SUPPORTED = "supported"
    EMULATED = "emulated"
    REFUSED = "refused"


#: Every feature a request can use, with the wording used in docs/capabilities.md.
FEATURES: dict[str, str] = {
    "chat": "Chat completion",
    "streaming": "Streaming (`stream: true`)",
    "stream_usage": "Usage in streams",
    "system_prompt": "System / developer messages",
    "message_name": "`name` on a message (participant name)",
    "tools": "Tool definitions",
    "tool_results": "Tool results (`role: tool`)",
    "parallel_tool_calls": "Parallel tool calls",
    "parallel_tool_calls_off": "`parallel_tool_calls: false`",
    "tool_choice_required": "`tool_choice: required`",
    "tool_choice_named": "`tool_choice` naming one function",
    "tool_choice_none": "`tool_choice: none`",
    "json_object": "`response_format: json_object`",
    "json_schema": "`response_format: json_schema`",
    "strict_schema": "`strict: true` (tools or json_schema)",
    "image_url": "Image input by https URL",
    "image_base64": "Image input as base64 data URL",
    "image_detail": "Image `detail: low/high`",
    "temperature": "`temperature` 0–1",
    "temperature_above_1": "`temperature` above 1",
    "top_p": "`top_p`",
    "stop": "`stop` sequences",
    "seed": "`seed`",
    "n": "`n` > 1 (several choices)",
    "presence_penalty": "`presence_penalty`",
    "frequency_penalty": "`frequency_penalty`",
    "logprobs": "`logprobs` / `top_logprobs`",
    "user": "`user`",
    "embeddings": "Embeddings",
    "embeddings_dimensions": "Embeddings `dimensions`",
}


@dataclass(frozen=True)
class Capabilities:
    """What an adapter does with each feature; anything not listed is refused."""

    features: Mapping[str, Support]
    notes: Mapping[str, str] = field(default_factory=dict)

    def support(self, feature: str) -> Support:
        return self.features.get(feature, Support.REFUSED)

    @functools.cached_property
    def refused(self) -> frozenset[str]:
        """The features refused (anything not listed): an adapter refusing none skips the
        per-request feature scan."""
        return frozenset(f for f in FEATURES if self.support(f) is Support.REFUSED)


def used_features(request: ChatRequest) -> dict[str, str]:
    """The features a request uses, each with the parameter asking for it (for error messages)."""
    used: dict[str, str] = {"chat": "messages"}
    if request.stream:
        used["streaming"] = "stream"
        if request.stream_options and request.stream_options.include_usage:
            used["stream_usage"] = "stream_options.include_usage"
    if request.tools:
        used["tools"] = "tools"
    if request.parallel_tool_calls is False:
        used["parallel_tool_calls_off"] = "parallel_tool_calls"
    tc = request.tool_choice
    if tc == "required":
        used["tool_choice_required"] = "tool_choice"
    elif tc == "none":
        used["tool_choice_none"] = "tool_choice"
    elif isinstance(tc, NamedToolChoice):
        used["tool_choice_named"] = "tool_choice"
    rf = request.response_format
    if rf is not None and rf.type != "text":
        used[rf.type] = "response_format"
        if rf.json_schema is not None and rf.json_schema.strict:
            used["strict_schema"] = "response_format.json_schema.strict"
    for i, tool in enumerate(request.tools or []):
        if tool.function.strict:
            used["strict_schema"] = f"tools[{i}].function.strict"
    for i, m in enumerate(request.messages):
        if m.role in ("system", "developer"):
            used["system_prompt"] = f"messages[{i}].role"
        elif m.role == "tool":
            used["tool_results"] = f"messages[{i}].role"
        if m.name is not None and m.role != "tool":
            used["message_name"] = f"messages[{i}].name"
        if isinstance(m.content, list):
            for j, p in enumerate(m.content):
                if isinstance(p, ImagePart):
                    kind = "image_base64" if p.image_url.url.startswith("data:") else "image_url"
                    used[kind] = f"messages[{i}].content[{j}].image_url"
                    if p.image_url.detail in ("low", "high"):
                        used["image_detail"] = f"messages[{i}].content[{j}].image_url.detail"
    if request.temperature is not None:
        key = "temperature_above_1" if request.temperature > 1 else "temperature"
        used[key] = "temperature"
    simple = ("top_p", "seed", "presence_penalty", "frequency_penalty", "user")
    for name in simple:
        if getattr(request, name) is not None:
            used[name] = name
    if request.stop:
        used["stop"] = "stop"
    if request.n is not None and request.n > 1:
        used["n"] = "n"
    if request.logprobs or request.top_logprobs is not None:
        used["logprobs"] = "logprobs"
    return used


# --- timeouts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of one attempt.

    ``connect``: opening the connection. ``first_byte``: from sending until a stream's first event.
    ``idle``: the longest gap between two stream events. ``total``: the whole attempt (for a
    non-streamed call, which sends nothing until generation is done, the only bound). The router
    enforces ``first_byte``, ``idle`` and ``total`` on every adapter; the adapters pass
    ``connect`` and a read backstop down to the HTTP client.
    """

    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 30.0
    total: float = 600.0

    def for_http(self, *, stream: bool) -> HttpTimeout:
        """The HTTP client's per-read timeout: none for a stream (the router's watchdog checks
        first byte, idle gaps and total on every adapter, without a timer per network read);
        for a whole response (which only starts once generation is done) the total."""
        return HttpTimeout(connect=self.connect, read=None if stream else self.total)


# --- the adapter contract ---------------------------------------------------------------------


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    raw: bytes  # the data lines, joined by newlines, as sent

    @property
    def data(self) -> str:
        return self.raw.decode("utf-8", "replace")


class Provider(ABC):
    """One configured upstream (a provider entry in config) speaking one wire protocol."""

    #: The ``type:`` that selects this adapter in config.
    type: ClassVar[str]
    #: What this adapter does with each feature of a canonical request.
    capabilities: ClassVar[Capabilities]
    #: Whether unknown request fields go upstream unchanged (OpenAI-compatible) or are refused.
    passes_unknown_params: ClassVar[bool] = False
    #: The base URL when config gives none.
    default_base_url: ClassVar[str] = ""
    #: Whether this adapter speaks OpenAI's chat protocol upstream and so can hand back the
    #: upstream's own bytes (:meth:`chat_raw`, :meth:`stream_raw`) to a gateway serving the same
    #: protocol, skipping a decode into canonical types and an encode back.
    passthrough: ClassVar[bool] = False

    def __init__(
        self,
        *,
        name: str | None = None,
        api_key: Secret | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        http: Transport | httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name or self.type
        self.api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.headers = dict(headers or {})
        self.options = dict(options or {})
        self._static_headers: dict[str, str] | None = None
        self._owns_http = http is None
        self._http: Transport | None = (
            HttpxTransport(http) if isinstance(http, httpx.AsyncClient) else http
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # -- what adapters implement --

    @abstractmethod
    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One non-streamed attempt. ``request.model`` is the upstream model name."""

    @abstractmethod
    def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """One streamed attempt. Raises :class:`errors.IncompleteStreamError` if the stream ends
        without the protocol's terminal event."""

    async def chat_raw(self, request: ChatRequest, timeouts: Timeouts) -> RawChatResponse:
        """:meth:`chat`, the answer kept as the upstream's bytes (``passthrough`` adapters)."""
        raise NotImplementedError(f"{self.type} adapters have no pass-through")

    def stream_raw(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[RawChunk]:
        """:meth:`stream`, each chunk kept as the upstream's bytes (``passthrough`` adapters)."""
        raise NotImplementedError(f"{self.type} adapters have no pass-through")

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        raise errors.BadRequestError(
            f"provider type {self.type!r} has no embeddings endpoint",
            provider=self.name,
            model=request.model,
            param="model",
        )

    async def images(self, request: ImageRequest, timeouts: Timeouts) -> ImageResponse:
        """Generate images (``POST /v1/images/generations``). Adapters whose protocol has
        image output implement it; the rest refuse by name."""
        raise errors.BadRequestError(
            f"provider type {self.type!r} has no image generation; route image models to an "
            "openai (or OpenAI-compatible) or gemini provider",
            provider=self.name,
            model=request.model,
            param="model",
            code="unsupported_operation",
        )

    async def transcribe(
        self, request: TranscriptionRequest, timeouts: Timeouts
    ) -> TranscriptionResponse:
        """Speech to text (``POST /v1/audio/transcriptions``). Adapters whose protocol has it
        implement it; the rest refuse by name."""
        raise errors.BadRequestError(
            f"provider type {self.type!r} has no speech-to-text endpoint; route transcription "
            "models to an openai (or OpenAI-compatible Whisper server) provider",
            provider=self.name,
            model=request.model,
            param="model",
            code="unsupported_operation",
        )

    @abstractmethod
    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        """Turn one of this protocol's error responses into a typed error."""

    def _auth_headers(self) -> dict[str, str]:
        """The credentials this protocol sends with every request."""
        return {}

    def _request_headers(self) -> Mapping[str, str]:
        """Headers of every request: content type, configured extra headers, credentials.
        Built once, since none of them change while running (an adapter whose credentials
        expire overrides this)."""
        headers = self._static_headers
        if headers is None:
            headers = self._static_headers = {
                "content-type": "application/json",
                **self.headers,
                **self._auth_headers(),
            }
        return headers

    def ratelimit(self, headers: Headers) -> RateLimitInfo | None:
        """Rate-limit state from a response's headers (None when the protocol sends none)."""
        return None

    def retry_after(self, status: int, headers: Headers) -> float | None:
        """The delay an error response asks for: ``retry-after-ms`` / ``retry-after``, or for a
        429 without them, the reset time in the protocol's rate-limit headers."""
        delay = parse_retry_after(headers)
        if delay is None and status == 429:
            delay = retry_after_from_reset(self.ratelimit(headers))
        return delay

    # -- shared behaviour --

    def check(self, request: ChatRequest) -> None:
        """Refuse, by name, any parameter this provider cannot honour. Never drop one silently."""
        caps = self.capabilities
        refused = caps.refused
        if refused:
            self._refuse(request, refused)
        extra = request.model_extra or {}
        if extra and not self.passes_unknown_params:
            names = ", ".join(f"`{k}`" for k in sorted(extra))
            raise errors.BadRequestError(
                f"{self.type} provider {self.name!r} does not support parameter(s) {names}",
                provider=self.name,
                model=request.model,
                param=next(iter(sorted(extra))),
                code="unsupported_parameter",
            )

    def _refuse(self, request: ChatRequest, refused: frozenset[str]) -> None:
        for feature, param in used_features(request).items():
            if feature in refused:
                raise errors.BadRequestError(
                    f"{self.type} provider {self.name!r} cannot honour `{param}` "
                    f"({FEATURES.get(feature, feature)}); remove it or route this request "
                    f"to a model whose provider supports it (see docs/capabilities.md)",
                    provider=self.name,
                    model=request.model,
                    param=param,
                    code="unsupported_parameter",
                )

    @property
    def http(self) -> Transport:
        if self._http is None:
            self._http = AiohttpTransport()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    def _transport_error(self, exc: TransportError, model: str | None) -> errors.ProviderError:
        detail = errors.scrub(exc.detail, self._secrets())
        if exc.kind in ("connect_timeout", "read_timeout"):
            phase = "connecting" if exc.kind == "connect_timeout" else "reading"
            return errors.TimeoutError(
                f"timed out {phase} to {self.name} ({detail})", provider=self.name, model=model
            )
        return errors.ConnectionError(
            f"connection to {self.name} failed ({detail})", provider=self.name, model=model
        )

    def _secrets(self) -> tuple[str, ...]:
        return (self.api_key.reveal(),) if self.api_key else ()

    async def _post_json(
        self,
        url: str,
        body: Mapping[str, Any],
        *,
        timeouts: Timeouts,
        model: str | None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[Any, Response]:
        """POST a JSON body; return the decoded JSON answer, or raise the mapped typed error."""
        try:
            resp = await self.http.request(
                "POST",
                url,
                content=orjson.dumps(body),
                headers=self._request_headers(),
                params=params,
                timeout=timeouts.for_http(stream=False),
            )
        except TransportError as exc:
            raise self._transport_error(exc, model) from None
        return self._json_answer(resp, model), resp

    def _json_answer(self, resp: Response, model: str | None) -> Any:
        """The decoded JSON of a provider's answer, or the typed error it means."""
        if resp.status >= 400:
            raise self.map_error(resp.status, resp.content, resp.headers, model)
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise errors.ServerError(
                f"{self.name} answered {resp.status} with a body that is not JSON",
                provider=self.name,
                model=model,
                status=resp.status,
            ) from None

    async def _post_form(
        self,
        url: str,
        body: bytes,
        content_type: str,
        *,
        timeouts: Timeouts,
        model: str | None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """POST an encoded form (a file upload); the response, an error status raised typed."""
        headers = {**self._request_headers(), "content-type": content_type}
        try:
            resp = await self.http.request(
                "POST",
                url,
                content=body,
                headers=headers,
                params=params,
                timeout=timeouts.for_http(stream=False),
            )
        except TransportError as exc:
            raise self._transport_error(exc, model) from None
        if resp.status >= 400:
            raise self.map_error(resp.status, resp.content, resp.headers, model)
        return resp

    @contextlib.asynccontextmanager
    async def _open_stream(
        self,
        url: str,
        body: Mapping[str, Any],
        *,
        timeouts: Timeouts,
        model: str | None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Open a streamed POST; error statuses are read and raised as typed errors."""
        try:
            async with self.http.stream(
                "POST",
                url,
                content=orjson.dumps(body),
                headers=self._request_headers(),
                params=params,
                timeout=timeouts.for_http(stream=True),
            ) as resp:
                if resp.status >= 400:
                    content = await resp.read()
                    raise self.map_error(resp.status, content, resp.headers, model)
                yield resp
        except TransportError as exc:
            raise self._transport_error(exc, model) from None

    async def _sse(self, resp: StreamedResponse, model: str | None) -> AsyncIterator[SSEEvent]:
        """Server-sent events from a streamed response, parsed straight from the body's bytes
        (lines are split before decoding, so a character cut between two reads is whole again).
        Comment lines are skipped; a cut connection becomes :class:`errors.IncompleteStreamError`.
        """
        event: str | None = None
        data: list[bytes] = []
        pending = b""
        lines: list[bytes] = []
        try:
            async for piece in resp.iter_bytes():
                if pending:
                    piece = pending + piece
                lines = piece.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if not line:
                        if data:
                            yield SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))
                        event, data = None, []
                        continue
                    name, _, value = line.partition(b":")
                    if not name:
                        continue  # a comment line (": keep-alive")
                    if value.startswith(b" "):
                        value = value[1:]
                    if name == b"data":
                        data.append(value)
                    elif name == b"event":
                        event = value.decode("utf-8", "replace")
        except TransportError as exc:
            raise errors.IncompleteStreamError(
                f"stream from {self.name} was cut ({exc.kind}); the answer is incomplete",
                provider=self.name,
                model=model,
            ) from None
        line = pending.removesuffix(b"\r")
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value.removeprefix(b" "))
        if data:
            yield SSEEvent(event, b"\n".join(data))

    def _incomplete(self, model: str | None, what: str) -> errors.IncompleteStreamError:
        return errors.IncompleteStreamError(
            f"stream from {self.name} ended without {what}; the answer is incomplete",
            provider=self.name,
            model=model,
        )

    def _bad_chunk(self, model: str | None, data: str) -> errors.ProviderError:
        return errors.ServerError(
            errors.scrub(
                f"{self.name} sent a stream event that is not valid JSON: {data[:80]!r}",
                self._secrets(),
            ),
            provider=self.name,
            model=model,
            retryable=True,
        )


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


def error_text(body: bytes) -> tuple[Any, str]:
    """The decoded body (or None) and a short printable message from it."""
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, body[:300].decode("utf-8", "replace").strip() or "no error message"
    return decoded, ""
