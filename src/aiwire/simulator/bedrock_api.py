"""AWS Bedrock Runtime (reference §5): ``POST /model/{modelId}/converse``, ``/converse-stream``
(binary ``application/vnd.amazon.eventstream``) and ``/invoke`` for Titan and Cohere embedding
models.

Authentication is checked for presence and shape, not cryptographically: a SigV4
``Authorization`` header scoped to the ``bedrock`` service (with ``x-amz-date`` signed), or a
Bedrock API key (``Bearer``). An access key id or API key starting with ``expired`` gets
``ExpiredTokenException``. Fault ``429``, ``500``, ``503`` or ``529`` with ``after=K`` on a
stream sends K content events and then the matching exception *inside* the event stream, the
way Bedrock reports errors that happen mid-answer.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import uuid
from binascii import crc32
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator.admission import admit_shaped
from aiwire.simulator.embeddings import embed
from aiwire.simulator.engine import Generation, GenerationRequest, Tool, count_tokens, generate
from aiwire.simulator.faults import Fault
from aiwire.simulator.gate import Admitted, state_of, stream
from aiwire.simulator.limits import Refusal
from aiwire.simulator.wire import (
    BadRequestBody,
    Piece,
    json_response,
    read_json,
    split_json,
    split_text,
)

EVENT_STREAM = "application/vnd.amazon.eventstream"
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_BLOCKS = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
        "searchResult",
    }
)
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$"
)
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#: Error faults that, with ``after=K`` on a stream, arrive as an exception event.
_IN_STREAM = {
    "429": ("throttlingException", "Too many tokens, please wait before trying again."),
    "500": ("internalServerException", "The server encountered an internal error."),
    "503": ("serviceUnavailableException", "Bedrock is unable to process your request."),
    "529": ("serviceUnavailableException", "Bedrock is unable to process your request."),
}


class RequestError(ValueError):
    pass


# --- wire helpers ---------------------------------------------------------------------------


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, string headers, payload, both CRC-32 checksums."""
    block = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        block += bytes([len(raw_name)]) + raw_name + b"\x07"
        block += struct.pack(">H", len(raw_value)) + raw_value
    prelude = struct.pack(">II", 16 + len(block) + len(payload), len(block))
    message = prelude + struct.pack(">I", crc32(prelude)) + block + payload
    return message + struct.pack(">I", crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads each payload with a "p" field so sizes do not reveal the content.
    padded = {**payload, "p": _PAD[: 1 + len(orjson.dumps(payload)) % len(_PAD)]}
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, orjson.dumps(padded))


def exception_event(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


def _headers() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def bedrock_error(
    status: int, name: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    out = {
        **(headers or {}),
        "x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
    }
    return json_response({"message": message}, status, out)


class BedrockErrors:
    """Refusals in Bedrock's shape (:class:`~aiwire.simulator.admission.ErrorShape`)."""

    def invalid(self, message: str, headers: Mapping[str, str]) -> Response:
        return bedrock_error(400, "ValidationException", message, headers)

    def expired(self, headers: Mapping[str, str]) -> Response:
        return bedrock_error(
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
            headers,
        )

    def fault(self, fault: Fault, model: str, headers: Mapping[str, str]) -> Response:
        if fault.kind == "429":
            return bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
                headers,
            )
        if fault.kind == "401":
            return bedrock_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                headers,
            )
        if fault.kind == "500":
            return bedrock_error(
                500, "InternalServerException", "The server encountered an internal error.", headers
            )
        if fault.kind == "529":
            return bedrock_error(
                429,
                "ModelNotReadyException",
                "Model is not ready to serve inference requests. The AWS SDK will automatically "
                "retry the operation up to 5 times.",
                headers,
            )
        return bedrock_error(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
            headers,
        )

    def rate_limited(self, model: str, refusal: Refusal, headers: Mapping[str, str]) -> Response:
        what = "requests" if refusal.dimension == "requests" else "tokens"
        return bedrock_error(
            429,
            "ThrottlingException",
            f"Too many {what}, please wait before trying again.",
            headers,
        )


_ERRORS = BedrockErrors()


def _authorize(request: Request, headers: Mapping[str, str]) -> str | Response:
    """The caller's access key id (SigV4) or API key (Bearer), or the 403 refusing it."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    if not auth:
        return bedrock_error(
            403, "MissingAuthenticationTokenException", "Missing Authentication Token", headers
        )
    match = _SIGV4.match(auth)
    if match is None:
        return bedrock_error(
            403,
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters.",
            headers,
        )
    if match.group(4) != "bedrock":
        return bedrock_error(
            403,
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
            headers,
        )
    signed = match.group(5).split(";")
    if "host" not in signed or "x-amz-date" not in signed or not request.headers.get("x-amz-date"):
        return bedrock_error(
            403,
            "IncompleteSignatureException",
            "The request signature must cover the host and x-amz-date headers.",
            headers,
        )
    return match.group(1)


# --- request parsing ------------------------------------------------------------------------


def parse_converse(body: dict[str, Any]) -> GenerationRequest:
    req = GenerationRequest()
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise RequestError("system: expected a list of SystemContentBlock objects")
        req.system = "\n".join(
            str(b["text"]) for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    uses_tools = _parse_messages(body.get("messages"), req)
    _parse_inference(body.get("inferenceConfig"), req)
    if uses_tools and "toolConfig" not in body:
        raise RequestError(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    _parse_tools(body.get("toolConfig"), req)
    return req


def _parse_messages(messages: Any, req: GenerationRequest) -> bool:
    """Fill ``req`` from the turns; True when any of them holds toolUse or toolResult."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: at least one message is required")
    open_ids: list[str] = []
    uses_tools = False
    previous = None
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant"):
            raise RequestError(
                f"1 validation error detected: Value '{role}' at 'messages.{i + 1}.member.role' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                "[user, assistant]"
            )
        assert isinstance(msg, dict)
        if i == 0 and role != "user":
            raise RequestError(
                "A conversation must start with a user message. Try again with a conversation "
                "that starts with a user message."
            )
        if role == previous:
            raise RequestError(
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again."
            )
        previous = role
        content = msg.get("content")
        if not isinstance(content, list) or not content:
            raise RequestError(
                f"The content field in the Message object at messages.{i}.content is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
        texts, uses, results = _parse_blocks(content, i, role, req)
        if role == "user" and open_ids:
            answered = {r for r, _ in results}
            missing = [u for u in open_ids if u not in answered]
            if missing:
                raise RequestError(
                    f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                    + ", ".join(missing)
                )
        for result_id, _ in results:
            if result_id not in open_ids:
                raise RequestError(
                    f"The toolResult block at messages.{i}.content has toolUseId {result_id}, "
                    "which matches no toolUse block in the previous assistant message."
                )
        uses_tools = uses_tools or bool(uses or results)
        open_ids = uses
        result_texts = [t for _, t in results]
        req.turns.append("\n".join(texts + result_texts))
        if role == "user":
            if "\n".join(texts).strip():
                req.last_user_text = "\n".join(texts)
            req.tool_results = result_texts or None
        else:
            req.tool_results = None
    return uses_tools


def _parse_blocks(
    content: list[Any], i: int, role: str, req: GenerationRequest
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(texts, toolUse ids, (toolUseId, result text) pairs) of one message's content."""
    texts: list[str] = []
    uses: list[str] = []
    results: list[tuple[str, str]] = []
    for j, block in enumerate(content):
        keys = [k for k in block if k in _BLOCKS] if isinstance(block, dict) else []
        if len(keys) != 1:
            raise RequestError(
                f"messages.{i}.content.{j}: a ContentBlock must hold exactly one member"
            )
        assert isinstance(block, dict)
        kind, value = keys[0], block[keys[0]]
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise RequestError(
                    f"The text field in the ContentBlock object at messages.{i}.content.{j} is "
                    "blank. Add text to the text field, and try again."
                )
            texts.append(value)
        elif kind == "image":
            _check_image(value, f"messages.{i}.content.{j}.image")
            req.images += 1
        elif kind == "toolUse":
            if role != "assistant":
                raise RequestError(f"messages.{i}.content.{j}: toolUse is for assistant messages")
            uses.append(str(value.get("toolUseId")))
            texts.append(
                orjson.dumps({"name": value.get("name"), "input": value.get("input")}).decode()
            )
        elif kind == "toolResult":
            if role != "user":
                raise RequestError(f"messages.{i}.content.{j}: toolResult is for user messages")
            results.append((str(value.get("toolUseId")), _result_text(value.get("content"))))
    return texts, uses, results


def _check_image(image: Any, where: str) -> None:
    fmt = image.get("format") if isinstance(image, dict) else None
    source = image.get("source") if isinstance(image, dict) else None
    data = source.get("bytes") if isinstance(source, dict) else None
    if fmt not in _IMAGE_FORMATS:
        raise RequestError(f"{where}.format: must be one of png, jpeg, gif, webp")
    try:
        ok = isinstance(data, str) and bool(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise RequestError(f"{where}.source.bytes: Invalid base64 image data")


def _result_text(content: Any) -> str:
    parts: list[str] = []
    for item in content if isinstance(content, list) else []:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            parts.append(item["text"])
        elif isinstance(item, dict) and "json" in item:
            parts.append(orjson.dumps(item["json"]).decode())
    return "\n".join(parts)


def _parse_inference(config: Any, req: GenerationRequest) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise RequestError("inferenceConfig: expected an object")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to "
                "satisfy constraint: Member must have value greater than or equal to 1"
            )
        req.max_tokens = max_tokens
    stops = config.get("stopSequences")
    if isinstance(stops, list):
        req.stop = [s for s in stops if isinstance(s, str)]


def _parse_tools(config: Any, req: GenerationRequest) -> None:
    if config is None:
        return
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise RequestError(
            "1 validation error detected: Value at 'toolConfig.tools' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    for i, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict):
            continue  # cachePoint and system tools
        schema = (spec.get("inputSchema") or {}).get("json")
        if not spec.get("name") or not isinstance(schema, dict):
            raise RequestError(f"toolConfig.tools.{i}.toolSpec: name and inputSchema.json needed")
        req.tools.append(Tool(str(spec["name"]), str(spec.get("description") or ""), schema))
    choice = config.get("toolChoice")
    if choice is None:
        return
    if not isinstance(choice, dict) or len(choice) != 1:
        raise RequestError("toolConfig.toolChoice: exactly one of auto, any, tool")
    if "any" in choice:
        req.tool_mode = "required"
    elif "tool" in choice:
        name = (choice["tool"] or {}).get("name")
        if name not in [t.name for t in req.tools]:
            raise RequestError(
                f"toolConfig.toolChoice.tool.name: {name} is not in toolConfig.tools"
            )
        req.tool_mode = f"named:{name}"
    elif "auto" not in choice:
        raise RequestError("toolConfig.toolChoice: exactly one of auto, any, tool")


# --- responses ------------------------------------------------------------------------------


def _stop_reason(gen: Generation) -> str:
    return "stop_sequence" if gen.stop_sequence is not None else _STOP[gen.finish]


def _content(gen: Generation) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if gen.text or not gen.tool_calls:
        blocks.append({"text": gen.text})
    for i, call in enumerate(gen.tool_calls):
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": gen.call_id("tooluse_", i),
                    "name": call.name,
                    "input": call.arguments,
                }
            }
        )
    return blocks


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "inputTokens": gen.input_tokens,
        "outputTokens": gen.output_tokens,
        "totalTokens": gen.total_tokens,
    }


def _response(gen: Generation, latency_ms: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": _content(gen)}},
        "stopReason": _stop_reason(gen),
        "usage": _usage(gen),
        "metrics": {"latencyMs": latency_ms},
    }


def _stream_pieces(gen: Generation, latency_ms: int) -> list[Piece]:
    pieces = [Piece(event("messageStart", {"role": "assistant"}))]
    for index, block in enumerate(_content(gen)):
        if "text" in block:
            for text in split_text(block["text"]) or [""]:
                delta = {"contentBlockIndex": index, "delta": {"text": text}}
                pieces.append(Piece(event("contentBlockDelta", delta), True, text))
        else:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            pieces.append(
                Piece(
                    event("contentBlockStart", {"contentBlockIndex": index, "start": start}), True
                )
            )
            for fragment in split_json(orjson.dumps(use["input"]).decode()):
                delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
                pieces.append(Piece(event("contentBlockDelta", delta), True, fragment))
        pieces.append(Piece(event("contentBlockStop", {"contentBlockIndex": index})))
    pieces.append(Piece(event("messageStop", {"stopReason": _stop_reason(gen)})))
    metadata = {"usage": _usage(gen), "metrics": {"latencyMs": latency_ms}}
    pieces.append(Piece(event("metadata", metadata)))
    return pieces


def _cut_with_exception(pieces: list[Piece], fault: Fault) -> list[Piece]:
    """The pieces up to ``fault.after`` content events, then the fault's exception event."""
    kept: list[Piece] = []
    sent = 0
    for piece in pieces:
        if piece.content:
            if sent == fault.after:
                break
            sent += 1
        kept.append(piece)
    name, message = _IN_STREAM[fault.kind]
    return [*kept, Piece(exception_event(name, message))]


# --- handlers -------------------------------------------------------------------------------


async def _converse(request: Request, streaming: bool) -> Response:
    headers = _headers()
    principal = _authorize(request, headers)
    if isinstance(principal, Response):
        return principal
    model = str(request.path_params["model_id"])
    try:
        body = await read_json(request)
        req = parse_converse(body)
    except (BadRequestBody, RequestError) as exc:
        return _ERRORS.invalid(str(exc), headers)
    gen = generate(req)
    admitted = await admit_shaped(
        request,
        _ERRORS,
        "bedrock",
        model,
        expired=principal.lower().startswith("expired"),
        estimate=gen.input_tokens + max(req.max_tokens or 0, gen.output_tokens),
        actual=gen.total_tokens,
        headers=headers,
        stream=streaming,
        in_stream_errors=frozenset(_IN_STREAM),
    )
    if not isinstance(admitted, Admitted):
        return admitted
    latency = round(state_of(request).config.latency_ms) or 1
    if not streaming:
        return json_response(_response(gen, latency), headers=admitted.headers)
    pieces = _stream_pieces(gen, latency)
    if admitted.fault is not None and admitted.fault.is_error:
        pieces = _cut_with_exception(pieces, admitted.fault)
        admitted = Admitted(admitted.headers, None)
    corrupt = bytearray(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
    )
    corrupt[-1] ^= 0xFF  # a message whose checksum does not match
    return stream(request, admitted, pieces, media_type=EVENT_STREAM, malformed=bytes(corrupt))


async def converse(request: Request) -> Response:
    return await _converse(request, streaming=False)


async def converse_stream(request: Request) -> Response:
    return await _converse(request, streaming=True)


async def invoke(request: Request) -> Response:
    """InvokeModel, for the embedding models the adapter supports (Titan, Cohere)."""
    headers = _headers()
    principal = _authorize(request, headers)
    if isinstance(principal, Response):
        return principal
    model = str(request.path_params["model_id"])
    try:
        body = await read_json(request)
        texts, dims = _embedding_input(model, body, state_of(request).config.embedding_dimensions)
    except (BadRequestBody, RequestError) as exc:
        return _ERRORS.invalid(str(exc), headers)
    tokens = sum(count_tokens(t) for t in texts)
    admitted = await admit_shaped(
        request,
        _ERRORS,
        "bedrock",
        model,
        expired=principal.lower().startswith("expired"),
        estimate=tokens,
        actual=tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    vectors = [embed(t, dims) for t in texts]
    if "cohere.embed" in model:
        out: dict[str, Any] = {
            "embeddings": vectors,
            "id": str(uuid.uuid4()),
            "response_type": "embeddings_floats",
            "texts": texts,
        }
    else:
        out = {"embedding": vectors[0], "inputTextTokenCount": tokens}
    return json_response(out, headers=admitted.headers)


def _embedding_input(model: str, body: dict[str, Any], default: int) -> tuple[list[str], int]:
    if "titan-embed" in model:
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            raise RequestError(
                "Malformed input request: #: required key [inputText] not found, please "
                "reformat your input and try again."
            )
        dims = body.get("dimensions")
        if dims is None:
            return [text], default
        if "titan-embed-text-v2" not in model:
            raise RequestError(
                "Malformed input request: #: extraneous key [dimensions] is not permitted, "
                "please reformat your input and try again."
            )
        if dims not in (256, 512, 1024):
            raise RequestError(
                f"Malformed input request: #/dimensions: {dims} is not a valid enum value, "
                "please reformat your input and try again."
            )
        return [text], int(dims)
    if "cohere.embed" in model:
        texts = body.get("texts")
        if (
            not isinstance(texts, list)
            or not 0 < len(texts) <= 96
            or not all(isinstance(t, str) and t for t in texts)
        ):
            raise RequestError("Malformed input request: #/texts: expected 1 to 96 strings")
        if not isinstance(body.get("input_type"), str):
            raise RequestError(
                "Malformed input request: #: required key [input_type] not found, please "
                "reformat your input and try again."
            )
        return list(texts), default
    raise RequestError(
        f"The simulator serves InvokeModel for Titan and Cohere embedding models only, not {model}"
    )


def not_found(request: Request) -> Response:
    return bedrock_error(
        404,
        "UnknownOperationException",
        f"The requested operation is not recognized by the service: {request.url.path}",
        _headers(),
    )
