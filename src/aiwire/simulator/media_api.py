"""OpenAI image generation and speech to text (reference §1.9, §1.10), plus Gemini image output
(``generateContent`` with ``responseModalities: [IMAGE]``), offline.

Images are small real PNGs whose colour comes from the prompt, so the same prompt gives the same
bytes. A transcript is deterministic too: words drawn from the audio's hash, about 2.5 per
second of audio, whose length is read from a WAV/FLAC header (else guessed from the size at
128 kbit/s). GPT Image models answer with ``b64_json`` and a token usage, ``dall-e-*`` with a
``url`` (a data URL here) or ``b64_json`` and no usage; ``whisper-1`` reports the duration it
bills, the gpt-4o transcribe models their tokens. Faults, latency and rate limits apply as on
every other route (:func:`aiwire.simulator.gate.admit`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiwire import errors as aiwire_errors
from aiwire.providers import multipart
from aiwire.providers.audio import duration_seconds
from aiwire.simulator.engine import count_tokens
from aiwire.simulator.errors import Protocol, auth_error, invalid_request, openai_error
from aiwire.simulator.gate import Admitted, admit
from aiwire.simulator.wire import BadRequestBody, json_response, new_id, read_json

#: OpenAI's upload limit for a transcription file.
MAX_AUDIO_BYTES = 25 * 1024 * 1024
_SIZES = {"auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024"}
_SIZES |= {"1024x1792"}
#: Image output tokens per image by quality (GPT Image, 1024x1024; larger sizes scale by area).
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}
_WORDS = [
    "the", "quarterly", "numbers", "look", "good", "and", "the", "team", "agreed", "to",
    "ship", "the", "new", "release", "next", "week", "after", "a", "final", "review", "of",
    "the", "open", "tickets", "with", "the", "support", "staff",
]  # fmt: skip


def _headers() -> dict[str, str]:
    return {"x-request-id": new_id("req_", 32), "openai-processing-ms": "9"}


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return request.headers.get("api-key") or None


# --- images -----------------------------------------------------------------------------------


def png(seed: bytes, side: int = 8) -> bytes:
    """A ``side`` x ``side`` PNG of one colour taken from ``seed``."""
    r, g, b = hashlib.sha256(seed).digest()[:3]
    row = b"\x00" + bytes((r, g, b)) * side
    raw = zlib.compress(row * side)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _image_tokens(quality: str, size: str) -> int:
    base = _IMAGE_TOKENS.get(quality, _IMAGE_TOKENS["auto"])
    w, _, h = size.partition("x")
    if w.isdigit() and h.isdigit():
        return math.ceil(base * int(w) * int(h) / (1024 * 1024))
    return base


async def _images(request: Request, protocol: Protocol, deployment: str | None) -> Response:
    headers = _headers()
    key = _api_key(request)
    if key is None:
        return auth_error(protocol, headers, missing=True)
    try:
        body = await read_json(request)
    except BadRequestBody as exc:
        return invalid_request(protocol, str(exc), None, headers)
    model = deployment or body.get("model") or "dall-e-2"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return invalid_request(protocol, "Missing required parameter: 'prompt'.", "prompt", headers)
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 10:
        return invalid_request(protocol, "Invalid 'n': expected 1 to 10.", "n", headers)
    size = body.get("size") or "auto"
    if size not in _SIZES:
        return invalid_request(
            protocol, f"Invalid value: '{size}'. Supported values are: {sorted(_SIZES)}", "size"
        )
    gpt_image = str(model).startswith(("gpt-image", "chatgpt-image"))
    fmt = body.get("response_format")
    if gpt_image and fmt is not None:
        return invalid_request(
            protocol,
            "Unknown parameter: 'response_format'. GPT Image models always return b64_json.",
            "response_format",
            headers,
        )
    quality = str(body.get("quality") or "auto")
    prompt_tokens = count_tokens(prompt)
    output_tokens = n * _image_tokens(quality, size) if gpt_image else 0
    admitted = await admit(
        request,
        protocol,
        str(model),
        api_key=key,
        estimate=prompt_tokens + output_tokens,
        actual=prompt_tokens + output_tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    data = []
    for i in range(n):
        encoded = base64.b64encode(png(f"{prompt}\0{i}".encode())).decode()
        if fmt == "url":
            data.append({"url": f"data:image/png;base64,{encoded}"})
        else:
            data.append({"b64_json": encoded, "revised_prompt": prompt})
    out: dict[str, Any] = {"created": int(time.time()), "data": data}
    if gpt_image:
        out.update(
            background=body.get("background") or "opaque",
            output_format=body.get("output_format") or "png",
            quality=quality if quality != "auto" else "medium",
            size=size if size != "auto" else "1024x1024",
            usage={
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        )
    return json_response(out, headers=admitted.headers)


async def images(request: Request) -> Response:
    return await _images(request, "openai", None)


async def azure_images(request: Request) -> Response:
    return await _images(request, "azure", request.path_params["deployment"])


# --- speech to text ---------------------------------------------------------------------------


def transcript(audio: bytes, seconds: float) -> str:
    """Deterministic words for ``audio``: about 2.5 per second, at least three."""
    seed = hashlib.sha256(audio).digest()
    count = max(3, round(seconds * 2.5))
    words = [_WORDS[(seed[i % 32] + i) % len(_WORDS)] for i in range(count)]
    return " ".join(words).capitalize() + "."


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _subtitles(text: str, seconds: float, fmt: str) -> str:
    sep = "," if fmt == "srt" else "."
    cue = f"{_timestamp(0, sep)} --> {_timestamp(seconds, sep)}\n{text}\n"
    return f"1\n{cue}\n" if fmt == "srt" else f"WEBVTT\n\n{cue}\n"


def _form(parts: list[multipart.Part]) -> tuple[dict[str, str], dict[str, list[str]], Any]:
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    upload = None
    for part in parts:
        if part.filename is not None:
            upload = part
        elif part.name.endswith("[]"):
            lists.setdefault(part.name[:-2], []).append(part.text)
        else:
            fields[part.name] = part.text
    return fields, lists, upload


async def _transcriptions(request: Request, protocol: Protocol, deployment: str | None) -> Response:
    headers = _headers()
    key = _api_key(request)
    if key is None:
        return auth_error(protocol, headers, missing=True)
    body = await request.body()
    if len(body) > MAX_AUDIO_BYTES + 65536:
        return openai_error(
            413,
            f"Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded.",
            "invalid_request_error",
            "file",
            None,
            headers,
        )
    try:
        parts = multipart.parse(body, request.headers.get("content-type"))
    except aiwire_errors.BadRequestError as exc:
        return invalid_request(protocol, exc.message, None, headers)
    fields, lists, upload = _form(parts)
    if upload is None:
        return invalid_request(protocol, "Missing required parameter: 'file'.", "file", headers)
    model = deployment or fields.get("model")
    if not model:
        return invalid_request(protocol, "you must provide a model parameter", "model", headers)
    fmt = fields.get("response_format") or "json"
    whisper = model.startswith("whisper")
    allowed = {"json", "text", "srt", "verbose_json", "vtt"} if whisper else {"json", "text"}
    if fmt not in allowed:
        return invalid_request(
            protocol,
            f"response_format '{fmt}' is not compatible with model '{model}'. "
            f"Use one of: {', '.join(sorted(allowed))}.",
            "response_format",
            headers,
        )
    if lists.get("timestamp_granularities") and fmt != "verbose_json":
        return invalid_request(
            protocol,
            "timestamp_granularities requires response_format=verbose_json",
            "timestamp_granularities",
            headers,
        )
    audio = upload.data
    seconds = duration_seconds(audio)
    if seconds is None:
        seconds = len(audio) / 16_000  # an unread format: 128 kbit/s
    text = transcript(audio, seconds)
    output_tokens = count_tokens(text)
    audio_tokens = math.ceil(seconds * 10)
    admitted = await admit(
        request,
        protocol,
        model,
        api_key=key,
        estimate=audio_tokens + output_tokens,
        actual=audio_tokens + output_tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    if fmt == "text":
        return Response(text, 200, admitted.headers, "text/plain")
    if fmt in ("srt", "vtt"):
        return Response(_subtitles(text, seconds, fmt), 200, admitted.headers, "text/plain")
    usage: dict[str, Any]
    if whisper:
        usage = {"type": "duration", "seconds": math.ceil(seconds)}
    else:
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
        }
    out: dict[str, Any] = {"text": text, "usage": usage}
    if fmt == "verbose_json":
        out = {
            "task": "transcribe",
            "language": fields.get("language") or "english",
            "duration": round(seconds, 2),
            "text": text,
            "segments": [
                {"id": 0, "seek": 0, "start": 0.0, "end": round(seconds, 2), "text": text}
            ],
            "usage": usage,
        }
    return json_response(out, headers=admitted.headers)


async def transcriptions(request: Request) -> Response:
    return await _transcriptions(request, "openai", None)


async def azure_transcriptions(request: Request) -> Response:
    return await _transcriptions(request, "azure", request.path_params["deployment"])


# --- Gemini image output ----------------------------------------------------------------------


def wants_image(body: dict[str, Any]) -> bool:
    """Whether a ``generateContent`` body asks for image output."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    modalities = config.get("responseModalities") or config.get("response_modalities") or []
    return isinstance(modalities, list) and any(str(m).upper() == "IMAGE" for m in modalities)


def gemini_image_response(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``generateContent`` answer with one inline PNG (and a line of text)."""
    texts = [
        str(p.get("text"))
        for c in body.get("contents") or []
        if isinstance(c, dict)
        for p in c.get("parts") or []
        if isinstance(p, dict) and p.get("text")
    ]
    prompt = " ".join(texts)
    image = base64.b64encode(png(prompt.encode())).decode()
    prompt_tokens = count_tokens(prompt)
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Here is the image."},
                        {"inlineData": {"mimeType": "image/png", "data": image}},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": 1295,
            "totalTokenCount": prompt_tokens + 1295,
        },
        "modelVersion": model,
        "responseId": new_id("", 22),
    }


ROUTES = [
    Route("/v1/images/generations", images, methods=["POST"]),
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/openai/deployments/{deployment}/images/generations", azure_images, methods=["POST"]),
    Route(
        "/openai/deployments/{deployment}/audio/transcriptions",
        azure_transcriptions,
        methods=["POST"],
    ),
]
