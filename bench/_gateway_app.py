"""The aiwire gateway as its own process, for bench/gateway.py.

    AIWIRE_MASTER_KEY=... python bench/_gateway_app.py --port P --upstream http://127.0.0.1:U/v1 \
        --cpu 0 --store-dir DIR [--gaps 20,100]

Pins itself (and so every thread it starts later: the aiosqlite thread of the log writer) to one
core, then serves ``aiwire.server.build.build_gateway`` on uvicorn: httptools + uvloop when
installed, lifespan on (migrations, the log writer), access log off, one worker, in-process.

Config: one provider ``type: openai`` at the upstream; model ``bench`` -> upstream
``gpt-4o-mini``, and ``bench-g<N>`` -> ``gpt-4o-mini-g<N>`` for each pace N (ms between stream
chunks, see bench/_gateway_upstream.py); router retries 0. Store: SQLite file in --store-dir with
the request-log writer on (part of the real hot path). Master key from $AIWIRE_MASTER_KEY.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT/v1")
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--store-dir", required=True)
    ap.add_argument("--gaps", default="", help="comma list of stream paces (ms) to expose")
    args = ap.parse_args()

    # First, before any thread exists: every later thread inherits the affinity.
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    import importlib.util

    import uvicorn

    from aiwire.config import Config
    from aiwire.secrets import Secret
    from aiwire.server.app import GatewaySettings
    from aiwire.server.build import build_gateway

    models = [{"name": "bench", "provider": "upstream", "model": "gpt-4o-mini"}]
    for gap in filter(None, args.gaps.split(",")):
        models.append(
            {"name": f"bench-g{gap}", "provider": "upstream", "model": f"gpt-4o-mini-g{gap}"}
        )
    config = Config.from_dict(
        {
            "providers": {
                "upstream": {
                    "type": "openai",
                    "base_url": args.upstream,
                    "api_key": Secret("sk-bench-upstream", "bench"),
                }
            },
            "models": models,
            "router": {"retries": 0},
        },
        source="bench",
    )
    master = os.environ.get("AIWIRE_MASTER_KEY")
    if not master:
        sys.exit("set AIWIRE_MASTER_KEY")
    store_url = f"sqlite:///{os.path.join(args.store_dir, 'aiwire.db')}"
    parts = build_gateway(
        config,
        store_url=store_url,
        master_key=Secret(master, "master"),
        settings=GatewaySettings(freeze_gc=True),  # as `aiwire serve` runs it
    )

    uvicorn.run(
        parts.gateway,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_level="warning",
        workers=1,
        backlog=4096,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=120,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
