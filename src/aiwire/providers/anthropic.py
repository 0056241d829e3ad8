"""Anthropic Messages API (``POST {base_url}/v1/messages``).

Canonical (OpenAI-shaped) requests are translated to Anthropic's shape and answers back:

- ``system``/``developer`` messages become the top-level ``system`` string;
- assistant ``tool_calls`` become ``tool_use`` blocks (``arguments`` parsed to an object), and
  consecutive ``role: tool`` messages become one user turn whose ``tool_result`` blocks come first;
- consecutive turns of the same role are merged (Anthropic wants alternating turns);
- ``response_format`` (json_object / json_schema) is emulated with one forced tool whose input is
  returned as the message text;
- the named-event SSE stream is folded into OpenAI-style chunks, complete only at ``message_stop``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from aiwire import errors
from aiwire.providers.base import Capabilities, Provider, Support, Timeouts, error_text
from aiwire.providers.tool_blocks import ToolBlocks
from aiwire.providers.transport import Headers
from aiwire.ratelimit import RateLimitInfo, parse_anthropic_headers
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    NamedToolChoice,
    TextPart,
    ToolCall,
    Usage,
    new_id,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

_S, _E = Support.SUPPORTED, Support.EMULATED
_SUPPORTED = (
    "chat",
    "streaming",
    "stream_usage",
    "system_prompt",
    "tools",
    "tool_results",
    "parallel_tool_calls",
    "parallel_tool_calls_off",
    "tool_choice_required",
    "tool_choice_named",
    "tool_choice_none",
    "image_url",
    "image_base64",
    "temperature",
    "top_p",
    "stop",
    "user",
)
_CAPABILITIES = Capabilities(
    features={
        **{f: _S for f in _SUPPORTED},
        "strict_schema": _S,
        "json_object": _E,
        "json_schema": _E,
    },
    notes={
        "chat": "Anthropic requires `max_tokens`; when a request sets neither `max_tokens` nor "
        "`max_completion_tokens`, aiwire sends `options.default_max_tokens` (default 4096).",
        "strict_schema": "sent as `strict: true` on the tool definition (Anthropic's strict tool "
        "use; some accounts need the `structured-outputs` beta via `options.anthropic_beta`).",
        "json_object": "a single forced tool with input schema `{type: object}`; its input is "
        "returned as the message content (JSON text), finish_reason `stop`. Cannot be combined "
        "with `tools`.",
        "json_schema": "a single forced tool named after `json_schema.name` whose `input_schema` "
        "is the schema; its input is returned as the message content (JSON text), finish_reason "
        "`stop`. Cannot be combined with `tools`.",
    },
)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type → (class, the status it implies when it arrives as an event inside a 200 stream)
_ERRORS: dict[str, tuple[type[errors.ProviderError], int]] = {
    "invalid_request_error": (errors.BadRequestError, 400),
    "authentication_error": (errors.AuthenticationError, 401),
    "billing_error": (errors.PermissionDeniedError, 402),
    "permission_error": (errors.PermissionDeniedError, 403),
    "not_found_error": (errors.NotFoundError, 404),
    "request_too_large": (errors.BadRequestError, 413),
    "rate_limit_error": (errors.RateLimitError, 429),
    "api_error": (errors.ServerError, 500),
    "timeout_error": (errors.TimeoutError, 504),
    "overloaded_error": (errors.OverloadedError, 529),
}
# The only place where an error's text decides its class: Anthropic has no distinct type for it.
_CONTEXT_PHRASES = ("prompt is too long", "context window", "exceed context limit")


class AnthropicProvider(Provider):
    """Anthropic's Messages API. ``base_url`` is the host root (the adapter adds ``/v1/...``)."""

    type = "anthropic"
    default_base_url = "https://api.anthropic.com"
    capabilities = _CAPABILITIES

    # -- request plumbing --

    def _url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key.reveal()
        beta = self.options.get("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(map(str, beta))
        return headers

    def _default_max_tokens(self) -> int:
        value = self.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.ConfigError(
                f"providers.{self.name}.options.default_max_tokens must be a positive integer, "
                f"got {value!r}"
            )
        return value

    def _translate(self, request: ChatRequest, *, stream: bool) -> _Translated:
        self.check(request)
        try:
            return to_anthropic(
                request, default_max_tokens=self._default_max_tokens(), stream=stream
            )
        except _Invalid as exc:
            raise errors.BadRequestError(
                exc.message,
                provider=self.name,
                model=request.model,
                param=exc.param,
                code="invalid_request",
            ) from None

    # -- calls --

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        plan = self._translate(request, stream=False)
        data, resp = await self._post_json(
            self._url(),
            plan.body,
            timeouts=timeouts,
            model=request.model,
        )
        if isinstance(data, dict) and data.get("type") == "error":
            raise self._error_from_body(data, resp.status, resp.headers, request.model)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise errors.ServerError(
                f"{self.name} answered with a body that is not a message",
                provider=self.name,
                model=request.model,
                status=resp.status,
            )
        out = from_anthropic(data, request.model, plan.json_tool)
        out.provider = self.name
        out.request_id = resp.headers.get("request-id")
        out.ratelimit = self.ratelimit(resp.headers)
        return out

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        plan = self._translate(request, stream=True)
        model = request.model
        async with self._open_stream(
            self._url(),
            plan.body,
            timeouts=timeouts,
            model=model,
        ) as resp:
            state = _StreamState(provider=self.name, model=model, json_tool=plan.json_tool)
            ratelimit = self.ratelimit(resp.headers)
            async for event in self._sse(resp, model):
                try:
                    payload = orjson.loads(event.raw)
                except orjson.JSONDecodeError:
                    raise self._bad_chunk(model, event.data) from None
                if not isinstance(payload, dict):
                    raise self._bad_chunk(model, event.data)
                kind = str(payload.get("type") or event.event or "")
                if kind == "error":
                    raise self._error_from_body(payload, 200, resp.headers, model)
                for chunk in state.feed(kind, payload):
                    chunk.ratelimit, ratelimit = ratelimit, None  # reported once, first chunk
                    yield chunk
                if state.done:
                    return
        raise self._incomplete(model, "message_stop")

    # -- errors and limits --

    def ratelimit(self, headers: Headers) -> RateLimitInfo | None:
        info = parse_anthropic_headers(headers)
        return None if info.empty else info

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        decoded, text = error_text(body)
        if isinstance(decoded, dict):
            return self._error_from_body(decoded, status, headers, model)
        message = f"{self.name} answered HTTP {status}" + (f": {text[:200]}" if text else "")
        return self._make_error(status, None, message, None, decoded, headers, model)

    def _error_from_body(
        self, body: dict[str, Any], status: int, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        err = body.get("error")
        err = err if isinstance(err, dict) else {}
        etype = str(err["type"]) if err.get("type") else None
        message = str(err.get("message") or f"{self.name} answered HTTP {status}")
        if status < 400:  # an `error` event inside a 200 stream: its type names the status
            status = _ERRORS.get(etype or "", (errors.ServerError, 500))[1]
        rid = body.get("request_id")
        return self._make_error(
            status, etype, message, str(rid) if rid else None, body, headers, model
        )

    def _make_error(
        self,
        status: int,
        etype: str | None,
        message: str,
        request_id: str | None,
        body: Any,
        headers: Headers,
        model: str | None,
    ) -> errors.ProviderError:
        cls = _ERRORS[etype][0] if etype in _ERRORS else errors.error_for_status(status)
        if status in (503, 529) and cls is errors.ServerError:
            cls = errors.OverloadedError  # "unavailable" is capacity, whatever the body's type
        if cls is errors.BadRequestError and etype in (None, "invalid_request_error"):
            lowered = message.lower()
            if any(phrase in lowered for phrase in _CONTEXT_PHRASES):
                cls = errors.ContextWindowExceededError
        retryable: bool | None = None
        should_retry = headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        if etype == "billing_error":
            retryable = False  # paying, not waiting, fixes it
        return cls(
            errors.scrub(message, self._secrets()),
            status=status,
            provider=self.name,
            model=model,
            request_id=request_id or headers.get("request-id"),
            retryable=retryable,
            retry_after=self.retry_after(status, headers),
            code=etype,
            body=body,
        )


# --- request translation (canonical → Anthropic) ---------------------------------------------


class _Invalid(Exception):
    """A request that cannot be expressed for Anthropic; becomes a BadRequestError."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class _Translated:
    body: dict[str, Any]
    #: The forced tool emulating ``response_format``, if any: its input is the answer text.
    json_tool: str | None = None


def to_anthropic(request: ChatRequest, *, default_max_tokens: int, stream: bool) -> _Translated:
    """The Messages API body for a canonical request."""
    system, messages = _messages(request.messages)
    limit = request.output_limit
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": limit if limit is not None else default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    json_tool = _json_tool(request)
    if json_tool is not None:
        body["tools"] = [json_tool]
        body["tool_choice"] = {
            "type": "tool",
            "name": json_tool["name"],
            "disable_parallel_tool_use": True,
        }
    elif request.tools:
        body["tools"] = [
            _tool(t.function.name, t.function.description, t.function.parameters, t.function.strict)
            for t in request.tools
        ]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    if request.stop_list:
        body["stop_sequences"] = request.stop_list
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if stream:
        body["stream"] = True
    return _Translated(body, json_tool["name"] if json_tool else None)


def _messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The top-level system text and the alternating user/assistant turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role in ("system", "developer"):
            if any(isinstance(p, ImagePart) for p in m.parts):
                raise _Invalid(
                    f"messages[{i}]: Anthropic's system prompt takes text only, not images",
                    f"messages[{i}].content",
                )
            if m.text:
                system.append(m.text)
            continue
        if m.role == "tool":
            role, blocks = "user", [_tool_result(m, i)]
        elif m.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(m, i)
        else:
            role, blocks = "user", _content_blocks(m, i)
        if turns and turns[-1]["role"] == role:
            _merge(turns[-1]["content"], blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _merge(content: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Append ``blocks`` to a turn, keeping every ``tool_result`` ahead of other blocks
    (Anthropic requires tool results first in their user turn)."""
    for block in blocks:
        if block["type"] == "tool_result":
            at = sum(1 for b in content if b["type"] == "tool_result")
            content.insert(at, block)
        else:
            content.append(block)


def _content_blocks(m: Message, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(m.parts):
        if isinstance(part, TextPart):
            if part.text:  # Anthropic rejects empty text blocks
                blocks.append({"type": "text", "text": part.text})
        else:
            blocks.append(_image_block(part.image_url.url, f"messages[{i}].content[{j}]"))
    return blocks


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise _Invalid(
                f"{where}: image data URLs must look like data:<mime>;base64,<data>",
                f"{where}.image_url",
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _Invalid(f"{where}: image URL must be https:// or a data: URL", f"{where}.image_url")


def _assistant_blocks(m: Message, i: int) -> list[dict[str, Any]]:
    blocks = _content_blocks(m, i)
    for j, call in enumerate(m.tool_calls or []):
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        raw = call.function.arguments.strip() or "{}"
        try:
            args = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Invalid(f"{where} is not valid JSON: {raw[:60]!r}", where) from None
        if not isinstance(args, dict):
            raise _Invalid(f"{where} must be a JSON object, got {raw[:60]!r}", where)
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": args}
        )
    return blocks


def _tool_result(m: Message, i: int) -> dict[str, Any]:
    if not m.tool_call_id:
        raise _Invalid(
            f"messages[{i}] has role 'tool' but no tool_call_id", f"messages[{i}].tool_call_id"
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
    if isinstance(m.content, str):
        block["content"] = m.content
    elif m.content:
        block["content"] = _content_blocks(m, i)
    return block


def _tool(
    name: str,
    description: str | None,
    schema: dict[str, Any] | None,
    strict: bool | None = None,
) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": name}
    if description:
        tool["description"] = description
    tool["input_schema"] = schema if schema is not None else {"type": "object", "properties": {}}
    if strict:
        tool["strict"] = True
    return tool


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    tc = request.tool_choice
    choice: dict[str, Any] | None
    if isinstance(tc, NamedToolChoice):
        choice = {"type": "tool", "name": tc.function.name}
    elif tc is None:
        choice = None
    else:
        choice = {"type": {"auto": "auto", "required": "any", "none": "none"}[tc]}
    if request.parallel_tool_calls is False:
        if choice is None:
            choice = {"type": "auto"}
        if choice["type"] != "none":  # `none` does not accept the flag
            choice["disable_parallel_tool_use"] = True
    return choice


def _json_tool(request: ChatRequest) -> dict[str, Any] | None:
    """The forced tool that emulates ``response_format`` json_object / json_schema."""
    rf = request.response_format
    if rf is None or rf.type == "text":
        return None
    if request.tools:
        raise _Invalid(
            f"response_format {rf.type} is emulated on Anthropic with a forced tool, so it cannot "
            "be combined with `tools`; drop one of them or route to a provider with native "
            "structured output",
            "response_format",
        )
    spec = rf.json_schema
    if rf.type == "json_schema" and spec is not None:
        description = spec.description or "Answer by calling this tool with the response JSON."
        return _tool(spec.name, description, spec.schema_ or {"type": "object"}, spec.strict)
    return _tool(
        "response", "Answer by calling this tool with the response JSON.", {"type": "object"}
    )


# --- response translation (Anthropic → canonical) --------------------------------------------


def _finish(stop_reason: Any, json_mode: bool) -> FinishReason | None:
    if stop_reason is None:
        return None
    reason = _FINISH.get(str(stop_reason), "stop")
    return "stop" if json_mode and reason == "tool_calls" else reason


def _usage(u: Mapping[str, Any]) -> Usage:
    def n(key: str) -> int:
        v = u.get(key)
        return int(v) if isinstance(v, int | float) else 0

    cached = n("cache_read_input_tokens")
    prompt = n("input_tokens") + n("cache_creation_input_tokens") + cached
    return Usage.of(prompt, n("output_tokens"), cached_input_tokens=cached)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def from_anthropic(data: dict[str, Any], model: str, json_tool: str | None) -> ChatResponse:
    """The canonical response for a Messages API answer. With ``json_tool`` set, that tool's
    input is the answer text rather than a tool call."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "tool_use" and json_tool is not None and block.get("name") == json_tool:
            text.append(_json_text(block.get("input") or {}))
        elif kind == "tool_use":
            calls.append(
                ToolCall(
                    id=str(block.get("id") or new_id("call_")),
                    function=FunctionCall(
                        name=str(block.get("name") or ""),
                        arguments=_json_text(block.get("input") or {}),
                    ),
                )
            )
        # thinking, redacted_thinking, server-tool blocks and unknown types carry no OpenAI field
    joined = "".join(text)
    message = Message(
        role="assistant",
        content=joined if joined or not calls else None,
        tool_calls=calls or None,
    )
    usage = data.get("usage")
    return ChatResponse(
        id=str(data.get("id") or new_id()),
        model=str(data.get("model") or model),
        choices=[
            Choice(
                message=message,
                finish_reason=_finish(data.get("stop_reason"), json_tool is not None) or "stop",
            )
        ],
        usage=_usage(usage if isinstance(usage, dict) else {}),
    )


# --- streaming --------------------------------------------------------------------------------


class _StreamState:
    """Turns Anthropic stream events into canonical chunks, one event at a time."""

    def __init__(self, *, provider: str, model: str, json_tool: str | None) -> None:
        self.provider = provider
        self.id = new_id()
        self.model = model
        self.json_tool = json_tool
        self.usage: dict[str, Any] = {}
        self.tools = ToolBlocks(json_tool)
        self.finished = False  # message_delta (with the stop reason) seen
        self.done = False  # message_stop seen

    def _chunk(
        self,
        delta: Delta,
        finish: FinishReason | None = None,
        usage: Usage | None = None,
    ) -> ChatChunk:
        return ChatChunk(
            id=self.id,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
            provider=self.provider,
        )

    def _update_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})

    def feed(self, kind: str, event: dict[str, Any]) -> list[ChatChunk]:
        if kind == "message_start":
            msg = event.get("message")
            msg = msg if isinstance(msg, dict) else {}
            self.id = str(msg.get("id") or self.id)
            self.model = str(msg.get("model") or self.model)
            self._update_usage(msg.get("usage"))
            return [self._chunk(Delta(role="assistant"))]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            delta = event.get("delta")
            self._update_usage(event.get("usage"))
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            self.finished = True
            finish = _finish(stop, self.json_tool is not None) or "stop"
            return [self._chunk(Delta(), finish, _usage(self.usage))]
        if kind == "message_stop":
            self.done = True
            if not self.finished:  # no message_delta: still report the end and the usage
                return [self._chunk(Delta(), "stop", _usage(self.usage))]
        return []  # ping, content_block_stop and event types newer than this adapter

    def _block_start(self, event: dict[str, Any]) -> list[ChatChunk]:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return []
        index = event.get("index")
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._chunk(Delta(content=str(block["text"])))]
        if kind != "tool_use" or not isinstance(index, int):
            return []
        delta = self.tools.start(index, block.get("id"), block.get("name"))
        return [] if delta is None else [self._chunk(delta)]

    def _block_delta(self, event: dict[str, Any]) -> list[ChatChunk]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return []
        index = event.get("index")
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk(Delta(content=str(delta["text"])))]
        if kind != "input_json_delta" or not delta.get("partial_json"):
            return []  # thinking, signature, citations; empty first fragments
        out = self.tools.fragment(index, str(delta["partial_json"]))
        return [] if out is None else [self._chunk(out)]
