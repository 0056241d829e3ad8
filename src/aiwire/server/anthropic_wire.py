"""The Anthropic Messages protocol as a client speaks it: request bytes → canonical, canonical →
``message`` JSON, SSE events and error bodies.

This is the mirror image of :mod:`aiwire.providers.anthropic` (which translates canonical ⇄
upstream Anthropic). Request translation (:func:`parse_messages`):

- top-level ``system`` (a string, or text blocks joined with a blank line) → one system message
  first;
- user ``text`` / ``image`` blocks → text / ``image_url`` parts (base64 sources become
  ``data:`` URLs); user ``tool_result`` blocks → one ``role: tool`` message each, placed before
  the rest of that user turn; their content (a string, or text blocks joined with newlines) is
  prefixed with ``"Error: "`` when ``is_error`` is true, since canonical tool messages have no
  error flag;
- assistant ``text`` blocks → content, ``tool_use`` blocks → ``tool_calls`` (input object →
  JSON-string arguments);
- ``tools`` → function tools, ``tool_choice`` auto/any/tool/none → auto/required/named/none
  (``disable_parallel_tool_use`` → ``parallel_tool_calls: false``), ``stop_sequences`` →
  ``stop``, ``metadata.user_id`` → ``user``; ``max_tokens`` is required, as Anthropic has it;
- refused by name (BadRequestError, ``unsupported_parameter``): ``top_k`` and ``thinking``
  (canonical requests have neither; ``thinking: {"type": "disabled"}`` is a no-op and accepted),
  server tools, ``document``/``thinking``/other block types, fields choosing the upstream, and
  every other unknown top-level field except the harmless hints in :data:`IGNORED_FIELDS`.

Responses render from plain dicts with ``orjson.dumps``; no pydantic serialisation.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from aiwire import errors
from aiwire.server import sse
from aiwire.server.openai_wire import (
    invalid_request,
    load_object,
    refuse_upstream_fields,
    retry_headers,
    status_of,
)
from aiwire.types import ChatChunk, ChatRequest, ChatResponse, ToolCallDelta, Usage, new_id

#: Top-level request fields that are translated.
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
    }
)
#: Accepted and ignored: hints that do not change what the model is asked (capacity tier,
#: prompt-caching breakpoints). ``cache_control`` on blocks and tools is ignored likewise.
IGNORED_FIELDS = frozenset({"service_tier", "cache_control"})

_REFUSED = {
    "top_k": "'top_k' is not supported by this gateway (requests may be served by providers "
    "without it); remove it.",
    "thinking": "Extended thinking ('thinking') is not supported by this gateway; remove it.",
}

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_INTERNAL_MESSAGE = "The server had an error while processing your request."


# --- requests ---------------------------------------------------------------------------------


def _invalid(message: str, param: str, code: str | None = None) -> errors.BadRequestError:
    return errors.BadRequestError(f"{param}: {message}", param=param, code=code)


def _unsupported(param: str, message: str | None = None) -> errors.BadRequestError:
    return _invalid(message or "unsupported field; remove it.", param, code="unsupported_parameter")


def _str(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    raise _invalid("Field required" if value is None else "Input should be a string", param)


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise _invalid("Input should be a number", key)


def parse_messages(body: bytes) -> ChatRequest:
    """An Anthropic ``POST /v1/messages`` body as a canonical request (see the module doc)."""
    data = load_object(body)
    refuse_upstream_fields(data)
    for key in data:
        if key in KNOWN_FIELDS or key in IGNORED_FIELDS:
            continue
        if key == "thinking" and _thinking_disabled(data[key]):
            continue
        raise _unsupported(key, _REFUSED.get(key))

    model = _str(data.get("model"), "model")
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        raise _invalid("Field required", "max_tokens", "missing_required_parameter")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("Input should be a positive integer", "max_tokens")

    messages: list[dict[str, Any]] = []
    system = _system(data.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    turns = data.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _invalid(
            "Field required" if turns is None else "Input should be a non-empty array",
            "messages",
        )
    for i, turn in enumerate(turns):
        _turn(turn, i, messages)

    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for key in ("temperature", "top_p"):
        value = _number(data, key)
        if value is not None:
            out[key] = value
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _invalid("Input should be an array of strings", "stop_sequences")
        if stops:
            out["stop"] = stops
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("Input should be a boolean", "stream")
    if stream:
        out["stream"] = True
        # A client's Anthropic stream always ends with usage: make sure the upstream sends it.
        out["stream_options"] = {"include_usage": True}
    user = _metadata(data.get("metadata"))
    if user is not None:
        out["user"] = user
    tools = data.get("tools")
    if tools is not None:
        out["tools"] = _tools(tools)
    if data.get("tool_choice") is not None:
        _tool_choice(data["tool_choice"], out)
    try:
        return ChatRequest.model_validate(out)
    except ValidationError as exc:  # the checks above should make this unreachable
        raise invalid_request(exc, out) from None


def _thinking_disabled(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "disabled"


def _system(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise _invalid("Input should be a string or an array of text blocks", "system")
    texts = []
    for j, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid("system blocks must be text blocks", _fmt("system", j, "type"))
        texts.append(_text(block.get("text"), ("system", j), "text"))
    return "\n\n".join(t for t in texts if t)


def _metadata(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("Input should be an object", "metadata")
    for key in value:
        if key != "user_id":
            raise _unsupported(f"metadata.{key}")
    user = value.get("user_id")
    if user is None or isinstance(user, str):
        return user
    raise _invalid("Input should be a string", "metadata.user_id")


# Paths into the request (``messages[2].content[0].text``) are tuples, formatted only when an
# error names one: building the strings eagerly costs more than the rest of the walk.
Path = tuple[str | int, ...]


def _fmt(*parts: str | int) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if k else p) for k, p in enumerate(parts)
    )


def _text(value: Any, at: Path, field: str) -> str:
    if isinstance(value, str):
        return value
    raise _invalid(
        "Field required" if value is None else "Input should be a string", _fmt(*at, field)
    )


def _turn(turn: Any, i: int, out: list[dict[str, Any]]) -> None:
    if not isinstance(turn, dict):
        raise _invalid("Input should be an object", _fmt("messages", i))
    role = turn.get("role")
    content = turn.get("content")
    if role != "user" and role != "assistant":
        raise _invalid(
            f"Input should be 'user' or 'assistant', got {role!r}", _fmt("messages", i, "role")
        )
    if isinstance(content, str):
        out.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise _invalid(
            "Input should be a string or an array of blocks", _fmt("messages", i, "content")
        )
    if role == "user":
        _user_blocks(content, i, out)
    else:
        _assistant_blocks(content, i, out)


def _block_type(block: Any, at: Path) -> str:
    if not isinstance(block, dict):
        raise _invalid("Input should be an object", _fmt(*at))
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _invalid("Field required", _fmt(*at, "type"))
    return kind


def _user_blocks(blocks: list[Any], i: int, out: list[dict[str, Any]]) -> None:
    parts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = ("messages", i, "content", j)
        kind = _block_type(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block.get("text"), at, "text")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        elif kind == "tool_result":
            results.append(_tool_result(block, at))
        else:
            raise _unsupported(
                _fmt(*at, "type"), f"content blocks of type {kind!r} are not supported"
            )
    out.extend(results)  # tool results answer the previous turn: they come first
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})
    elif not results:
        raise _invalid(
            "a user turn needs at least one content block", _fmt("messages", i, "content")
        )


def _image_url(block: dict[str, Any], at: Path) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid("Field required", _fmt(*at, "source"))
    kind = source.get("type")
    src = (*at, "source")
    if kind == "base64":
        media_type = _text(source.get("media_type"), src, "media_type")
        return f"data:{media_type};base64,{_text(source.get('data'), src, 'data')}"
    if kind == "url":
        url = _text(source.get("url"), src, "url")
        if not url.startswith(("https://", "http://")):
            raise _invalid("image URLs must be http(s) URLs", _fmt(*src, "url"))
        return url
    raise _unsupported(_fmt(*src, "type"), f"image sources of type {kind!r} are not supported")


def _tool_result(block: dict[str, Any], at: Path) -> dict[str, Any]:
    call_id = _text(block.get("tool_use_id"), at, "tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            pat = (*at, "content", k)
            if _block_type(part, pat) != "text":
                raise _unsupported(
                    _fmt(*pat, "type"), "tool results may contain text blocks only on this gateway"
                )
            texts.append(_text(part.get("text"), pat, "text"))
        text = "\n".join(texts)
    else:
        raise _invalid("Input should be a string or an array of blocks", _fmt(*at, "content"))
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise _invalid("Input should be a boolean", _fmt(*at, "is_error"))
    if is_error:
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant_blocks(blocks: list[Any], i: int, out: list[dict[str, Any]]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = ("messages", i, "content", j)
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_text(block.get("text"), at, "text"))
        elif kind == "tool_use":
            args = block.get("input", {})
            if not isinstance(args, dict):
                raise _invalid("Input should be an object", _fmt(*at, "input"))
            calls.append(
                {
                    "id": _text(block.get("id"), at, "id"),
                    "type": "function",
                    "function": {
                        "name": _text(block.get("name"), at, "name"),
                        "arguments": orjson.dumps(args).decode(),
                    },
                }
            )
        else:
            raise _unsupported(
                _fmt(*at, "type"), f"content blocks of type {kind!r} are not supported"
            )
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _invalid("Input should be an array", "tools")
    out = []
    for i, tool in enumerate(tools):
        at = ("tools", i)
        if not isinstance(tool, dict):
            raise _invalid("Input should be an object", _fmt(*at))
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            raise _unsupported(_fmt(*at, "type"), f"server tools ({kind!r}) are not supported")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(
                "Field required" if schema is None else "Input should be an object",
                _fmt(*at, "input_schema"),
            )
        fn: dict[str, Any] = {"name": _text(tool.get("name"), at, "name"), "parameters": schema}
        description = tool.get("description")
        if description is not None:
            fn["description"] = _text(description, at, "description")
        if tool.get("strict") is True:
            fn["strict"] = True
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _invalid("Input should be an object", "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = _str(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _invalid(
            f"Input should be 'auto', 'any', 'tool' or 'none', got {kind!r}", "tool_choice.type"
        )
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


# --- responses --------------------------------------------------------------------------------


def message_id(canonical_id: str) -> str:
    return canonical_id if canonical_id.startswith("msg_") else "msg_" + canonical_id


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as Anthropic's ``input`` object. Arguments that are
    not a JSON object come back as ``{"_raw": "<the string>"}`` rather than failing the answer."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def usage_dict(usage: Usage | None) -> dict[str, int]:
    """Anthropic usage: ``input_tokens`` excludes cached input (OpenAI's includes it)."""
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    cached = usage.cached_input_tokens
    return {
        "input_tokens": max(usage.prompt_tokens - cached, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_dict(resp: ChatResponse, requested_model: str) -> dict[str, Any]:
    """The Anthropic ``message`` object as plain data (see :func:`render_message`)."""
    content: list[dict[str, Any]] = []
    finish = None
    if resp.choices:
        choice = resp.choices[0]
        finish = choice.finish_reason
        m = choice.message
        text = m.text or m.refusal or ""
        if text:
            content.append({"type": "text", "text": text})
        for call in m.tool_calls or ():
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.function.name,
                    "input": tool_input(call.function.arguments),
                }
            )
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": _STOP.get(finish, "end_turn") if finish else "end_turn",
        "stop_sequence": None,
        "usage": usage_dict(resp.usage),
    }


def render_message(resp: ChatResponse, requested_model: str) -> bytes:
    """Anthropic's ``message`` JSON for a canonical response (first choice only).

    ``model`` is what the client asked for; a refusal with no text becomes the text block;
    ``stop_reason``: stop → end_turn, length → max_tokens, tool_calls → tool_use,
    content_filter → refusal. Tool-call arguments that are not a JSON object become
    ``{"_raw": "<string>"}``. Call ids are kept as they are.
    """
    return orjson.dumps(message_dict(resp, requested_model))


# --- streaming --------------------------------------------------------------------------------

_MESSAGE_STOP = sse.event(b"message_stop", b'{"type":"message_stop"}')


def _complete_json(fragments: list[str]) -> bool:
    try:
        orjson.loads("".join(fragments))
    except orjson.JSONDecodeError:
        return False
    return True


class _PendingTool:
    __slots__ = ("args", "id", "name")

    def __init__(self, call_id: str, name: str, args: list[str]) -> None:
        self.id, self.name, self.args = call_id, name, args


class AnthropicStreamRenderer:
    """Canonical chunks → Anthropic's named SSE events, in the order Anthropic sends them:
    ``message_start``; per content block ``content_block_start``, deltas, ``content_block_stop``;
    then (from :meth:`finish`) ``message_delta`` and ``message_stop``.

    Only choice 0 is rendered (Anthropic has one). Text opens a text block (closing an open tool
    block); a new tool-call ``index`` closes the open block and opens a ``tool_use`` block whose
    argument fragments become ``input_json_delta``s. Anthropic blocks cannot interleave, but
    canonical tool-call fragments may (they are keyed by index): when a new index starts while the
    open call's arguments are not yet a complete JSON value, the new call is held back and
    sent as one block (start, one delta, stop) once the open call completes, or at the end.

    The stop reason and usage are held until :meth:`finish`, since usage may arrive on the finish
    chunk or after it.
    """

    __slots__ = (
        "_args",
        "_blocks",
        "_id",
        "_next",
        "_open",
        "_open_text",
        "_open_tool",
        "_pending",
        "_text_head",
        "model",
        "started",
        "stop_reason",
        "usage",
    )

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.started = False
        self.stop_reason: str | None = None
        self.usage: Usage | None = None
        self._id = ""
        self._next = 0  # the index of the next content block
        self._open: int | None = None  # the index of the open block
        self._open_text = False
        self._open_tool: int | None = None  # the canonical tool-call index of the open block
        self._args: list[str] = []  # the open tool call's argument fragments so far
        self._blocks: dict[int, int] = {}  # canonical tool-call index → block index
        self._pending: dict[int, _PendingTool] = {}  # interleaved calls held back
        self._text_head = b""  # the bytes before a text fragment in the open text block

    def start(self, chunk: ChatChunk | None = None) -> bytes:
        """``message_start`` (sent by the first :meth:`render` if not called before)."""
        self.started = True
        self._id = message_id(chunk.id if chunk is not None else new_id("msg_"))
        if chunk is not None and chunk.usage is not None:
            self.usage = chunk.usage
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_dict(self.usage),
        }
        return sse.event(
            b"message_start", orjson.dumps({"type": "message_start", "message": message})
        )

    def render(self, chunk: ChatChunk) -> bytes:
        """The events for one canonical chunk (``b""`` when it carries nothing to send yet)."""
        choices = chunk.choices
        if self._open_text and len(choices) == 1 and chunk.usage is None:
            c = choices[0]  # fast path: more text for the open text block
            d = c.delta
            text = d.content
            if text and c.index == 0 and c.finish_reason is None and d.tool_calls is None:
                return self._text_head + orjson.dumps(text) + b"}}\n\n"
        out = self.start(chunk) if not self.started else b""
        if chunk.usage is not None:
            self.usage = chunk.usage
        for c in choices:
            if c.index != 0:
                continue
            d = c.delta
            text = d.content or d.refusal
            if text:
                if not self._open_text:
                    out += self._close()
                    out += self._begin({"type": "text", "text": ""})
                    self._open_text = True
                    self._text_head = (
                        b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                        b'"index":%d,"delta":{"type":"text_delta","text":' % (self._next - 1)
                    )
                out += self._text_head + orjson.dumps(text) + b"}}\n\n"
            if d.tool_calls:
                for tc in d.tool_calls:
                    out += self._tool(tc)
            if c.finish_reason is not None:
                self.stop_reason = _STOP.get(c.finish_reason, "end_turn")
        return out

    def _begin(self, block: dict[str, Any]) -> bytes:
        index = self._open = self._next
        self._next += 1
        return sse.event(
            b"content_block_start",
            orjson.dumps({"type": "content_block_start", "index": index, "content_block": block}),
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_text, self._open_tool = self._open, None, False, None
        return sse.event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index)

    def _json_delta(self, block: int, fragment: str) -> bytes:
        return sse.event(
            b"content_block_delta",
            orjson.dumps(
                {
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }
            ),
        )

    def _open_tool_block(self, index: int, call_id: str, name: str, args: list[str]) -> bytes:
        out = self._close()
        out += self._begin({"type": "tool_use", "id": call_id, "name": name, "input": {}})
        self._blocks[index] = self._next - 1
        self._open_tool = index
        self._args = args
        if args:
            out += self._json_delta(self._next - 1, "".join(args))
        return out

    def _tool(self, tc: ToolCallDelta) -> bytes:
        fn = tc.function
        fragment = fn.arguments if fn is not None else None
        index = tc.index
        if index == self._open_tool:
            if not fragment:
                return b""
            self._args.append(fragment)
            out = self._json_delta(self._blocks[index], fragment)
            if self._pending and _complete_json(self._args):
                out += self._promote()
            return out
        pending = self._pending.get(index)
        if pending is not None:
            if fragment:
                pending.args.append(fragment)
            return b""
        block = self._blocks.get(index)
        if block is not None:  # a closed call's late fragment: its JSON was already complete
            return self._json_delta(block, fragment) if fragment else b""
        call_id = tc.id or new_id("toolu_")
        name = (fn.name if fn is not None else None) or ""
        args = [fragment] if fragment else []
        if self._open_tool is not None and not _complete_json(self._args):
            self._pending[index] = _PendingTool(call_id, name, args)
            return b""
        return self._open_tool_block(index, call_id, name, args)

    def _promote(self) -> bytes:
        """The open call is complete: close it and open the first held-back call."""
        index = next(iter(self._pending))
        call = self._pending.pop(index)
        return self._open_tool_block(index, call.id, call.name, call.args)

    def finish(self) -> bytes:
        """The end of a complete stream: close the open block, send held-back tool calls, then
        ``message_delta`` (stop reason, cumulative usage) and ``message_stop``."""
        out = b"" if self.started else self.start()
        while self._pending:
            out += self._promote()
        out += self._close()
        usage = usage_dict(self.usage)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
            "usage": {
                "output_tokens": usage["output_tokens"],
                "input_tokens": usage["input_tokens"],
                "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                "cache_read_input_tokens": usage["cache_read_input_tokens"],
            },
        }
        return out + sse.event(b"message_delta", orjson.dumps(delta)) + _MESSAGE_STOP

    def error(self, exc: BaseException) -> bytes:
        """A mid-stream ``error`` event (the SDK raises on it). Nothing is sent after it."""
        return sse.event(b"error", orjson.dumps(error_dict(exc)))


# --- errors -----------------------------------------------------------------------------------


def error_type(exc: errors.AIWireError, status: int) -> str:
    """Anthropic's ``error.type`` for an aiwire error answered with ``status``."""
    if isinstance(exc, errors.BadRequestError):
        return "request_too_large" if status == 413 else "invalid_request_error"
    if isinstance(exc, errors.AuthenticationError):
        return "authentication_error"
    if isinstance(exc, errors.PermissionDeniedError):
        return "billing_error" if status == 402 else "permission_error"
    if isinstance(exc, errors.NotFoundError):
        return "not_found_error"
    if isinstance(exc, errors.RateLimitError):
        return "rate_limit_error"
    if isinstance(exc, errors.OverloadedError):
        return "overloaded_error"
    if isinstance(exc, errors.TimeoutError):
        return "timeout_error"
    return "api_error" if status >= 500 else "invalid_request_error"


#: Error codes the gateway itself gives (not a provider's), added to Anthropic-shaped bodies.
GATEWAY_CODES = frozenset(
    {"budget_exceeded", "rate_limit_exceeded", "pii_detected", "content_policy"}
)


def error_dict(exc: BaseException) -> dict[str, Any]:
    """``{"type": "error", "error": {type, message}}`` (plus ``request_id`` when known) for any
    exception; non-aiwire exceptions get a generic message, never their text."""
    if not isinstance(exc, errors.AIWireError):
        return {"type": "error", "error": {"type": "api_error", "message": _INTERNAL_MESSAGE}}
    error: dict[str, Any] = {
        "type": error_type(exc, status_of(exc, overloaded=529)),
        "message": exc.message,
    }
    if exc.code in GATEWAY_CODES:  # aiwire's own refusals say which (Anthropic has no field)
        error["code"] = exc.code
    out: dict[str, Any] = {"type": "error", "error": error}
    if exc.request_id:
        out["request_id"] = exc.request_id
    return out


def error_body(exc: errors.AIWireError) -> tuple[int, bytes, dict[str, str]]:
    """Status, Anthropic error body and headers (``retry-after``/``retry-after-ms``,
    ``x-should-retry``, ``request-id`` when known). Overload is 529, timeouts 504, network
    failures 502."""
    status = status_of(exc, overloaded=529)
    headers = retry_headers(exc, status)
    if exc.request_id:
        headers["request-id"] = exc.request_id
    return status, orjson.dumps(error_dict(exc)), headers


def internal_error_body(request_id: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """A 500 ``api_error`` for an unexpected exception: a generic message only."""
    headers = {"request-id": request_id} if request_id else {}
    return 500, orjson.dumps(error_dict(Exception())), headers


__all__ = [
    "IGNORED_FIELDS",
    "KNOWN_FIELDS",
    "AnthropicStreamRenderer",
    "error_body",
    "error_dict",
    "error_type",
    "internal_error_body",
    "message_dict",
    "message_id",
    "parse_messages",
    "render_message",
    "tool_input",
    "usage_dict",
]
