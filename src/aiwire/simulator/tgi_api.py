"""Hugging Face Text Generation Inference, native API: ``POST /generate`` and
``/generate_stream`` (text generation: ``inputs`` plus ``parameters``; token events).

TGI's OpenAI-compatible ``/v1/chat/completions`` is the OpenAI simulator's. A prompt rendered
with a ChatML or Llama-3 chat template is read back into its turns, so the deterministic model
answers the last user message rather than the template markup. Errors use TGI's shape,
``{"error": "...", "error_type": "..."}``; fault ``500`` or ``429`` with ``after=K`` on a
stream sends K token events and then such an error as an event, as TGI does when generation
fails midway. A TGI server serves one model, so rate limits and configured faults are looked up
under the model name ``tgi``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator.admission import admit_shaped
from aiwire.simulator.engine import Generation, GenerationRequest, generate
from aiwire.simulator.faults import Fault
from aiwire.simulator.gate import Admitted, stream
from aiwire.simulator.limits import Refusal
from aiwire.simulator.wire import BadRequestBody, Piece, json_response, read_json, split_text

MAX_STOP_SEQUENCES = 4  # TGI's default --max-stop-sequences
_TURN_PATTERNS = (
    re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL),
    re.compile(
        r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.DOTALL
    ),
)
_IN_STREAM = {
    "500": ("Request failed during generation: Server error: CUDA out of memory", "generation"),
    "429": ("Model is overloaded", "overloaded"),
}


class RequestError(ValueError):
    pass


def tgi_error(
    status: int, message: str, error_type: str | None, headers: Mapping[str, str], **extra: Any
) -> Response:
    body: dict[str, Any] = {"error": message, **extra}
    if error_type is not None:
        body["error_type"] = error_type
    return json_response(body, status, headers)


class TGIErrors:
    """Refusals in TGI's shape (:class:`~aiwire.simulator.admission.ErrorShape`)."""

    def invalid(self, message: str, headers: Mapping[str, str]) -> Response:
        return tgi_error(422, f"Input validation error: {message}", "validation", headers)

    def expired(self, headers: Mapping[str, str]) -> Response:
        return tgi_error(
            401, "Authorization header is correct, but the token seems invalid", None, headers
        )

    def fault(self, fault: Fault, model: str, headers: Mapping[str, str]) -> Response:
        if fault.kind == "429":
            return tgi_error(429, "Model is overloaded", "overloaded", headers)
        if fault.kind == "401":
            return self.expired(headers)
        if fault.kind == "500":
            return tgi_error(500, _IN_STREAM["500"][0], "generation", headers)
        wait = 1.0 if fault.retry_after is None else fault.retry_after
        return tgi_error(
            503, f"Model {model} is currently loading", None, headers, estimated_time=wait
        )

    def rate_limited(self, model: str, refusal: Refusal, headers: Mapping[str, str]) -> Response:
        return tgi_error(429, "Model is overloaded", "overloaded", headers)


_ERRORS = TGIErrors()


def _headers() -> dict[str, str]:
    return {"x-compute-type": "gpu+optimized"}


# --- request parsing ------------------------------------------------------------------------


def parse_generate(body: dict[str, Any]) -> tuple[GenerationRequest, dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
        raise RequestError("`inputs` cannot be empty")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("`parameters` must be an object")
    req = GenerationRequest()
    _read_prompt(inputs, req)
    temperature = params.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or temperature <= 0):
        raise RequestError("`temperature` must be strictly positive")
    top_p = params.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p < 1):
        raise RequestError("`top_p` must be > 0.0 and < 1.0")
    max_new = params.get("max_new_tokens")
    if max_new is not None:
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
            raise RequestError("`max_new_tokens` must be strictly positive")
        req.max_tokens = max_new
    stops = params.get("stop") or []
    if not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES:
        count = len(stops) if isinstance(stops, list) else "?"
        raise RequestError(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {count}"
        )
    req.stop = [s for s in stops if isinstance(s, str)]
    _read_grammar(params.get("grammar"), req)
    return req, params


def _read_prompt(inputs: str, req: GenerationRequest) -> None:
    for pattern in _TURN_PATTERNS:
        turns = [(m.group(1), m.group(2).strip()) for m in pattern.finditer(inputs)]
        if turns:
            break
    else:
        turns = [("user", inputs)]
    for role, text in turns:
        if role == "system":
            req.system = text
        elif text:
            req.turns.append(text)
            if role == "user":
                req.last_user_text = text


def _read_grammar(grammar: Any, req: GenerationRequest) -> None:
    if grammar is None:
        return
    kind = grammar.get("type") if isinstance(grammar, dict) else None
    if kind not in ("json", "json_object", "regex"):
        raise RequestError("`grammar` must be {type: json | regex, value: ...}")
    assert isinstance(grammar, dict)
    if kind == "regex":
        return
    value = grammar.get("value")
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise RequestError("grammar value is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestError("a json grammar needs a JSON schema object as its value")
    if value in ({}, {"type": "object"}):
        req.json_mode = True
    else:
        req.output_schema = value


# --- responses ------------------------------------------------------------------------------


def _finish(gen: Generation) -> str:
    if gen.finish == "length":
        return "length"
    return "stop_sequence" if gen.stop_sequence is not None else "eos_token"


def _usage_headers(gen: Generation) -> dict[str, str]:
    return {
        "x-prompt-tokens": str(gen.input_tokens),
        "x-generated-tokens": str(gen.output_tokens),
    }


def _token_event(
    index: int, text: str, special: bool = False, final: dict[str, Any] | None = None
) -> bytes:
    event = {
        "index": index,
        "token": {"id": 1000 + index, "text": text, "logprob": -0.25, "special": special},
        "generated_text": None,
        "details": None,
        "top_tokens": None,
        **(final or {}),
    }
    return b"data:" + orjson.dumps(event) + b"\n\n"


def _stream_pieces(gen: Generation, seed: Any) -> list[Piece]:
    texts = split_text(gen.text)
    details = {
        "finish_reason": _finish(gen),
        "generated_tokens": gen.output_tokens,
        "seed": seed,
        "input_length": gen.input_tokens,
    }
    final = {"generated_text": gen.text, "details": details}
    pieces = [Piece(_token_event(i + 1, t), True, t) for i, t in enumerate(texts)]
    if _finish(gen) == "eos_token" or not pieces:
        pieces.append(Piece(_token_event(len(texts) + 1, "</s>", True, final)))
    else:
        last = len(texts)
        pieces[-1] = Piece(_token_event(last, texts[-1], final=final), True, texts[-1])
    return pieces


# --- handlers -------------------------------------------------------------------------------


async def _generate(request: Request, streaming: bool) -> Response:
    headers = _headers()
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    try:
        body = await read_json(request)
        req, params = parse_generate(body)
    except (BadRequestBody, RequestError) as exc:
        return _ERRORS.invalid(str(exc), headers)
    gen = generate(req)
    admitted = await admit_shaped(
        request,
        _ERRORS,
        "tgi",
        "tgi",
        expired=token.startswith("expired"),
        estimate=gen.input_tokens + max(req.max_tokens or 0, gen.output_tokens),
        actual=gen.total_tokens,
        headers=headers,
        stream=streaming,
        in_stream_errors=frozenset(_IN_STREAM),
    )
    if not isinstance(admitted, Admitted):
        return admitted
    if not streaming:
        out: dict[str, Any] = {"generated_text": gen.text}
        if params.get("details"):
            out["details"] = {
                "finish_reason": _finish(gen),
                "generated_tokens": gen.output_tokens,
                "seed": params.get("seed"),
                "prefill": [],
                "tokens": [],
            }
        return json_response(out, headers={**admitted.headers, **_usage_headers(gen)})
    pieces = _stream_pieces(gen, params.get("seed"))
    fault = admitted.fault
    if fault is not None and fault.is_error:
        message, error_type = _IN_STREAM[fault.kind]
        error = b"data:" + orjson.dumps({"error": message, "error_type": error_type}) + b"\n\n"
        kept = [p for i, p in enumerate(pieces) if i < (fault.after or 0)]
        pieces = [*kept, Piece(error)]
        admitted = Admitted(admitted.headers, None)
    return stream(request, admitted, pieces, malformed=b"data:{not json\n\n")


async def generate_text(request: Request) -> Response:
    return await _generate(request, streaming=False)


async def generate_stream(request: Request) -> Response:
    return await _generate(request, streaming=True)
