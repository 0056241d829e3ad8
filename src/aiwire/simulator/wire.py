"""HTTP plumbing shared by the three protocol front ends: JSON bodies, streamed bodies with
pacing and mid-stream faults, request ids, and dropping a connection on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aiwire.simulator.engine import count_tokens
from aiwire.simulator.faults import Fault

RAW_SEND_KEY = "aiwire.sim.raw_send"


class BadRequestBody(ValueError):
    """The request body is not a JSON object."""


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + secrets.token_hex(n // 2 + 1)[:n]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, dict(headers or {}), "application/json")


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequestBody(f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestBody("The request body must be a JSON object.")
    return body


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


@dataclass(frozen=True)
class Piece:
    """One unit of a streamed body. ``content`` pieces count for ``after=K`` and are paced."""

    data: bytes
    content: bool = False
    text: str = ""


class NoResponse(Response):
    """Sends nothing: used after the connection was dropped on purpose."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


async def drop_connection(scope: Scope) -> bool:
    """Close the client's TCP connection now. True when done; False when the server does not
    expose its transport (the caller then raises so the server aborts the response)."""
    send = scope.get(RAW_SEND_KEY)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "close"):
        return False
    transport.close()
    for _ in range(20):  # let connection_lost run so the server treats the cycle as finished
        await asyncio.sleep(0)
        if getattr(send.__self__, "disconnected", True):  # type: ignore[union-attr]
            break
    return True


class ConnectionDropped(RuntimeError):
    """Raised inside a body iterator to abort a response when the transport is unreachable."""


def stream_response(
    request: Request,
    pieces: list[Piece],
    *,
    fault: Fault | None,
    tokens_per_second: float,
    hang: asyncio.Event,
    hang_seconds: float,
    headers: Mapping[str, str],
    media_type: str = "text/event-stream",
    malformed: bytes = b"data: {not json\n\n",
) -> StreamingResponse:
    """Stream ``pieces``, pacing content pieces and applying a mid-stream fault."""

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        trigger = fault.stream_after() if fault is not None else None
        for piece in pieces:
            if piece.content and trigger is not None and sent == trigger:
                assert fault is not None
                if fault.kind == "hang":
                    await wait_or_shutdown(hang, hang_seconds)
                    trigger = None
                elif fault.kind == "malformed":
                    yield malformed
                    return
                elif fault.kind == "drop":
                    if await drop_connection(request.scope):
                        return
                    raise ConnectionDropped("connection dropped by the simulator")
            if piece.content:
                sent += 1
                if tokens_per_second > 0:
                    await asyncio.sleep(max(1, count_tokens(piece.text)) / tokens_per_second)
            yield piece.data

    merged = {"cache-control": "no-cache", **headers}
    return StreamingResponse(body(), 200, merged, media_type)


async def wait_or_shutdown(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, cut short when the server shuts down."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


def split_text(text: str, max_len: int = 16) -> list[str]:
    """Stream pieces of ``text``: words with their trailing space, long runs cut at ``max_len``."""
    pieces: list[str] = []
    for word in re.findall(r"\s*\S+\s*|\s+", text):
        pieces += [word[i : i + max_len] for i in range(0, len(word), max_len)]
    return pieces


def split_json(text: str, parts: int = 3) -> list[str]:
    """``text`` in at least two fragments (for streamed tool-call arguments)."""
    size = max(1, -(-len(text) // max(2, parts)))
    out = [text[i : i + size] for i in range(0, len(text), size)]
    return out if len(out) >= 2 else [*out, ""] if out else ["", ""]
