"""Pacing benchmark: a burst far above a provider's rate limit, through the gateway.

    .venv/bin/python bench/pacing.py [--requests 1000] [--rpm 300] [--tpm 50000] [--learned]

The simulator plays an OpenAI deployment limited to ``--rpm``/``--tpm`` (continuous-refill
buckets, full at the start, like OpenAI's); the gateway's deployment is configured with the
same limits (or, with ``--learned``, none: pacing learns them from the rate-limit headers).
``--requests`` are sent at once. Reported: time to complete vs the theoretical minimum
(the bucket's capacity at once, then capacity/60 per second), the share of upstream calls the
simulator refused with 429, and the client-visible statuses. Target (issue 4): >= 95 % of the
allowed rate with < 1 % of upstream calls answered 429.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter

import httpx

from aiwire.config import Config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.simulator.config import ModelLimit

MASTER = "sk-aiwire-pacing-bench-0000"


async def burst(url: str, n: int) -> tuple[list[int], list[float]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        start = time.perf_counter()

        async def one(i: int) -> tuple[int, float]:
            r = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "paced",
                    "messages": [{"role": "user", "content": f"Summarise ticket {i} in a line"}],
                    "max_tokens": 60,
                },
                headers={"authorization": f"Bearer {MASTER}"},
            )
            return r.status_code, time.perf_counter() - start

        results = await asyncio.gather(*(one(i) for i in range(n)))
    return [s for s, _ in results], [t for _, t in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rpm", type=int, default=300)
    ap.add_argument("--tpm", type=int, default=50_000)
    ap.add_argument("--learned", action="store_true", help="configure no limits: learn them")
    args = ap.parse_args()

    sim_config = SimulatorConfig(
        tokens_per_second=0, limits={"gpt-4o-mini": ModelLimit(rpm=args.rpm, tpm=args.tpm)}
    )
    deployment: dict[str, object] = {"name": "paced", "provider": "sim", "model": "gpt-4o-mini"}
    if not args.learned:
        deployment |= {"rpm": args.rpm, "tpm": args.tpm}
    with SimulatorServer(sim_config) as sim, tempfile.TemporaryDirectory() as tmp:
        config = Config.from_dict(
            {
                "providers": {
                    "sim": {"type": "openai", "base_url": f"{sim.url}/v1",
                            "api_key": Secret("sim-key", "bench")}
                },
                "models": [deployment],
                "router": {"retries": 2, "max_queue_wait": 900},
            },
            source="bench",
        )  # fmt: skip
        parts = build_gateway(config, store_url=f"sqlite:///{tmp}/a.db", master_key=Secret(MASTER))
        with BackgroundServer(parts.gateway, lifespan="on") as gw:
            started = time.perf_counter()
            statuses, times = asyncio.run(burst(gw.url, args.requests))
            elapsed = time.perf_counter() - started
        counts = sim.app.sim.limiter.counts  # type: ignore[attr-defined]
    admitted = counts[("gpt-4o-mini", "admitted")]
    refused = counts[("gpt-4o-mini", "refused")]
    capacity = args.rpm
    theory = max(0.0, (args.requests - capacity) * 60.0 / args.rpm)
    ok = statuses.count(200)
    rate = theory / max(times) if theory else 1.0
    upstream = admitted + refused
    share_429 = refused / upstream if upstream else 0.0
    print(f"pacing ({'learned' if args.learned else 'configured'} limits): {args.requests} "
          f"requests at once against {args.rpm} RPM / {args.tpm} TPM")  # fmt: skip
    print(f"  completed {ok}/{args.requests} (statuses {dict(Counter(statuses))}) in "
          f"{max(times):.1f} s (wall {elapsed:.1f} s); theoretical minimum {theory:.1f} s")  # fmt: skip
    print(f"  achieved {100 * rate:.1f} % of the allowed rate")
    print(f"  upstream calls: {upstream}, answered 429: {refused} ({100 * share_429:.2f} %)")
    target = rate >= 0.95 and share_429 < 0.01 and ok == args.requests
    print(
        f"  target (>= 95 % of the rate, < 1 % 429s, all complete): {'PASS' if target else 'FAIL'}"
    )
    sys.exit(0 if target else 1)


if __name__ == "__main__":
    main()
