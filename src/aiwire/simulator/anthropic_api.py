"""Anthropic Messages API (reference §2): /v1/messages, /v1/messages/count_tokens, /v1/models."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator.engine import Generation, GenerationRequest, Tool, generate
from aiwire.simulator.errors import anthropic_error, auth_error
from aiwire.simulator.gate import Admitted, admit, stream
from aiwire.simulator.wire import (
    BadRequestBody,
    Piece,
    json_response,
    new_id,
    read_json,
    split_json,
    split_text,
    sse,
)

MODELS = [
    ("claude-opus-4-1", "Claude Opus 4.1"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-3-5-haiku-latest", "Claude Haiku 3.5"),
]
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_BLOCKS = {
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
}


class RequestError(ValueError):
    pass


def _headers() -> dict[str, str]:
    return {"request-id": new_id("req_011", 21), "anthropic-organization-id": "sim-org"}


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return None


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def parse_messages(body: dict[str, Any], *, need_max_tokens: bool) -> GenerationRequest:
    for field in ("model", "messages", *(("max_tokens",) if need_max_tokens else ())):
        if field not in body:
            raise RequestError(f"{field}: Field required")
    req = GenerationRequest()
    if need_max_tokens:
        mt = body["max_tokens"]
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise RequestError("max_tokens: Input should be greater than or equal to 1")
        req.max_tokens = mt
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        raise RequestError("temperature: range: 0..1")
    system = body.get("system")
    if isinstance(system, list):
        req.system = _block_text(system)
    elif isinstance(system, str):
        req.system = system
    elif system is not None:
        raise RequestError("system: Input should be a valid string or a list of text blocks")
    _parse_turns(body["messages"], req)
    _parse_tools(body, req)
    stops = body.get("stop_sequences")
    if isinstance(stops, list):
        req.stop = [s for s in stops if isinstance(s, str)]
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        req.output_schema = fmt.get("schema") or {"type": "object"}
    return req


def _parse_turns(messages: Any, req: GenerationRequest) -> None:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: at least one message is required")
    open_ids: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise RequestError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise RequestError(f"messages.{i}.content: Input should be a valid list")
        results: list[str] = []
        uses: list[str] = []
        texts: list[str] = []
        seen_other = False
        for j, block in enumerate(blocks):
            btype = block.get("type") if isinstance(block, dict) else None
            if btype not in _BLOCKS:
                raise RequestError(
                    f"messages.{i}.content.{j}: Input tag '{btype}' found using "
                    "'type' does not match any of the expected tags"
                )
            assert isinstance(block, dict)
            if btype == "text":
                texts.append(str(block.get("text", "")))
            elif btype == "image":
                req.images += 1
            elif btype == "tool_use":
                if msg["role"] != "assistant":
                    raise RequestError(
                        f"messages.{i}.content.{j}: tool_use blocks are only "
                        "allowed in assistant messages"
                    )
                uses.append(str(block.get("id")))
                texts.append(
                    orjson.dumps({"name": block.get("name"), "input": block.get("input")}).decode()
                )
            elif btype == "tool_result":
                tid = str(block.get("tool_use_id"))
                if tid not in open_ids:
                    raise RequestError(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {tid}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message."
                    )
                if seen_other:
                    raise RequestError(
                        f"messages.{i}: `tool_result` blocks must come first in the content "
                        "of the user message that follows the `tool_use` blocks."
                    )
                results.append(_block_text(block.get("content")))
            if btype != "tool_result":
                seen_other = True
        missing = [u for u in open_ids if msg["role"] == "user" and u not in _result_ids(blocks)]
        if open_ids and (msg["role"] != "user" or missing):
            ids = ", ".join(missing or open_ids)
            raise RequestError(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {ids}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        open_ids = uses
        text = "\n".join(texts + results)
        req.turns.append(text)
        if msg["role"] == "user":
            plain = "\n".join(texts)
            if plain.strip():
                req.last_user_text = plain
            req.tool_results = results if results else None
        else:
            req.tool_results = None


def _result_ids(blocks: list[Any]) -> set[str]:
    return {
        str(b.get("tool_use_id"))
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "tool_result"
    }


def _parse_tools(body: dict[str, Any], req: GenerationRequest) -> None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not tool.get("name"):
                raise RequestError(f"tools.{i}.name: Field required")
            if tool.get("type") not in (None, "custom"):
                continue  # server tools (web search, …) are accepted and never called
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise RequestError(f"tools.{i}.custom.input_schema: Field required")
            req.tools.append(Tool(str(tool["name"]), str(tool.get("description") or ""), schema))
    if choice is None:
        return
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype not in ("auto", "any", "tool", "none"):
        raise RequestError(
            "tool_choice: Input tag does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'"
        )
    assert isinstance(choice, dict)
    if ctype in ("any", "tool") and not req.tools:
        raise RequestError("tool_choice: tool_choice requires tools to be specified")
    if ctype == "tool":
        name = choice.get("name")
        if name not in [t.name for t in req.tools]:
            raise RequestError(f"tool_choice.name: tool '{name}' not found in tools")
        req.tool_mode = f"named:{name}"
    else:
        req.tool_mode = {"auto": "auto", "any": "required", "none": "none"}[ctype]
    if choice.get("disable_parallel_tool_use"):
        req.parallel_tools = False


def _usage(gen: Generation, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": gen.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": gen.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _stop(gen: Generation) -> tuple[str, str | None]:
    if gen.stop_sequence is not None:
        return "stop_sequence", gen.stop_sequence
    return _STOP[gen.finish], None


def _content(gen: Generation) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if gen.text or not gen.tool_calls:
        blocks.append({"type": "text", "text": gen.text})
    for i, call in enumerate(gen.tool_calls):
        blocks.append(
            {
                "type": "tool_use",
                "id": gen.call_id("toolu_01", i),
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def _message(
    model: str, gen: Generation, content: list[dict[str, Any]] | None = None, done: bool = True
) -> dict[str, Any]:
    reason, seq = _stop(gen) if done else (None, None)
    return {
        "id": new_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(gen) if content is None else content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": _usage(gen) if done else _usage(gen, output_tokens=1),
    }


def _stream_pieces(model: str, gen: Generation) -> list[Piece]:
    def ev(name: str, data: dict[str, Any], content: bool = False, text: str = "") -> Piece:
        return Piece(sse({"type": name, **data}, name), content, text)

    pieces = [
        ev("message_start", {"message": _message(model, gen, [], done=False)}),
        ev("ping", {}),
    ]
    for index, block in enumerate(_content(gen)):
        if block["type"] == "text":
            pieces.append(
                ev(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            for text in split_text(block["text"]):
                pieces.append(
                    ev(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "text_delta", "text": text}},
                        True,
                        text,
                    )
                )
        else:
            start = {**block, "input": {}}
            pieces.append(ev("content_block_start", {"index": index, "content_block": start}, True))
            for frag in ["", *split_json(orjson.dumps(block["input"]).decode())]:
                pieces.append(
                    ev(
                        "content_block_delta",
                        {
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": frag},
                        },
                        True,
                        frag,
                    )
                )
        pieces.append(ev("content_block_stop", {"index": index}))
    reason, seq = _stop(gen)
    pieces.append(
        ev(
            "message_delta",
            {
                "delta": {"stop_reason": reason, "stop_sequence": seq},
                "usage": {"output_tokens": gen.output_tokens},
            },
        )
    )
    pieces.append(ev("message_stop", {}))
    return pieces


async def _preflight(request: Request, headers: dict[str, str]) -> Response | str:
    key = _api_key(request)
    if key is None:
        return auth_error("anthropic", headers, missing=True)
    if not request.headers.get("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required", headers=headers)
    return key


async def messages(request: Request) -> Response:
    headers = _headers()
    key = await _preflight(request, headers)
    if isinstance(key, Response):
        return key
    try:
        body = await read_json(request)
        req = parse_messages(body, need_max_tokens=True)
    except (BadRequestBody, RequestError) as exc:
        return anthropic_error(400, str(exc), headers=headers)
    model = str(body["model"])
    gen = generate(req)
    is_stream = bool(body.get("stream"))
    admitted = await admit(
        request,
        "anthropic",
        model,
        api_key=key,
        estimate=gen.input_tokens + max(req.max_tokens or 0, gen.output_tokens),
        actual=gen.total_tokens,
        headers=headers,
        stream=is_stream,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    if not is_stream:
        return json_response(_message(model, gen), headers=admitted.headers)
    return stream(
        request,
        admitted,
        _stream_pieces(model, gen),
        malformed=b"event: content_block_delta\ndata: {not json\n\n",
    )


async def count_tokens(request: Request) -> Response:
    headers = _headers()
    key = await _preflight(request, headers)
    if isinstance(key, Response):
        return key
    if key.startswith("expired"):
        return auth_error("anthropic", headers)
    try:
        body = await read_json(request)
        req = parse_messages(body, need_max_tokens=False)
    except (BadRequestBody, RequestError) as exc:
        return anthropic_error(400, str(exc), headers=headers)
    return json_response({"input_tokens": generate(req).input_tokens}, headers=headers)


def _model_object(model_id: str, name: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "type": "model",
        "display_name": name,
        "created_at": "2025-09-29T00:00:00Z",
    }


async def list_models(request: Request) -> Response:
    headers = _headers()
    key = await _preflight(request, headers)
    if isinstance(key, Response):
        return key
    data = [_model_object(i, n) for i, n in MODELS]
    return json_response(
        {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
        headers=headers,
    )


async def retrieve_model(request: Request, model: str) -> Response:
    headers = _headers()
    key = await _preflight(request, headers)
    if isinstance(key, Response):
        return key
    for model_id, name in MODELS:
        if model_id == model:
            return json_response(_model_object(model_id, name), headers=headers)
    return anthropic_error(404, f"model: {model}", "not_found_error", headers)


def anthropic_not_found(request: Request) -> Response:
    return anthropic_error(
        404, f"Not found: {request.method} {request.url.path}", "not_found_error", _headers()
    )
