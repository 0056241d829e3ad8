"""OpenAI Chat Completions, Embeddings and Models (reference §1), plus the Azure OpenAI
deployment routes (§4)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator.embeddings import embed, to_base64
from aiwire.simulator.engine import Generation, GenerationRequest, Tool, count_tokens, generate
from aiwire.simulator.errors import Protocol, auth_error, invalid_request, openai_error
from aiwire.simulator.gate import Admitted, admit, state_of, stream
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
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
]
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_CONTENT_FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


class RequestError(ValueError):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def _headers(protocol: Protocol) -> dict[str, str]:
    rid = new_id("req_", 32)
    out = {"x-request-id": rid, "openai-processing-ms": "7", "openai-version": "2020-10-01"}
    if protocol == "azure":
        out["apim-request-id"] = rid
        out["x-ms-region"] = "Simulated Region"
    else:
        out["openai-organization"] = "org-simulator"
    return out


def _api_key(request: Request, protocol: Protocol) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    if protocol == "azure":
        return request.headers.get("api-key") or None
    return None


# --- request parsing ------------------------------------------------------------------------


def _content_text(content: Any, where: str) -> tuple[str, int]:
    """Plain text of a message's content and the number of images in it."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise RequestError(
            f"Invalid type for '{where}.content': expected a string or an array.",
            f"{where}.content",
        )
    texts: list[str] = []
    images = 0
    for j, part in enumerate(content):
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype == "text" or ptype == "refusal":
            texts.append(str(part.get(ptype) or ""))
        elif ptype == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
                raise RequestError(
                    "Invalid image URL: expected an https URL or a data URL.",
                    f"{where}.content[{j}].image_url.url",
                )
            images += 1
        elif ptype in ("input_audio", "file"):
            texts.append(f"[{ptype}]")
        else:
            raise RequestError(
                f"Invalid value: '{ptype}'. Supported values are: 'text', "
                "'image_url', 'input_audio', 'refusal', and 'file'.",
                f"{where}.content[{j}].type",
            )
    return "\n".join(texts), images


def _messages(body: dict[str, Any], req: GenerationRequest) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestError("Missing required parameter: 'messages'.", "messages")
    if not messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            "messages",
        )
    system: list[str] = []
    pending: set[str] = set()
    answerable: set[str] = set()
    prev_role = ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise RequestError(f"Invalid type for '{where}': expected an object.", where)
        role = msg.get("role")
        if role not in _ROLES:
            raise RequestError(
                f"Invalid value: '{role}'. Supported values are: 'system', "
                "'assistant', 'user', 'function', 'tool', and 'developer'.",
                f"{where}.role",
            )
        if pending and role != "tool":
            raise RequestError(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}",
                f"messages.[{i}].role",
            )
        text, images = _content_text(msg.get("content"), where)
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            req.turns.append(text)
            req.images += images
            if text.strip():
                req.last_user_text = text
        elif role == "assistant":
            calls = msg.get("tool_calls") or []
            ids = [c.get("id") for c in calls if isinstance(c, dict)]
            answerable = {i for i in ids if isinstance(i, str)}
            pending = set(answerable)
            req.turns.append(text + "".join(orjson.dumps(c).decode() for c in calls))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if prev_role not in ("assistant", "tool") or call_id not in answerable:
                raise RequestError(
                    "Invalid parameter: messages with role 'tool' must be a "
                    "response to a preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.discard(str(call_id))
            req.turns.append(text)
        else:
            req.turns.append(text)
        prev_role = str(role)
    if pending:
        raise RequestError(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(sorted(pending))}",
            "messages",
        )
    req.system = "\n".join(system)
    trailing: list[str] = []
    for msg in reversed(messages):
        if msg.get("role") != "tool":
            break
        trailing.insert(0, _content_text(msg.get("content"), "messages")[0])
    if trailing:
        req.tool_results = trailing


def _tools(body: dict[str, Any], req: GenerationRequest) -> None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice is not None and choice != "none":
            raise RequestError(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed "
                "when 'tools' are specified.",
                "tool_choice",
            )
        return
    if not isinstance(tools, list):
        raise RequestError("Invalid type for 'tools': expected an array.", "tools")
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        spec = tool.get(kind) if isinstance(tool, dict) and isinstance(kind, str) else None
        if kind not in ("function", "custom") or not isinstance(spec, dict):
            raise RequestError(
                f"Missing required parameter: 'tools[{i}].function'.",
                f"tools[{i}].function",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(
                f"Missing required parameter: 'tools[{i}].{kind}.name'.", f"tools[{i}].{kind}.name"
            )
        params = spec.get("parameters") if kind == "function" else None
        req.tools.append(Tool(name, str(spec.get("description") or ""), params or {}))
    if choice in (None, "auto"):
        req.tool_mode = "auto"
    elif choice in ("none", "required"):
        req.tool_mode = str(choice)
    elif isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = (choice.get(choice["type"]) or {}).get("name")
        if name not in [t.name for t in req.tools]:
            raise RequestError(
                f"Invalid value for 'tool_choice': tool '{name}' is not among the tools provided.",
                "tool_choice",
            )
        req.tool_mode = f"named:{name}"
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or []}
        req.tools = [t for t in req.tools if t.name in names]
        req.tool_mode = "required" if allowed.get("mode") == "required" else "auto"
    else:
        raise RequestError("Invalid value for 'tool_choice'.", "tool_choice")
    if body.get("parallel_tool_calls") is False:
        req.parallel_tools = False


def _options(body: dict[str, Any], req: GenerationRequest) -> None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name"):
                raise RequestError(
                    "Missing required parameter: 'response_format.json_schema.name'.",
                    "response_format.json_schema.name",
                )
            schema = spec.get("schema")
            req.output_schema = schema if isinstance(schema, dict) else {"type": "object"}
        elif fmt.get("type") == "json_object":
            everything = req.system + " ".join(req.turns)
            if "json" not in everything.lower():
                raise RequestError(
                    "'messages' must contain the word 'json' in some form, to use "
                    "'response_format' of type 'json_object'.",
                    "messages",
                )
            req.json_mode = True
        elif fmt.get("type") != "text":
            raise RequestError(
                f"Invalid value: '{fmt.get('type')}'. Supported values are: "
                "'json_object', 'json_schema', and 'text'.",
                "response_format.type",
            )
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RequestError(
                f"Invalid '{field}': integer below minimum value. Expected a value "
                f">= 1, but got {value} instead.",
                field,
            )
        req.max_tokens = value
        break
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list):
        if len(stop) > 4:
            raise RequestError(
                "Invalid 'stop': array too long. Expected an array with maximum "
                f"length 4, but got an array with length {len(stop)} instead.",
                "stop",
            )
        req.stop = [s for s in stop if isinstance(s, str)]
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 2:
        raise RequestError(
            f"Invalid 'temperature': decimal above maximum value. Expected a value "
            f"<= 2, but got {temperature} instead.",
            "temperature",
        )


def parse_chat(body: dict[str, Any]) -> tuple[GenerationRequest, int]:
    """The generation request and the number of choices (``n``)."""
    req = GenerationRequest()
    _messages(body, req)
    _tools(body, req)
    _options(body, req)
    n = body.get("n", 1) or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        raise RequestError("Invalid 'n': expected an integer between 1 and 128.", "n")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    return req, n


# --- responses ------------------------------------------------------------------------------


def _usage(gens: list[Generation]) -> dict[str, Any]:
    prompt = gens[0].input_tokens
    completion = sum(g.output_tokens for g in gens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_calls(gen: Generation) -> list[dict[str, Any]]:
    return [
        {
            "id": gen.call_id("call_", i),
            "type": "function",
            "function": {"name": c.name, "arguments": orjson.dumps(c.arguments).decode()},
        }
        for i, c in enumerate(gen.tool_calls)
    ]


def _completion(model: str, gens: list[Generation], protocol: Protocol) -> dict[str, Any]:
    choices = []
    for i, gen in enumerate(gens):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": gen.text if not gen.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if gen.tool_calls:
            message["tool_calls"] = _tool_calls(gen)
        choice: dict[str, Any] = {
            "index": i,
            "message": message,
            "logprobs": None,
            "finish_reason": gen.finish,
        }
        if protocol == "azure":
            choice["content_filter_results"] = _CONTENT_FILTER
        choices.append(choice)
    out: dict[str, Any] = {
        "id": new_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_sim0001",
        "service_tier": "default",
        "choices": choices,
        "usage": _usage(gens),
    }
    if protocol == "azure":
        out["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": _CONTENT_FILTER}
        ]
    return out


def _stream_pieces(
    model: str, gens: list[Generation], protocol: Protocol, include_usage: bool
) -> list[Piece]:
    cid, created = new_id("chatcmpl-", 29), int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_sim0001",
            "service_tier": "default",
            "choices": choices,
        }
        if include_usage:
            out["usage"] = None
        out.update(extra)
        return out

    def delta(index: int, d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": d, "logprobs": None, "finish_reason": finish}

    pieces: list[Piece] = []
    if protocol == "azure":
        filt = {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [
                {"prompt_index": 0, "content_filter_results": _CONTENT_FILTER}
            ],
        }
        pieces.append(Piece(sse(filt)))
    for i, gen in enumerate(gens):
        first = {"role": "assistant", "content": None if gen.tool_calls else "", "refusal": None}
        pieces.append(Piece(sse(chunk([delta(i, first)]))))
        for text in split_text(gen.text):
            pieces.append(Piece(sse(chunk([delta(i, {"content": text})])), True, text))
        for k, call in enumerate(_tool_calls(gen)):
            head = {
                "index": k,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            pieces.append(Piece(sse(chunk([delta(i, {"tool_calls": [head]})])), True, ""))
            for frag in split_json(call["function"]["arguments"]):
                part = {"index": k, "function": {"arguments": frag}}
                pieces.append(Piece(sse(chunk([delta(i, {"tool_calls": [part]})])), True, frag))
        pieces.append(Piece(sse(chunk([delta(i, {}, gen.finish)]))))
    if include_usage:
        pieces.append(Piece(sse(chunk([], usage=_usage(gens)))))
    pieces.append(Piece(b"data: [DONE]\n\n"))
    return pieces


# --- handlers -------------------------------------------------------------------------------


async def _chat(request: Request, protocol: Protocol, deployment: str | None) -> Response:
    headers = _headers(protocol)
    key = _api_key(request, protocol)
    if key is None:
        return auth_error(protocol, headers, missing=True)
    try:
        body = await read_json(request)
        model = deployment or body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("you must provide a model parameter", "model")
        req, n = parse_chat(body)
    except BadRequestBody as exc:
        return invalid_request(protocol, str(exc), None, headers)
    except RequestError as exc:
        return invalid_request(protocol, str(exc), exc.param, headers, exc.status)
    gens = [generate(_variant(req, i)) for i in range(n)]
    out_tokens = sum(g.output_tokens for g in gens)
    estimate = gens[0].input_tokens + max(out_tokens, (req.max_tokens or 0) * n)
    is_stream = bool(body.get("stream"))
    admitted = await admit(
        request,
        protocol,
        model,
        api_key=key,
        estimate=estimate,
        actual=gens[0].input_tokens + out_tokens,
        headers=headers,
        stream=is_stream,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    if not is_stream:
        return json_response(_completion(model, gens, protocol), headers=admitted.headers)
    opts = body.get("stream_options") or {}
    include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
    return stream(request, admitted, _stream_pieces(model, gens, protocol, include_usage))


def _variant(req: GenerationRequest, i: int) -> GenerationRequest:
    return req if i == 0 else replace(req, variant=i)


async def chat_completions(request: Request) -> Response:
    return await _chat(request, "openai", None)


async def azure_chat_completions(request: Request) -> Response:
    if not request.query_params.get("api-version"):
        return _missing_api_version()
    return await _chat(request, "azure", request.path_params["deployment"])


def _missing_api_version() -> Response:
    return json_response(
        {
            "error": {
                "code": "BadRequest",
                "message": "Missing API version. Provide the "
                "'api-version' query parameter, e.g. ?api-version=2024-10-21.",
            }
        },
        400,
        _headers("azure"),
    )


async def _embeddings(request: Request, protocol: Protocol, deployment: str | None) -> Response:
    headers = _headers(protocol)
    key = _api_key(request, protocol)
    if key is None:
        return auth_error(protocol, headers, missing=True)
    try:
        body = await read_json(request)
    except BadRequestBody as exc:
        return invalid_request(protocol, str(exc), None, headers)
    model = deployment or body.get("model")
    if not isinstance(model, str) or not model:
        return invalid_request(protocol, "you must provide a model parameter", "model", headers)
    raw = body.get("input")
    if raw is None:
        return invalid_request(protocol, "Missing required parameter: 'input'.", "input", headers)
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        return invalid_request(
            protocol,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            "input",
            headers,
        )
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    if any(not t for t in texts):
        return invalid_request(
            protocol, "'$.input' is invalid: empty strings are not allowed.", "input", headers
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return invalid_request(
            protocol,
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            headers,
        )
    dims = body.get("dimensions") or state_of(request).config.embedding_dimensions
    if not isinstance(dims, int) or dims < 1:
        return invalid_request(
            protocol, "Invalid 'dimensions': expected a positive integer.", "dimensions", headers
        )
    tokens = sum(count_tokens(t) for t in texts)
    admitted = await admit(
        request,
        protocol,
        model,
        api_key=key,
        estimate=tokens,
        actual=tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    data = []
    for i, text in enumerate(texts):
        vec = embed(text, dims)
        data.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": to_base64(vec) if encoding == "base64" else vec,
            }
        )
    body_out = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_response(body_out, headers=admitted.headers)


async def embeddings(request: Request) -> Response:
    return await _embeddings(request, "openai", None)


async def azure_embeddings(request: Request) -> Response:
    if not request.query_params.get("api-version"):
        return _missing_api_version()
    return await _embeddings(request, "azure", request.path_params["deployment"])


def _model_object(name: str) -> dict[str, Any]:
    owner = "system" if not name.startswith("text-") else "openai-internal"
    return {"id": name, "object": "model", "created": 1715367049, "owned_by": owner}


async def list_models(request: Request) -> Response:
    headers = _headers("openai")
    if _api_key(request, "openai") is None:
        return auth_error("openai", headers, missing=True)
    return json_response(
        {"object": "list", "data": [_model_object(m) for m in MODELS]}, headers=headers
    )


async def retrieve_model(request: Request, model: str) -> Response:
    headers = _headers("openai")
    if _api_key(request, "openai") is None:
        return auth_error("openai", headers, missing=True)
    if model not in MODELS:
        return openai_error(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            "invalid_request_error",
            "model",
            "model_not_found",
            headers,
        )
    return json_response(_model_object(model), headers=headers)


def openai_not_found(request: Request) -> Response:
    protocol: Protocol = "azure" if request.url.path.startswith("/openai/") else "openai"
    return openai_error(
        404,
        f"Invalid URL ({request.method} {request.url.path})",
        "invalid_request_error",
        None,
        None,
        _headers(protocol),
    )
