"""The cheap upstream for bench/gateway.py: bench/_upstream_server.py's canned answers, with the
stream chosen by the request body (as a gateway sends it) and an optional pace between chunks.

A raw ASGI app (no framework) on uvicorn + httptools (+ uvloop), bound to 127.0.0.1, meant to run
in its own process pinned to one core. The canned bodies are bench/_upstream_server.py's:

    POST /v1/chat/completions  {"stream": false, ...}  fixed ~640-byte OpenAI chat.completion JSON
    POST /v1/chat/completions  {"stream": true, ...}   30 SSE chunk events + `data: [DONE]`
                                                       (chunked; one ASGI send per event)
    GET  /_stats   counters since the last /_stats: "requests" served, of which "streams",
                   distinct client sockets ("conns"), this process's "cpu" seconds, the longest
                   gap this server itself left between two chunks of one stream ("max_gap_ms",
                   its own gap: the baseline for the stall check), and "other" requests (any
                   other route: answered 404 and logged to stderr)

Pacing: a model name ending in ``-g<N>`` (e.g. ``gpt-4o-mini-g20``) makes the stream wait N ms
before every chunk after the first; the first chunk is sent at once (so time to first token
measures the path, not the pace). Non-streamed answers are never delayed. A paced chunk carries
the moment this server sent it at the start of its text (``"content":"@t<perf_counter>|..."``):
the client compares each gap it sees with the upstream's own gap between the same two chunks.

Run: python bench/_gateway_upstream.py PORT [CPU]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import orjson
from _upstream_server import _JSON_HEADERS, _SSE_HEADERS, BODY, EVENTS


class _Stats:
    requests = 0
    streams = 0
    conns: set[object] = set()
    cpu0 = time.process_time()
    max_gap = 0.0
    other = 0  # requests to any other route (counted, answered 404)


_state = _Stats()
_CONTENT = b'"content":"'
# Each chunk split where its send time goes (the start of its delta's text), [DONE] excluded.
_STAMPABLE = [
    (ev[: ev.index(_CONTENT) + len(_CONTENT)], ev[ev.index(_CONTENT) + len(_CONTENT) :])
    for ev in EVENTS[:-1]
]
_gaps: dict[str, float] = {}


def _gap_of(model: str) -> float:
    gap = _gaps.get(model)
    if gap is None:
        head, sep, tail = model.rpartition("-g")
        gap = int(tail) / 1000 if sep and tail.isdigit() else 0.0
        _gaps[model] = gap
    return gap


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    parts = []
    more = True
    while more:
        msg = await receive()
        parts.append(msg.get("body", b""))
        more = msg.get("more_body", False)

    if scope["path"] == "/_stats":
        now = time.process_time()
        out = json.dumps(
            {
                "requests": _state.requests,
                "streams": _state.streams,
                "conns": len(_state.conns),
                "cpu": now - _state.cpu0,
                "max_gap_ms": _state.max_gap * 1000,
                "other": _state.other,
            }
        ).encode()
        _state.requests, _state.streams, _state.conns = 0, 0, set()
        _state.cpu0, _state.max_gap, _state.other = now, 0.0, 0
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        await send({"type": "http.response.body", "body": out})
        return

    if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
        _state.other += 1
        print("upstream: unexpected", scope["method"], scope["path"], file=sys.stderr)
        await send({"type": "http.response.start", "status": 404, "headers": _JSON_HEADERS[:1]})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    body = orjson.loads(b"".join(parts))
    _state.requests += 1
    _state.conns.add(scope.get("client"))
    if body.get("stream"):
        _state.streams += 1
        gap = _gap_of(body.get("model", ""))
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if gap:
            clock = time.perf_counter
            last = clock()
            worst = 0.0
            for i, (head, tail) in enumerate(_STAMPABLE):
                if i:
                    await asyncio.sleep(gap)
                now = clock()
                ev = b"%s@t%.6f|%s" % (head, now, tail)
                await send({"type": "http.response.body", "body": ev, "more_body": True})
                if i and now - last > worst:
                    worst = now - last
                last = now
            await send({"type": "http.response.body", "body": EVENTS[-1], "more_body": True})
            if worst > _state.max_gap:
                _state.max_gap = worst
        else:
            for ev in EVENTS:
                await send({"type": "http.response.body", "body": ev, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        os.sched_setaffinity(0, {int(sys.argv[2])})
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
        server_header=False,
        date_header=False,
        timeout_keep_alive=120,
    )


if __name__ == "__main__":
    main()
