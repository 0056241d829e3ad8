"""Google Gemini API (reference §3) under ``/v1beta/models`` and ``/v1/models``.

Requests are accepted in camelCase and in the proto snake_case spellings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator import media_api
from aiwire.simulator.embeddings import embed
from aiwire.simulator.engine import Generation, GenerationRequest, Tool, count_tokens, generate
from aiwire.simulator.errors import auth_error, gemini_error
from aiwire.simulator.gate import Admitted, admit, state_of, stream
from aiwire.simulator.wire import BadRequestBody, Piece, json_response, new_id, read_json, sse

MODELS = [
    ("gemini-2.5-flash", "Gemini 2.5 Flash", ["generateContent", "countTokens"]),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", ["generateContent", "countTokens"]),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", ["generateContent", "countTokens"]),
    ("text-embedding-004", "Text Embedding 004", ["embedContent", "batchEmbedContents"]),
    ("gemini-embedding-001", "Gemini Embedding 001", ["embedContent", "batchEmbedContents"]),
]
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


class RequestError(ValueError):
    pass


def _get(d: Any, camel: str) -> Any:
    """``d[camel]``, or its snake_case spelling."""
    if not isinstance(d, dict):
        return None
    if camel in d:
        return d[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return d.get(snake)


def _headers() -> dict[str, str]:
    return {"x-goog-request-id": new_id("", 16), "server": "scaffolding on HTTPServer2"}


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return None


# --- request parsing ------------------------------------------------------------------------


def _parts_text(content: Any, req: GenerationRequest | None = None) -> tuple[str, list[str]]:
    """Text of a Content's parts (function calls as JSON) and its function responses."""
    texts: list[str] = []
    responses: list[str] = []
    parts = _get(content, "parts") if isinstance(content, dict) else None
    for part in parts or []:
        if not isinstance(part, dict):
            raise RequestError("Invalid value at 'contents.parts': expected an object.")
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        media = _get(part, "inlineData") is not None or _get(part, "fileData") is not None
        if media and req is not None:
            req.images += 1
        call = _get(part, "functionCall")
        if isinstance(call, dict):
            texts.append(orjson.dumps(call).decode())
        resp = _get(part, "functionResponse")
        if isinstance(resp, dict):
            responses.append(orjson.dumps(resp.get("response", {})).decode())
    return "\n".join(texts), responses


def _upper_schema(schema: Any) -> Any:
    """Gemini OpenAPI schema → JSON schema (lower-case types, ``nullable`` kept harmlessly)."""
    if isinstance(schema, list):
        return [_upper_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _upper_schema(v) for k, v in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


def parse_generate(body: dict[str, Any]) -> tuple[GenerationRequest, int]:
    req = GenerationRequest()
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RequestError("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise RequestError(f"Invalid value at 'contents[{i}]': expected an object.")
        role = content.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise RequestError("Please use a valid role: user, model.")
        text, responses = _parts_text(content, req)
        req.turns.append("\n".join([text, *responses]).strip())
        if role == "model":
            req.tool_results = None
        else:
            if text.strip():
                req.last_user_text = text
            req.tool_results = responses or None
    system = _get(body, "systemInstruction")
    if isinstance(system, str):
        req.system = system
    elif isinstance(system, dict):
        req.system = _parts_text(system)[0]
    for tool in body.get("tools") or []:
        for decl in _get(tool, "functionDeclarations") or []:
            if not isinstance(decl, dict) or not decl.get("name"):
                raise RequestError(
                    "* GenerateContentRequest.tools[0].function_declarations[0]"
                    ".name: Name cannot be empty."
                )
            params = _get(decl, "parametersJsonSchema") or _upper_schema(
                decl.get("parameters") or {}
            )
            req.tools.append(Tool(str(decl["name"]), str(decl.get("description") or ""), params))
    fcc = _get(_get(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(fcc.get("mode") or "AUTO").upper()
    allowed = _get(fcc, "allowedFunctionNames") or []
    if mode == "NONE":
        req.tool_mode = "none"
    elif mode in ("ANY", "VALIDATED") and req.tools:
        if allowed:
            req.tools = [t for t in req.tools if t.name in allowed]
        req.tool_mode = f"named:{allowed[0]}" if len(allowed) == 1 else "required"
    elif mode not in ("AUTO", "ANY", "VALIDATED", "MODE_UNSPECIFIED"):
        raise RequestError(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")
    return req, _generation_config(body, req)


def _generation_config(body: dict[str, Any], req: GenerationRequest) -> int:
    cfg = _get(body, "generationConfig") or {}
    if not isinstance(cfg, dict):
        raise RequestError("Invalid value at 'generation_config': expected an object.")
    max_out = _get(cfg, "maxOutputTokens")
    if max_out is not None:
        if not isinstance(max_out, int) or max_out < 1:
            raise RequestError(
                "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
            )
        req.max_tokens = max_out
    stops = _get(cfg, "stopSequences")
    if isinstance(stops, list):
        if len(stops) > 5:
            raise RequestError(
                "* GenerateContentRequest.generation_config.stop_sequences: "
                "at most 5 stop sequences are allowed"
            )
        req.stop = [s for s in stops if isinstance(s, str)]
    temperature = cfg.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 2:
        raise RequestError(
            "* GenerateContentRequest.generation_config.temperature: must be between 0 and 2"
        )
    mime = _get(cfg, "responseMimeType")
    json_schema = _get(cfg, "responseJsonSchema") or cfg.get("_responseJsonSchema")
    schema = json_schema or _upper_schema(_get(cfg, "responseSchema"))
    if mime == "application/json":
        if isinstance(schema, dict):
            req.output_schema = schema
        else:
            req.json_mode = True
    elif schema is not None:
        raise RequestError(
            "* GenerateContentRequest.generation_config.response_mime_type: "
            "must be application/json when a response schema is set"
        )
    count = _get(cfg, "candidateCount") or 1
    if not isinstance(count, int) or not 1 <= count <= 8:
        raise RequestError(
            "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8"
        )
    return count


# --- responses ------------------------------------------------------------------------------


def _parts(gen: Generation) -> list[dict[str, Any]]:
    if gen.tool_calls:
        return [
            {"functionCall": {"id": gen.call_id("fc_", i), "name": c.name, "args": c.arguments}}
            for i, c in enumerate(gen.tool_calls)
        ]
    return [{"text": gen.text}]


def _usage(gens: list[Generation], output: int | None = None) -> dict[str, Any]:
    prompt = gens[0].input_tokens
    out = sum(g.output_tokens for g in gens) if output is None else output
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "totalTokenCount": prompt + out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def _response(model: str, gens: list[Generation], rid: str) -> dict[str, Any]:
    candidates = [
        {
            "content": {"role": "model", "parts": _parts(g)},
            "finishReason": _FINISH[g.finish],
            "index": i,
        }
        for i, g in enumerate(gens)
    ]
    return {
        "candidates": candidates,
        "usageMetadata": _usage(gens),
        "modelVersion": model,
        "responseId": rid,
    }


def _stream_chunks(model: str, gen: Generation) -> list[tuple[dict[str, Any], str]]:
    """(chunk, its text) pairs: a few words per chunk, function calls whole, the last chunk with
    ``finishReason`` and the final usage."""
    rid = new_id("", 22)
    if gen.tool_calls:
        groups: list[list[dict[str, Any]]] = [_parts(gen)]
        texts = [""]
    else:
        words = gen.text.split(" ")
        texts = [
            " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
            for i in range(0, len(words), 3)
        ] or [""]
        groups = [[{"text": t}] for t in texts]
    chunks: list[tuple[dict[str, Any], str]] = []
    done = 0
    for n, (parts, text) in enumerate(zip(groups, texts, strict=True)):
        last = n == len(groups) - 1
        done = gen.output_tokens if last else done + count_tokens(text)
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if last:
            cand["finishReason"] = _FINISH[gen.finish]
        chunk = {
            "candidates": [cand],
            "usageMetadata": _usage([gen], done),
            "modelVersion": model,
            "responseId": rid,
        }
        chunks.append((chunk, text))
    return chunks


# --- handlers -------------------------------------------------------------------------------


async def _generate(
    request: Request, model: str, key: str, headers: dict[str, str], streaming: bool
) -> Response:
    try:
        body = await read_json(request)
        req, count = parse_generate(body)
    except (BadRequestBody, RequestError) as exc:
        return gemini_error(400, str(exc), headers=headers)
    if not streaming and media_api.wants_image(body):  # image models (see media_api)
        image = media_api.gemini_image_response(model, body)
        tokens = image["usageMetadata"]["totalTokenCount"]
        admitted = await admit(
            request,
            "gemini",
            model,
            api_key=key,
            estimate=tokens,
            actual=tokens,
            headers=headers,
            stream=False,
        )
        if not isinstance(admitted, Admitted):
            return admitted
        return json_response(image, headers=admitted.headers)
    gens = [generate(req if i == 0 else replace(req, variant=i)) for i in range(count)]
    out = sum(g.output_tokens for g in gens)
    admitted = await admit(
        request,
        "gemini",
        model,
        api_key=key,
        estimate=gens[0].input_tokens + max(out, req.max_tokens or 0),
        actual=gens[0].input_tokens + out,
        headers=headers,
        stream=streaming,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    if not streaming:
        return json_response(_response(model, gens, new_id("", 22)), headers=admitted.headers)
    chunks = _stream_chunks(model, gens[0])
    if request.query_params.get("alt") == "sse":
        pieces = [Piece(sse(c), True, t) for c, t in chunks]
        return stream(request, admitted, pieces)
    pieces = [
        Piece((b"[" if i == 0 else b",\r\n") + orjson.dumps(c), True, t)
        for i, (c, t) in enumerate(chunks)
    ]
    pieces.append(Piece(b"]"))
    return stream(
        request, admitted, pieces, media_type="application/json", malformed=b",\r\n{not json"
    )


def _content_of(item: Any) -> str:
    return _parts_text(_get(item, "content") or {})[0]


def _dims(item: Any, default: int) -> int:
    dims = _get(item, "outputDimensionality") or _get(
        _get(item, "embedContentConfig"), "outputDimensionality"
    )
    return dims if isinstance(dims, int) and dims > 0 else default


async def _embed(
    request: Request, model: str, key: str, headers: dict[str, str], batch: bool
) -> Response:
    try:
        body = await read_json(request)
    except BadRequestBody as exc:
        return gemini_error(400, str(exc), headers=headers)
    default = state_of(request).config.embedding_dimensions
    items = body.get("requests") if batch else [body]
    if not isinstance(items, list) or not items:
        return gemini_error(
            400, "* BatchEmbedContentsRequest.requests: requests is required", headers=headers
        )
    texts = [_content_of(item) for item in items]
    if any(not t for t in texts):
        return gemini_error(
            400, "* EmbedContentRequest.content: contains an empty Part.", headers=headers
        )
    tokens = sum(count_tokens(t) for t in texts)
    admitted = await admit(
        request,
        "gemini",
        model,
        api_key=key,
        estimate=tokens,
        actual=tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    vectors = [
        {"values": embed(t, _dims(item, default))} for t, item in zip(texts, items, strict=True)
    ]
    out = {"embeddings": vectors} if batch else {"embedding": vectors[0]}
    return json_response(out, headers=admitted.headers)


async def _count(request: Request, headers: dict[str, str]) -> Response:
    try:
        body = await read_json(request)
        inner = _get(body, "generateContentRequest")
        req, _ = parse_generate(inner if isinstance(inner, dict) else body)
    except (BadRequestBody, RequestError) as exc:
        return gemini_error(400, str(exc), headers=headers)
    total = generate(req).input_tokens
    return json_response(
        {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]},
        headers=headers,
    )


def _model_object(model_id: str, name: str, methods: list[str]) -> dict[str, Any]:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": name,
        "description": f"Simulated {name}",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": methods,
    }


async def gemini_models(request: Request) -> Response:
    """Every ``models`` route: list, get, and ``{model}:{method}``."""
    headers = _headers()
    key = _api_key(request)
    if key is None:
        return auth_error("gemini", headers, missing=True)
    rest = str(request.path_params.get("rest", "")).strip("/")
    version = request.url.path.split("/")[1]
    if not rest:
        if request.method != "GET":
            return gemini_not_found(request)
        return json_response({"models": [_model_object(*m) for m in MODELS]}, headers=headers)
    model, _, method = rest.partition(":")
    model = model.removeprefix("models/")
    if not method:
        if request.method != "GET":
            return gemini_not_found(request)
        for m in MODELS:
            if m[0] == model:
                return json_response(_model_object(*m), headers=headers)
        return gemini_error(
            404,
            f"models/{model} is not found for API version {version}, or is "
            "not supported for generateContent. Call ListModels to see the list "
            "of available models and their supported methods.",
            headers=headers,
        )
    if request.method != "POST":
        return gemini_not_found(request)
    if method in ("generateContent", "streamGenerateContent"):
        return await _generate(request, model, key, headers, method == "streamGenerateContent")
    if method in ("embedContent", "batchEmbedContents"):
        return await _embed(request, model, key, headers, method == "batchEmbedContents")
    if method == "countTokens":
        if key.startswith("expired"):
            return auth_error("gemini", headers)
        return await _count(request, headers)
    return gemini_not_found(request)


def gemini_not_found(request: Request) -> Response:
    return gemini_error(
        404,
        f"The requested URL {request.url.path} was not found on this server.",
        headers=_headers(),
    )
