"""Benchmark the upstream HTTP client: httpx vs aiohttp vs httpx-over-aiohttp.

    /work/venv/bin/python bench/upstream_http.py [--quick] [--loops asyncio,uvloop]
                                                 [--clients httpx,aiohttp,httpx+aiohttp,httpx2]
                                                 [--reps 3] [--scale 1.0]

An upstream stand-in (bench/_upstream_server.py: raw ASGI app on uvicorn, 127.0.0.1) runs in a
separate process pinned to CPU 0; this process pins itself to CPU 1. For each event loop,
workload and repetition, every client runs a fixed number of requests (see CELLS; clients
interleaved within a repetition, so drift hits all of them alike) after the same warm-up, in a
fresh event loop with a fresh client. Each request's status must be 200 and its body must be
read in full and checked (JSON parsed, or exactly 31 SSE `data:` lines ending in `[DONE]`);
anything else is counted as an error. Reported per cell: the median over the repetitions of
requests/s, p50 and p99 latency, and this process's CPU seconds (time.process_time, user+sys)
per 1000 requests, plus the server's CPU use (to show whether the server, not the client,
was the limit) and how many distinct client connections the server saw.

Clients, configured as aiwire's provider adapters configure httpx:
  httpx          httpx.AsyncClient(limits=Limits(max_connections=1000,
                                   max_keepalive_connections=100))  (default httpcore transport)
  aiohttp        aiohttp.ClientSession(connector=TCPConnector(limit=1000))
  httpx+aiohttp  httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport(limits=same))
  httpx2         httpx2.AsyncClient(limits=same)  (pydantic's httpx fork, for reference)
Clients or uvloop that are not installed are skipped. Results and findings: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
SERVER = HERE / "_upstream_server.py"

N_DATA_LINES = 31  # 30 chunks + [DONE]

# ~1 KB OpenAI-style chat request body, serialised once (the same bytes for every client).
REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 6},
        {
            "role": "user",
            "content": (
                "Summarise the following paragraph in one sentence, keeping the key facts. "
                + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. " * 9
            ),
        },
    ],
    "temperature": 0.2,
    "max_tokens": 256,
    "user": "bench-user-0001",
}
BODY = orjson.dumps(REQUEST)
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-000000000000"}

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
HTTPX_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=10.0)

# (workload, concurrency, warm-up requests, requests per measurement by client). Counts are
# fixed, sized from trial runs so one measurement takes ~1.5-3 s on the 2-core box (3 reps, so a
# cell is ~5-9 s): the default httpx pool is 5-30x slower, so it gets fewer requests. Warm-up is
# the same for every client: at least one request per worker, so every connection is open.
Counts = dict[str, int]
CELLS: list[tuple[str, int, int, Counts]] = [
    ("json", 1, 100, {"httpx": 1000, "httpx+aiohttp": 1500, "httpx2": 1500, "*": 2500}),
    ("json", 16, 100, {"httpx": 600, "httpx+aiohttp": 3500, "httpx2": 1500, "*": 7000}),
    ("json", 64, 128, {"httpx": 300, "httpx+aiohttp": 3500, "httpx2": 1500, "*": 7000}),
    ("json", 256, 512, {"httpx": 400, "httpx+aiohttp": 3000, "httpx2": 800, "*": 7000}),
    ("sse", 16, 100, {"httpx": 400, "httpx+aiohttp": 1800, "httpx2": 800, "*": 2500}),
    ("sse", 64, 128, {"httpx": 150, "httpx+aiohttp": 1800, "httpx2": 600, "*": 2500}),
]


def count_for(counts: Counts, client: str) -> int:
    return counts.get(client, counts["*"])


QUICK_FACTOR = 0.12


class BadResponse(Exception):
    pass


# --- clients ------------------------------------------------------------------------------------


def make_client(kind: str) -> Any:
    if kind == "httpx":
        return httpx.AsyncClient(limits=LIMITS, timeout=HTTPX_TIMEOUT, follow_redirects=False)
    if kind == "httpx+aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(
            transport=AiohttpTransport(limits=LIMITS),
            timeout=HTTPX_TIMEOUT,
            follow_redirects=False,
        )
    if kind == "httpx2":  # pydantic's httpx fork (installed here as a dependency of openai etc.)
        import httpx2

        return httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100),
            timeout=httpx2.Timeout(connect=10.0, read=120.0, write=120.0, pool=10.0),
            follow_redirects=False,
        )
    if kind == "aiohttp":
        import aiohttp

        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=120),
        )
    raise ValueError(kind)


async def close_client(kind: str, client: Any) -> None:
    if kind == "aiohttp":
        await client.close()
    else:
        await client.aclose()


def make_op(kind: str, client: Any, workload: str, base: str) -> Callable[[], Awaitable[None]]:
    url = f"{base}/v1/chat/completions"
    surl = f"{url}?stream=1"

    if kind in ("httpx", "httpx+aiohttp", "httpx2"):

        async def httpx_json() -> None:
            r = await client.post(url, content=BODY, headers=HEADERS)
            if r.status_code != 200:
                raise BadResponse(f"status {r.status_code}")
            if orjson.loads(r.content)["choices"][0]["finish_reason"] != "stop":
                raise BadResponse("bad body")

        async def httpx_sse() -> None:
            async with client.stream("POST", surl, content=BODY, headers=HEADERS) as r:
                if r.status_code != 200:
                    raise BadResponse(f"status {r.status_code}")
                n, last = 0, ""
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        n += 1
                        last = line
            if n != N_DATA_LINES or last != "data: [DONE]":
                raise BadResponse(f"stream: {n} data lines, last {last[:20]!r}")

        return httpx_json if workload == "json" else httpx_sse

    async def aiohttp_json() -> None:
        async with client.post(url, data=BODY, headers=HEADERS) as r:
            if r.status != 200:
                raise BadResponse(f"status {r.status}")
            if orjson.loads(await r.read())["choices"][0]["finish_reason"] != "stop":
                raise BadResponse("bad body")

    async def aiohttp_sse() -> None:
        async with client.post(surl, data=BODY, headers=HEADERS) as r:
            if r.status != 200:
                raise BadResponse(f"status {r.status}")
            n, last = 0, ""
            async for raw in r.content:  # line by line, like httpx's aiter_lines
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    n += 1
                    last = line
        if n != N_DATA_LINES or last != "data: [DONE]":
            raise BadResponse(f"stream: {n} data lines, last {last[:20]!r}")

    return aiohttp_json if workload == "json" else aiohttp_sse


# --- driver -------------------------------------------------------------------------------------


async def drive(
    op: Callable[[], Awaitable[None]], conc: int, n: int
) -> tuple[list[float], Counter[str]]:
    """Run exactly ``n`` requests with ``conc`` workers; return latencies of the good ones."""
    remaining = n
    lat: list[float] = []
    errors: Counter[str] = Counter()
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = perf()
            try:
                await op()
            except Exception as exc:  # counted, reported
                errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
            else:
                lat.append(perf() - t)

    await asyncio.gather(*(worker() for _ in range(min(conc, n))))
    return lat, errors


async def server_stats(port: int) -> dict[str, Any]:
    """GET /_stats over a raw socket, so no client under test is involved."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /_stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    stats: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return stats


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    cpu_per_1k: float
    ok: int
    errors: Counter[str]
    srv_cpu_pct: float
    conns: int
    elapsed: float


async def one_run(kind: str, workload: str, conc: int, n: int, warm: int, port: int) -> Run:
    client = make_client(kind)
    try:
        op = make_op(kind, client, workload, f"http://127.0.0.1:{port}")
        _, werr = await drive(op, conc, warm)
        if werr:
            print(f"    warm-up errors ({kind}): {dict(werr)}", file=sys.stderr)
        await server_stats(port)  # reset the server's counters
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        lat, errors = await drive(op, conc, n)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        srv = await server_stats(port)
    finally:
        await close_client(kind, client)
    lat.sort()
    ok = len(lat)
    if srv["requests"] != n:
        errors[f"server saw {srv['requests']} requests, expected {n}"] += 1
    return Run(
        rps=ok / elapsed,
        p50=lat[ok // 2] * 1e3 if ok else float("nan"),
        p99=lat[min(ok - 1, int(ok * 0.99))] * 1e3 if ok else float("nan"),
        cpu_per_1k=cpu / n * 1000,
        ok=ok,
        errors=errors,
        srv_cpu_pct=100 * srv["cpu"] / elapsed,
        conns=srv["conns"],
        elapsed=elapsed,
    )


def run_in_loop(loop_kind: str, coro: Coroutine[Any, Any, Run]) -> Run:
    """Run one measurement in a fresh event loop of the given kind."""
    factory = None
    if loop_kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# --- server process -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(SERVER), str(port)] + ([str(cpu)] if cpu is not None else [])
    proc = subprocess.Popen(args)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"upstream server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("upstream server did not start")


# --- report -------------------------------------------------------------------------------------


@dataclass
class Cell:
    loop: str
    workload: str
    conc: int
    n: int
    client: str
    runs: list[Run] = field(default_factory=list)


def scaled(n: int, conc: int, factor: float) -> int:
    return max(conc * 2, int(n * factor))


def versions() -> str:
    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    pkgs = ["httpx", "httpcore", "h11", "anyio", "aiohttp", "httpx-aiohttp", "uvloop"]
    srv = ["uvicorn", "httptools"]
    return (
        f"nproc {os.cpu_count()}, Python {platform.python_version()} ({platform.machine()}), "
        + ", ".join(f"{p} {v(p)}" for p in pkgs)
        + "; server: "
        + ", ".join(f"{p} {v(p)}" for p in srv)
    )


def table(cells: list[Cell]) -> str:
    head = (
        "| loop | workload | conc | client | n | req/s | p50 ms | p99 ms | CPU s/1k req "
        "| CPU vs httpx | srv CPU % | conns | errors |\n"
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    base: dict[tuple[str, str, int], float] = {}
    for c in cells:

        def med(f: Callable[[Run], float], runs: list[Run] = c.runs) -> float:
            return statistics.median(f(r) for r in runs)

        cpu = med(lambda r: r.cpu_per_1k)
        key = (c.loop, c.workload, c.conc)
        if c.client == "httpx":
            base[key] = cpu
        rel = f"{cpu / base[key]:.2f}x" if key in base else "-"
        cpu_lo = min(r.cpu_per_1k for r in c.runs)
        cpu_hi = max(r.cpu_per_1k for r in c.runs)
        errs = sum(sum(r.errors.values()) for r in c.runs)
        wl = "non-stream" if c.workload == "json" else "stream (31 SSE)"
        rows.append(
            f"| {c.loop} | {wl} | {c.conc} | {c.client} | {c.n} | {med(lambda r: r.rps):,.0f} "
            f"| {med(lambda r: r.p50):.2f} | {med(lambda r: r.p99):.2f} "
            f"| {cpu:.3f} ({cpu_lo:.3f}–{cpu_hi:.3f}) | {rel} "
            f"| {med(lambda r: r.srv_cpu_pct):.0f} | {int(med(lambda r: r.conns))} | {errs} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="small counts, 1 rep, asyncio loop only: < 1 min"
    )
    ap.add_argument("--loops", default=None, help="comma list of asyncio,uvloop")
    ap.add_argument("--clients", default="httpx,aiohttp,httpx+aiohttp,httpx2")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    ap.add_argument("--only", default=None, help="e.g. json:64,sse:16 to run some cells only")
    args = ap.parse_args()

    loops = args.loops.split(",") if args.loops else ["asyncio"]
    if args.loops is None and not args.quick:
        try:
            import uvloop  # noqa: F401

            loops.append("uvloop")
        except ImportError:
            print("uvloop not installed: measuring the default asyncio loop only", file=sys.stderr)
    clients = args.clients.split(",")
    if "httpx+aiohttp" in clients:
        try:
            import httpx_aiohttp  # noqa: F401
        except ImportError:
            print("httpx-aiohttp not installed: skipping httpx+aiohttp", file=sys.stderr)
            clients.remove("httpx+aiohttp")
    if "httpx2" in clients:
        try:
            import httpx2  # noqa: F401
        except ImportError:
            print("httpx2 not installed: skipping it", file=sys.stderr)
            clients.remove("httpx2")
    reps = args.reps or (1 if args.quick else 3)
    factor = args.scale * (QUICK_FACTOR if args.quick else 1.0)
    cells_spec = CELLS
    if args.only:
        want = {(w, int(c)) for w, c in (x.split(":") for x in args.only.split(","))}
        cells_spec = [c for c in CELLS if (c[0], c[1]) in want]

    srv_cpu: int | None = None
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        srv_cpu = cpus[0]
        os.sched_setaffinity(0, {cpus[1]})
        pin = f"server pinned to CPU {cpus[0]}, client to CPU {cpus[1]}"
    else:
        pin = "not pinned (fewer than 2 CPUs available)"
    port = free_port()
    server = start_server(port, srv_cpu)
    started = time.perf_counter()
    print(f"# {versions()}\n# {pin}; reps {reps}; loops {loops}; clients {clients}", flush=True)

    results: list[Cell] = []
    try:
        for loop_kind in loops:
            for workload, conc, warm, counts in cells_spec:
                cells = [
                    Cell(loop_kind, workload, conc, scaled(count_for(counts, k), conc, factor), k)
                    for k in clients
                ]
                for rep in range(reps):
                    for cell in cells:
                        r = run_in_loop(
                            loop_kind, one_run(cell.client, workload, conc, cell.n, warm, port)
                        )
                        cell.runs.append(r)
                        print(
                            f"  {loop_kind:7} {workload:4} c={conc:<3} {cell.client:13} "
                            f"rep {rep + 1}: {r.rps:8,.0f} req/s  p50 {r.p50:7.2f} ms  "
                            f"p99 {r.p99:7.2f} ms  cpu {r.cpu_per_1k:.3f} s/1k  "
                            f"srv {r.srv_cpu_pct:3.0f}%  conns {r.conns}  {r.elapsed:.1f}s"
                            + (f"  ERRORS {dict(r.errors)}" if r.errors else ""),
                            file=sys.stderr,
                            flush=True,
                        )
                results.extend(cells)
    finally:
        server.terminate()
        server.wait(timeout=10)

    total = time.perf_counter() - started
    print()
    print(table(results))
    print()
    print(
        f"Median of {reps} run(s) per cell; `n` = requests per run (after a warm-up of "
        f"max(100, 2 x conc) requests, the same for every client). "
        f"CPU = client process user+sys CPU seconds per 1000 requests (min–max over runs). "
        f"srv CPU % = upstream stand-in's CPU use during the run (100 = its core saturated). "
        f"conns = distinct client connections the server saw in the run. "
        f"Total wall time {total:.0f} s."
    )


if __name__ == "__main__":
    main()
