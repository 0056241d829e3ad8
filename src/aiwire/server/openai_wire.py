"""The OpenAI protocol as a client speaks it: request bytes → canonical, canonical → response bytes.

Requests are parsed with orjson and validated by pydantic once. Responses, stream chunks and
errors are rendered from plain dicts with ``orjson.dumps`` (no pydantic serialisation on the hot
path); :func:`render_chat` gives what ``ChatResponse.model_dump(exclude_none=True)`` gives, plus
the fields OpenAI always sends (see its docstring).

A client never chooses the upstream: bodies naming a base URL, a key or a provider
(:data:`UPSTREAM_FIELDS`, also inside ``extra_body``) are refused with ``unsupported_parameter``.
"""

from __future__ import annotations

import base64
import math
import sys
import time
from array import array
from collections.abc import Iterable
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from aiwire import errors
from aiwire.providers.media import (
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
)
from aiwire.providers.multipart import Part
from aiwire.server import sse
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    RawChatResponse,
    RawChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    new_id,
)

#: Body fields by which a client would pick the upstream, its credentials or its headers.
#: The first eight are the usual SDK/proxy spellings; the rest are LiteLLM's per-request
#: credentials and OpenRouter's ``provider`` routing preferences.
UPSTREAM_FIELDS = frozenset(
    {
        "base_url",
        "api_base",
        "api_key",
        "api_version",
        "azure_endpoint",
        "custom_llm_provider",
        "extra_headers",
        "upstream",
        "extra_query",
        "api_type",
        "deployment_id",
        "provider",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
    }
)

_INTERNAL_MESSAGE = "The server had an error while processing your request."

# pydantic error type → OpenAI error code
_CODES = {"missing": "missing_required_parameter", "literal_error": "invalid_value"}


# --- requests ---------------------------------------------------------------------------------


def load_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; BadRequestError naming the problem and its position."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise errors.BadRequestError(
            f"The request body must be a JSON object, not {_json_kind(data)}", code="invalid_json"
        )
    return data


def refuse_upstream_fields(data: dict[str, Any]) -> None:
    """Refuse any body field by which the client would choose the upstream or send its key."""
    if not UPSTREAM_FIELDS.isdisjoint(data):
        name = min(UPSTREAM_FIELDS.intersection(data))
        raise _upstream_refusal(name)
    extra = data.get("extra_body")
    if isinstance(extra, dict) and not UPSTREAM_FIELDS.isdisjoint(extra):
        raise _upstream_refusal(f"extra_body.{min(UPSTREAM_FIELDS.intersection(extra))}")


def _upstream_refusal(param: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"Unsupported parameter: '{param}'. This gateway chooses the upstream provider and its "
        "credentials itself; remove the field from the request.",
        code="unsupported_parameter",
        param=param,
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def invalid_request(exc: ValidationError, data: Any) -> errors.BadRequestError:
    """A BadRequestError for a pydantic error, naming the field as the client wrote it
    (``messages[1].role``), with ``param`` set to that path."""
    # Unions report one error per member; the deepest one is the most specific.
    err = max(exc.errors(include_url=False), key=lambda e: len(e["loc"]))
    path = field_path(err["loc"], data, missing=err["type"] == "missing")
    msg = err["msg"]
    if err["type"] == "missing":
        message = f"Missing required parameter: '{path}'."
    else:
        message = f"Invalid value for '{path}': {msg[0].lower() + msg[1:] if msg else msg}."
    return errors.BadRequestError(message, param=path, code=_CODES.get(err["type"], "invalid_type"))


def field_path(loc: Iterable[int | str], data: Any, *, missing: bool = False) -> str:
    """``loc`` as a path into the client's JSON, with pydantic's union-member tags
    (``str``, ``list[...]``, discriminator values) left out: an element counts only when it
    indexes the data (or names the missing field at the end)."""
    parts: list[str] = []
    items = list(loc)
    for i, key in enumerate(items):
        last = i == len(items) - 1
        if isinstance(key, int) and isinstance(data, list) and 0 <= key < len(data):
            parts.append(f"[{key}]")
            data = data[key]
        elif isinstance(key, str) and isinstance(data, dict) and key in data:
            parts.append(f".{key}" if parts else key)
            data = data[key]
        elif last and missing and isinstance(key, str):
            parts.append(f".{key}" if parts else key)
    return "".join(parts) or "body"


def parse_chat(body: bytes) -> ChatRequest:
    """An OpenAI ``POST /v1/chat/completions`` body as a canonical request.

    Unknown fields are kept (``model_extra``), as the canonical type does; fields choosing the
    upstream are refused. ``n > 1`` is accepted, streamed or not.
    """
    try:
        # The common case in one step: bytes straight to the model (no intermediate dicts).
        request = ChatRequest.model_validate_json(body)
    except ValidationError:
        request = None
    if request is not None:
        # Fields choosing the upstream are not ChatRequest fields: they land in model_extra.
        extra = request.model_extra
        if extra:
            refuse_upstream_fields(extra)
    else:  # say exactly what is wrong, in the client's terms (JSON position, field path)
        data = load_object(body)
        refuse_upstream_fields(data)
        try:
            request = ChatRequest.model_validate(data)
        except ValidationError as exc:
            raise invalid_request(exc, data) from None
    if not request.messages:
        raise errors.BadRequestError(
            "'messages' must contain at least one message.",
            param="messages",
            code="invalid_value",
        )
    return request


def parse_embeddings(body: bytes) -> EmbeddingRequest:
    """An OpenAI ``POST /v1/embeddings`` body as a canonical request (text inputs only)."""
    data = load_object(body)
    refuse_upstream_fields(data)
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc, data) from None


# --- responses --------------------------------------------------------------------------------


def usage_dict(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object; ``prompt_tokens_details.cached_tokens`` is always present."""
    details = usage.prompt_tokens_details
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": details.cached_tokens if details else 0},
    }


def _tool_call(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": call.type,
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }
    if call.extra_content is not None:
        out["extra_content"] = call.extra_content
    return out


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    content = m.content
    if isinstance(content, list):  # an answer's content is text: join its parts
        content = m.text
    if content is not None or m.tool_calls:
        out["content"] = content  # null next to tool calls, as OpenAI sends it
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [_tool_call(c) for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.refusal is not None:
        out["refusal"] = m.refusal
    return out


def chat_dict(resp: ChatResponse) -> dict[str, Any]:
    """The ``chat.completion`` object as plain data (see :func:`render_chat`)."""
    choices = []
    for c in resp.choices:
        choice: dict[str, Any] = {"index": c.index, "message": _message(c.message)}
        if c.finish_reason is not None:
            choice["finish_reason"] = c.finish_reason
        if c.logprobs is not None:
            choice["logprobs"] = c.logprobs
        choices.append(choice)
    out: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "choices": choices,
    }
    if resp.usage is not None:
        out["usage"] = usage_dict(resp.usage)
    if resp.system_fingerprint is not None:
        out["system_fingerprint"] = resp.system_fingerprint
    return out


def render_chat(resp: ChatResponse | RawChatResponse) -> bytes:
    """OpenAI's ``chat.completion`` JSON for a canonical response.

    Equal (as JSON) to ``resp.model_dump(exclude_none=True)`` except that ``message.content`` is
    present as ``null`` next to tool calls, ``usage.prompt_tokens_details.cached_tokens`` is
    always present, and list content is joined to its text. aiwire-only fields (provider,
    deployment, rate-limit state) are never sent. An OpenAI-compatible upstream's answer
    passed through (:class:`RawChatResponse`) goes out as its own bytes.
    """
    if type(resp) is RawChatResponse:
        return resp.body
    assert isinstance(resp, ChatResponse)
    return orjson.dumps(chat_dict(resp))


# --- streaming --------------------------------------------------------------------------------


def _delta_tool_call(tc: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": tc.index}
    if tc.id is not None:
        out["id"] = tc.id
    if tc.type is not None:
        out["type"] = tc.type
    fn = tc.function
    if fn is not None:
        f: dict[str, Any] = {}
        if fn.name is not None:
            f["name"] = fn.name
        if fn.arguments is not None:
            f["arguments"] = fn.arguments
        out["function"] = f
    if tc.extra_content is not None:
        out["extra_content"] = tc.extra_content
    return out


class StreamRenderer:
    """Canonical chunks → OpenAI ``chat.completion.chunk`` SSE bytes, for one client request.

    Usage follows the *client's* ``stream_options.include_usage``, whatever the upstream did:
    asked for, every chunk carries ``"usage": null`` and :meth:`done` sends one final
    ``choices: []`` chunk with the usage (``null`` there if no upstream reported any); not asked
    for, no usage is sent. Usage found on any canonical chunk (the Anthropic adapter puts it on
    the finish chunk, the OpenAI and Gemini adapters on a closing ``choices: []`` chunk) is held
    back for that final chunk; the last one reported wins.

    ``id``, ``created`` and ``model`` are pinned from the first chunk so every chunk of the
    stream carries the same values, as OpenAI's do.
    """

    __slots__ = (
        "_created",
        "_fingerprint",
        "_first_raw",
        "_id",
        "_model",
        "_text_head",
        "_text_tail",
        "_usage_sent",
        "include_usage",
        "usage",
    )

    def __init__(self, request: ChatRequest) -> None:
        opts = request.stream_options
        self.include_usage = bool(opts is not None and opts.include_usage)
        self.usage: Usage | None = None
        self._id: str | None = None
        self._created = 0
        self._model = request.model
        self._fingerprint: str | None = None
        self._text_head = b""
        self._text_tail = b""
        self._first_raw: bytes | None = None
        self._usage_sent = False

    def _pin(self, chunk: ChatChunk) -> None:
        """Fix the stream's id, created, model and fingerprint, and pre-render the bytes around
        a plain text delta (the common chunk) for :meth:`render`'s fast path."""
        self._id = chunk.id
        self._created = chunk.created
        self._model = chunk.model or self._model
        self._fingerprint = chunk.system_fingerprint
        self._text_head = (
            b'data: {"id":'
            + orjson.dumps(self._id)
            + b',"object":"chat.completion.chunk","created":'
            + orjson.dumps(self._created)
            + b',"model":'
            + orjson.dumps(self._model)
            + b',"choices":[{"index":0,"delta":{"content":'
        )
        self._text_tail = (
            b'},"logprobs":null,"finish_reason":null}]'
            + (
                b',"system_fingerprint":' + orjson.dumps(self._fingerprint)
                if self._fingerprint is not None
                else b""
            )
            + (b',"usage":null' if self.include_usage else b"")
            + b"}\n\n"
        )

    def render(self, chunk: ChatChunk | RawChunk) -> bytes:
        """The SSE bytes for one chunk; ``b""`` when there is nothing to send now (a usage-only
        chunk: its usage goes out with :meth:`done`)."""
        if type(chunk) is RawChunk:
            return self._render_raw(chunk)
        assert isinstance(chunk, ChatChunk)
        if self._id is None:
            self._pin(chunk)
        if chunk.usage is not None:
            self.usage = chunk.usage
        choices = chunk.choices
        if len(choices) == 1:  # fast path: one choice with a text fragment and nothing else
            c = choices[0]
            d = c.delta
            text = d.content
            if (
                text is not None
                and c.index == 0
                and c.finish_reason is None
                and d.role is None
                and d.tool_calls is None
                and d.refusal is None
                and c.logprobs is None
            ):
                return self._text_head + orjson.dumps(text) + self._text_tail
        elif not choices:
            return b""
        return self.render_general(chunk)

    def _render_raw(self, chunk: RawChunk) -> bytes:
        """An OpenAI-compatible upstream's chunk, passed on as its own bytes. Only the usage
        follows the client's ``include_usage``: asked for, the upstream's closing usage chunk
        goes out as sent; not asked for, it is held back and ``"usage":null`` is taken out of
        the other chunks (aiwire always asks the upstream for usage)."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if self._first_raw is None:
            self._first_raw = chunk.data
        if chunk.usage_only:
            if not self.include_usage:
                return b""
            self._usage_sent = True
            return b"data: " + chunk.data + b"\n\n"
        data = chunk.data
        if not self.include_usage and b'"usage"' in data:
            data = data.replace(b',"usage":null', b"").replace(b', "usage": null', b"")
        return b"data: " + data + b"\n\n"

    def render_general(self, chunk: ChatChunk) -> bytes:
        """:meth:`render` without its fast path (any chunk, once the stream is pinned)."""
        choices = []
        for c in chunk.choices:
            d = c.delta
            delta: dict[str, Any] = {}
            if d.role is not None:
                delta["role"] = d.role
            if d.content is not None:
                delta["content"] = d.content
            if d.refusal is not None:
                delta["refusal"] = d.refusal
            if d.tool_calls:
                delta["tool_calls"] = [_delta_tool_call(tc) for tc in d.tool_calls]
            choices.append(
                {
                    "index": c.index,
                    "delta": delta,
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason,
                }
            )
        out = self._envelope(choices)
        if self.include_usage:
            out["usage"] = None
        return b"data: " + orjson.dumps(out) + b"\n\n"

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._fingerprint is not None:
            out["system_fingerprint"] = self._fingerprint
        return out

    def done(self) -> bytes:
        """The end of a complete stream: the usage chunk (when asked for) and ``[DONE]``."""
        if not self.include_usage or self._usage_sent:
            return sse.DONE
        if self._id is None and self._first_raw is not None:
            self._pin_from_raw(self._first_raw)
        if self._id is None:
            self._id, self._created = new_id(), int(time.time())
        out = self._envelope([])
        out["usage"] = usage_dict(self.usage) if self.usage is not None else None
        return b"data: " + orjson.dumps(out) + b"\n\n" + sse.DONE

    def _pin_from_raw(self, data: bytes) -> None:
        first = orjson.loads(data)
        self._id = str(first.get("id") or new_id())
        created = first.get("created")
        self._created = created if isinstance(created, int) else int(time.time())
        self._model = str(first.get("model") or self._model)
        fingerprint = first.get("system_fingerprint")
        self._fingerprint = fingerprint if isinstance(fingerprint, str) else None

    def error(self, exc: BaseException) -> bytes:
        """A mid-stream error as OpenAI sends it: ``data: {"error": {...}}`` (the openai SDK
        raises ``APIError`` on it). Nothing is sent after it."""
        return sse.data(orjson.dumps(error_dict(exc)))


# --- embeddings -------------------------------------------------------------------------------

_BIG_ENDIAN = sys.byteorder == "big"


def encode_base64(vector: list[float]) -> str:
    """A vector as OpenAI's base64: little-endian float32 values."""
    packed = array("f", vector)
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def render_embeddings(
    resp: EmbeddingResponse, encoding_format: Literal["float", "base64"] | None = None
) -> bytes:
    """OpenAI's embeddings list; with ``base64`` (what the openai SDK asks for by default)
    each embedding is a base64 string of little-endian float32 values."""
    b64 = encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": e.index,
            "embedding": encode_base64(e.embedding) if b64 else e.embedding,
        }
        for e in resp.data
    ]
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": resp.model,
            "usage": {
                "prompt_tokens": resp.usage.prompt_tokens,
                "total_tokens": resp.usage.total_tokens,
            },
        }
    )


# --- images and speech to text ----------------------------------------------------------------


def parse_images(body: bytes) -> ImageRequest:
    """An OpenAI ``POST /v1/images/generations`` body. Unknown fields are kept for
    OpenAI-compatible upstreams; fields choosing the upstream are refused."""
    data = load_object(body)
    refuse_upstream_fields(data)
    try:
        return ImageRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc, data) from None


def render_images(resp: ImageResponse) -> bytes:
    """OpenAI's images response (with whatever else the upstream answered, e.g. GPT Image's
    ``size``/``quality``), aiwire's own fields left out."""
    return orjson.dumps(resp.model_dump(exclude_none=True))


#: Form fields of a transcription that may be repeated (the SDK sends them as ``name[]``).
_LIST_FIELDS = ("timestamp_granularities", "include")
_TRANSCRIPTION_FIELDS = ("model", "language", "prompt", "response_format", "temperature")


def parse_transcription(parts: list[Part]) -> TranscriptionRequest:
    """An OpenAI ``POST /v1/audio/transcriptions`` form (see :mod:`aiwire.providers.multipart`)
    as a canonical request. Fields aiwire has no name for are kept for the upstream; fields
    choosing the upstream, a second file and ``stream`` (not served here) are refused."""
    known: dict[str, Any] = {}
    lists: dict[str, list[str]] = {name: [] for name in _LIST_FIELDS}
    other: list[tuple[str, str]] = []
    upload: Part | None = None
    for part in parts:
        if part.filename is not None or part.name == "file":
            if part.name != "file" or upload is not None:
                raise errors.BadRequestError(
                    f"Unexpected file field '{part.name}': send one audio file, as 'file'.",
                    param=part.name,
                    code="invalid_value",
                )
            upload = part
            continue
        name = part.name.removesuffix("[]")
        if name in UPSTREAM_FIELDS:
            raise _upstream_refusal(name)
        if name == "stream":
            if part.text.strip().lower() in ("true", "1"):
                raise errors.BadRequestError(
                    "Streamed transcriptions are not served by this gateway; leave out 'stream'.",
                    param="stream",
                    code="unsupported_parameter",
                )
        elif name in _LIST_FIELDS:
            lists[name].append(part.text)
        elif name in _TRANSCRIPTION_FIELDS:
            known[name] = part.text
        else:
            other.append((part.name, part.text))
    if upload is None:
        raise errors.BadRequestError(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    data: dict[str, Any] = {**known, **lists, "fields": other, "file": upload.data}
    data["filename"] = upload.filename or "audio"
    data["content_type"] = upload.content_type or "application/octet-stream"
    try:
        return TranscriptionRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc, {k: v for k, v in data.items() if k != "file"}) from None


def render_transcription(resp: TranscriptionResponse) -> tuple[bytes, bytes]:
    """The body and content type of a transcription answer: the upstream's own, or (from an
    adapter that built it) OpenAI's ``{"text": ...}``."""
    if resp.raw:
        return resp.raw, resp.media_type.encode("latin-1")
    return orjson.dumps({"text": resp.text}), b"application/json"


# --- errors -----------------------------------------------------------------------------------

# The status codes both official SDKs retry on their own.
_SDK_RETRIES = frozenset({408, 409, 429})


def retry_headers(exc: errors.AIWireError, status: int) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and ``retry-after-ms`` when the error names a
    delay, and ``x-should-retry`` when the error's retryability differs from what the SDKs would
    infer from the status (e.g. a 429 quota refusal: waiting does not help)."""
    headers: dict[str, str] = {}
    if exc.retry_after is not None and exc.retry_after >= 0:
        headers["retry-after"] = str(math.ceil(exc.retry_after))
        headers["retry-after-ms"] = str(math.ceil(exc.retry_after * 1000))
    sdk_retries = status in _SDK_RETRIES or status >= 500
    if exc.retryable != sdk_retries:
        headers["x-should-retry"] = "true" if exc.retryable else "false"
    return headers


def status_of(exc: errors.AIWireError, *, overloaded: int = 503) -> int:
    """The HTTP status a gateway answers with for ``exc``.

    Timeouts are 504 (the gateway's upstream timed out), network failures 502, overload
    ``overloaded`` (OpenAI uses 503; Anthropic 529); other errors keep their status when it is
    an error status, else their class's default, else 500.
    """
    if isinstance(exc, errors.TimeoutError):
        return 504
    if isinstance(exc, errors.OverloadedError):
        return overloaded
    if isinstance(exc, errors.RateLimitError):
        return 429
    if isinstance(exc, errors.ConnectionError):
        return 502
    status = exc.status
    if isinstance(status, int) and 400 <= status <= 599:
        if isinstance(exc, errors.ServerError) and status < 500:
            return 500
        return status
    return exc.default_status or 500


def error_dict(exc: BaseException) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}`` for any exception; non-aiwire exceptions get
    a generic message (never their text or a traceback)."""
    if not isinstance(exc, errors.AIWireError):
        return {
            "error": {
                "message": _INTERNAL_MESSAGE,
                "type": "api_error",
                "param": None,
                "code": None,
            }
        }
    code = exc.code
    if code is None and isinstance(exc, errors.ContextWindowExceededError):
        code = "context_length_exceeded"
    return {
        "error": {
            "message": exc.message,
            "type": exc.openai_type,
            "param": exc.param,
            "code": code,
        }
    }


def error_body(exc: errors.AIWireError) -> tuple[int, bytes, dict[str, str]]:
    """Status, OpenAI error body and headers (``retry-after``/``retry-after-ms``,
    ``x-should-retry``, ``x-request-id`` when known) for an aiwire error."""
    status = status_of(exc)
    headers = retry_headers(exc, status)
    if exc.request_id:
        headers["x-request-id"] = exc.request_id
    return status, orjson.dumps(error_dict(exc)), headers


def internal_error_body(request_id: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """A 500 for an unexpected exception: a generic message, nothing of the exception itself."""
    headers = {"x-request-id": request_id} if request_id else {}
    return 500, orjson.dumps(error_dict(Exception())), headers


__all__ = [
    "UPSTREAM_FIELDS",
    "StreamRenderer",
    "chat_dict",
    "encode_base64",
    "error_body",
    "error_dict",
    "field_path",
    "internal_error_body",
    "invalid_request",
    "load_object",
    "parse_chat",
    "parse_embeddings",
    "parse_images",
    "parse_transcription",
    "refuse_upstream_fields",
    "render_chat",
    "render_embeddings",
    "render_images",
    "render_transcription",
    "retry_headers",
    "status_of",
    "usage_dict",
]
