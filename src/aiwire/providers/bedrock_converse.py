"""Bedrock's Converse wire format: canonical request → Converse body, Converse answer and
ConverseStream events → canonical response and chunks. No I/O here; :mod:`.bedrock` sends.

- ``system``/``developer`` messages become top-level ``system`` text blocks;
- assistant ``tool_calls`` become ``toolUse`` blocks (``arguments`` parsed to an object), and
  ``role: tool`` messages become ``toolResult`` blocks at the head of one user turn;
- consecutive turns of one role are merged (Bedrock wants user and assistant to alternate);
- images travel as bytes (base64 in JSON); a remote URL would have to be fetched, so it is
  refused by capability instead;
- ``response_format`` is emulated with one forced tool whose input is the answer text, as for
  Anthropic (most Bedrock models have no native JSON mode).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from aiwire.providers.tool_blocks import ToolBlocks
from aiwire.types import (
    ChatChunk,
    ChatRequest,
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

FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Stop reasons that mean the model produced a broken answer; another attempt may succeed.
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^;,]*)*;base64,", re.IGNORECASE)
_JSON_TOOL_DESCRIPTION = "Answer by calling this tool with the response JSON."


class Invalid(Exception):
    """A request that cannot be expressed in Converse; becomes a BadRequestError."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Converse:
    body: dict[str, Any]
    #: The forced tool emulating ``response_format``, if any: its input is the answer text.
    json_tool: str | None = None


# --- request ----------------------------------------------------------------------------------


def to_converse(request: ChatRequest) -> Converse:
    """The Converse (and ConverseStream) body for a canonical request."""
    system, messages = _messages(request.messages)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    config: dict[str, Any] = {}
    if request.output_limit is not None:
        config["maxTokens"] = request.output_limit
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop_list:
        config["stopSequences"] = request.stop_list
    if config:
        body["inferenceConfig"] = config
    json_tool = _json_tool(request)
    if json_tool is not None:
        name = json_tool["toolSpec"]["name"]
        body["toolConfig"] = {"tools": [json_tool], "toolChoice": {"tool": {"name": name}}}
        return Converse(body, name)
    tool_config = _tool_config(request, _uses_tools(messages))
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return Converse(body)


def _messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``system`` blocks and the alternating user/assistant turns."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role in ("system", "developer"):
            if any(isinstance(p, ImagePart) for p in m.parts):
                raise Invalid(
                    f"messages[{i}]: Bedrock's system prompt takes text only, not images",
                    f"messages[{i}].content",
                )
            if m.text:
                system.append({"text": m.text})
            continue
        if m.role == "tool":
            role, blocks = "user", [_tool_result(m, i)]
        elif m.role == "assistant":
            role, blocks = "assistant", _content(m, i) + _tool_uses(m, i)
        else:
            role, blocks = "user", _content(m, i)
        if not blocks:
            continue  # Bedrock rejects empty content; an empty turn carries nothing anyway
        if turns and turns[-1]["role"] == role:
            _merge(turns[-1]["content"], blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _merge(content: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Append ``blocks`` to a turn, keeping ``toolResult`` blocks ahead of the rest."""
    for block in blocks:
        if "toolResult" in block:
            at = sum(1 for b in content if "toolResult" in b)
            content.insert(at, block)
        else:
            content.append(block)


def _content(m: Message, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(m.parts):
        if isinstance(part, TextPart):
            if part.text:  # Bedrock rejects blank text blocks
                blocks.append({"text": part.text})
        else:
            blocks.append(_image(part.image_url.url, f"messages[{i}].content[{j}].image_url"))
    return blocks


def _image(url: str, where: str) -> dict[str, Any]:
    match = _DATA_URL.match(url)
    if match is None:
        raise Invalid(
            f"{where}: Bedrock takes images as bytes: send a data:<mime>;base64,<data> URL",
            where,
        )
    mime = match.group(1).lower()
    fmt = _IMAGE_FORMATS.get(mime)
    if fmt is None:
        raise Invalid(f"{where}: Bedrock accepts png, jpeg, gif and webp images, not {mime}", where)
    data = re.sub(r"\s+", "", url[match.end() :])
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _tool_uses(m: Message, i: int) -> list[dict[str, Any]]:
    blocks = []
    for k, call in enumerate(m.tool_calls or []):
        where = f"messages[{i}].tool_calls[{k}].function.arguments"
        raw = call.function.arguments.strip() or "{}"
        try:
            args = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Invalid(f"{where} is not valid JSON: {raw[:60]!r}", where) from None
        if not isinstance(args, dict):
            raise Invalid(f"{where} must be a JSON object, got {raw[:60]!r}", where)
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": args}}
        )
    return blocks


def _tool_result(m: Message, i: int) -> dict[str, Any]:
    if not m.tool_call_id:
        raise Invalid(
            f"messages[{i}] has role 'tool' but no tool_call_id", f"messages[{i}].tool_call_id"
        )
    content: list[dict[str, Any]] = []
    if isinstance(m.content, str):
        content = _result_text(m.content)
    else:
        for j, part in enumerate(m.parts):
            if isinstance(part, TextPart):
                content += _result_text(part.text)
            else:
                where = f"messages[{i}].content[{j}].image_url"
                content.append(_image(part.image_url.url, where))
    return {"toolResult": {"toolUseId": m.tool_call_id, "content": content, "status": "success"}}


def _result_text(text: str) -> list[dict[str, Any]]:
    """A tool's output: a JSON object travels as ``json`` (models read it structured), anything
    else as ``text``."""
    if not text:
        return []
    if text.lstrip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return [{"json": value}]
    return [{"text": text}]


def _uses_tools(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _tool_spec(
    name: str, description: str | None, schema: dict[str, Any] | None, strict: bool | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name}
    if description:
        spec["description"] = description
    spec["inputSchema"] = {"json": schema if schema is not None else {"type": "object"}}
    if strict:
        spec["strict"] = True
    return {"toolSpec": spec}


def _tool_config(request: ChatRequest, history_uses_tools: bool) -> dict[str, Any] | None:
    tc = request.tool_choice
    if tc == "none" or not request.tools:
        if history_uses_tools:
            # Bedrock refuses toolUse/toolResult blocks without a toolConfig, and a toolConfig
            # lets the model call tools: neither "no tools" nor "none" can be honoured.
            why = "`tool_choice: none`" if request.tools else "a request without `tools`"
            raise Invalid(
                f"the conversation holds tool calls or results, and Bedrock then requires the "
                f"tools to be offered, so {why} cannot be honoured; send the `tools` again "
                "(with tool_choice auto) or route to a provider without this rule",
                "tool_choice" if request.tools else "tools",
            )
        return None  # Converse has no "none": not offering the tools is the equivalent
    tools = [
        _tool_spec(
            t.function.name, t.function.description, t.function.parameters, t.function.strict
        )
        for t in request.tools
    ]
    config: dict[str, Any] = {"tools": tools}
    if isinstance(tc, NamedToolChoice):
        config["toolChoice"] = {"tool": {"name": tc.function.name}}
    elif tc == "required":
        config["toolChoice"] = {"any": {}}
    elif tc == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


def _json_tool(request: ChatRequest) -> dict[str, Any] | None:
    """The forced tool that emulates ``response_format`` json_object / json_schema."""
    rf = request.response_format
    if rf is None or rf.type == "text":
        return None
    if request.tools:
        raise Invalid(
            f"response_format {rf.type} is emulated on Bedrock with a forced tool, so it cannot "
            "be combined with `tools`; drop one of them",
            "response_format",
        )
    spec = rf.json_schema
    if rf.type == "json_schema" and spec is not None:
        schema = spec.schema_ or {"type": "object"}
        description = spec.description or _JSON_TOOL_DESCRIPTION
        return _tool_spec(spec.name, description, schema, spec.strict)
    return _tool_spec("response", _JSON_TOOL_DESCRIPTION, {"type": "object"}, None)


# --- response ---------------------------------------------------------------------------------


def usage_of(raw: Any) -> Usage | None:
    """Canonical usage from a ``TokenUsage``. Bedrock counts cache reads and writes apart from
    ``inputTokens`` (its ``totalTokens`` adds all four), so they are added back: OpenAI's
    ``prompt_tokens`` includes cached input."""
    if not isinstance(raw, dict):
        return None

    def n(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) else 0

    cached = n("cacheReadInputTokens")
    prompt = n("inputTokens") + cached + n("cacheWriteInputTokens")
    return Usage.of(prompt, n("outputTokens"), cached_input_tokens=cached)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def message_of(content: list[Any], json_tool: str | None) -> Message:
    """The assistant message for an ``output.message.content`` list. With ``json_tool`` set,
    that tool's input is the answer text rather than a tool call."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
            continue
        use = block.get("toolUse")
        if not isinstance(use, dict):
            continue  # reasoningContent, citations, images and blocks newer than this adapter
        if json_tool is not None and use.get("name") == json_tool:
            text.append(_json_text(use.get("input") or {}))
        else:
            calls.append(
                ToolCall(
                    id=str(use.get("toolUseId") or new_id("call_")),
                    function=FunctionCall(
                        name=str(use.get("name") or ""),
                        arguments=_json_text(use.get("input") or {}),
                    ),
                )
            )
    joined = "".join(text)
    return Message(
        role="assistant", content=joined if joined or not calls else None, tool_calls=calls or None
    )


# --- stream -----------------------------------------------------------------------------------

#: Maps a raw stopReason (and whether the answer is emulated JSON) to OpenAI's finish_reason;
#: raises for the "malformed" reasons.
FinishFn = Callable[[Any, bool], FinishReason]


class StreamState:
    """Turns ConverseStream events into canonical chunks, one event at a time.

    Complete at ``messageStop``; the ``metadata`` event that follows carries the usage, reported
    OpenAI-style on a closing chunk without choices.
    """

    def __init__(self, *, provider: str, model: str, json_tool: str | None, finish: FinishFn):
        self.provider = provider
        self.model = model
        self.json_tool = json_tool
        self.finish = finish
        self.id = new_id()
        self.started = False
        self.stopped = False  # messageStop seen: the answer is complete
        self.tools = ToolBlocks(json_tool)

    def _chunk(self, delta: Delta, finish: FinishReason | None = None) -> ChatChunk:
        if not self.started:  # the first chunk names the role, whatever event brought it
            self.started = True
            delta.role = "assistant"
        return ChatChunk(
            id=self.id,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            provider=self.provider,
        )

    def feed(self, event: str | None, payload: Mapping[str, Any]) -> list[ChatChunk]:
        if event == "messageStart":
            return [] if self.started else [self._chunk(Delta())]
        if event == "contentBlockStart":
            return self._block_start(payload)
        if event == "contentBlockDelta":
            return self._block_delta(payload)
        if event == "messageStop":
            self.stopped = True
            reason = self.finish(payload.get("stopReason"), self.json_tool is not None)
            return [self._chunk(Delta(), reason)]
        if event == "metadata":
            usage = usage_of(payload.get("usage"))
            if usage is None:
                return []
            return [ChatChunk(id=self.id, model=self.model, usage=usage, provider=self.provider)]
        return []  # contentBlockStop and event types newer than this adapter

    def _block_start(self, payload: Mapping[str, Any]) -> list[ChatChunk]:
        start = payload.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        index = payload.get("contentBlockIndex")
        if not isinstance(use, dict) or not isinstance(index, int):
            return []
        delta = self.tools.start(index, use.get("toolUseId"), use.get("name"))
        return [] if delta is None else [self._chunk(delta)]

    def _block_delta(self, payload: Mapping[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        index = payload.get("contentBlockIndex")
        if not isinstance(delta, dict):
            return []
        if isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk(Delta(content=delta["text"]))]
        use = delta.get("toolUse")
        fragment = use.get("input") if isinstance(use, dict) else None
        if not isinstance(fragment, str) or not fragment:
            return []  # reasoningContent, citations, empty fragments
        out = self.tools.fragment(index, fragment)
        return [] if out is None else [self._chunk(out)]
