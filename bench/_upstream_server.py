"""A deliberately cheap upstream stand-in for bench/upstream_http.py.

A raw ASGI app (no framework) served by uvicorn on 127.0.0.1, meant to run in its own process
pinned to one core, so that the *client* is what the benchmark measures.

    POST /v1/chat/completions           fixed ~600-byte OpenAI chat.completion JSON
    POST /v1/chat/completions?stream=1  30 SSE `data:` chunk events, then `data: [DONE]`
                                        (chunked transfer encoding, one ASGI send per event)
    GET  /_stats                        {"requests", "conns", "cpu"} since the last /_stats call:
                                        requests served, distinct client sockets seen, and this
                                        process's CPU seconds (to show whether the server saturated)

The request body is read in full and discarded. Run: python bench/_upstream_server.py PORT [CPU]
"""

from __future__ import annotations

import json
import os
import sys
import time

_COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000000",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_0123456789",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": (
                    "Sure. Here is a short answer to your question, padded so the whole body is "
                    "about the size of a typical small completion: the quick brown fox jumps."
                ),
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 212,
        "completion_tokens": 48,
        "total_tokens": 260,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}
BODY = json.dumps(_COMPLETION, separators=(",", ":")).encode()

N_EVENTS = 30


def _chunk(i: int) -> bytes:
    delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f" token{i:03d}"}
    finish = "stop" if i == N_EVENTS - 1 else None
    obj = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


EVENTS = [_chunk(i) for i in range(N_EVENTS)] + [b"data: [DONE]\n\n"]

_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class _Stats:
    requests = 0
    conns: set[object] = set()
    cpu0 = time.process_time()


_state = _Stats()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # Drain the request body.
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)

    if scope["path"] == "/_stats":
        now = time.process_time()
        out = json.dumps(
            {
                "requests": _state.requests,
                "conns": len(_state.conns),
                "cpu": now - _state.cpu0,
            }
        ).encode()
        _state.requests, _state.conns, _state.cpu0 = 0, set(), now
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        await send({"type": "http.response.body", "body": out})
        return

    _state.requests += 1
    _state.conns.add(scope.get("client"))
    if scope["query_string"] == b"stream=1":
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        for ev in EVENTS:
            await send({"type": "http.response.body", "body": ev, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    if len(sys.argv) > 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(sys.argv[2])})
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=http,
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
