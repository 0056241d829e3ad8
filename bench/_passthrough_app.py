"""A bare pass-through gateway, the floor for bench/gateway.py (`--bare`): no features at all.

    python bench/_passthrough_app.py --port P --upstream http://127.0.0.1:U/v1 --cpu 0

Raw ASGI on uvicorn + httptools + uvloop, one aiohttp session to the upstream, orjson: read the
body, swap the model name, POST it upstream, answer with the upstream's bytes (streams relayed
piece by piece). No auth, no validation, no logging. What every aiwire feature is measured
against ("for scale" in the issue). Accepts and ignores bench/_gateway_app.py's other flags.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--store-dir", default="")
    ap.add_argument("--gaps", default="")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    import aiohttp
    import orjson
    import uvicorn

    url = args.upstream.rstrip("/") + "/chat/completions"
    session: aiohttp.ClientSession | None = None
    json_headers = [(b"content-type", b"application/json")]
    sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    if session is not None:
                        await session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/health/ready":
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        data = orjson.loads(body)
        data["model"] = data["model"].replace("bench", "gpt-4o-mini")
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        async with session.post(url, data=orjson.dumps(data), headers=headers) as resp:
            if data.get("stream"):
                await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
                async for piece in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                out = await resp.read()
                await send({"type": "http.response.start", "status": 200, "headers": json_headers})
                await send({"type": "http.response.body", "body": out})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=4096,
        server_header=False,
        timeout_keep_alive=120,
    )


if __name__ == "__main__":
    main()
