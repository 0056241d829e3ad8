"""Gateway benchmark: what the aiwire gateway adds over a direct call, against LiteLLM's proxy.

    /work/venv/bin/python bench/gateway.py [--quick] [--litellm /work/litellm-venv/bin/litellm]
                                           [--profile] [--json OUT.json]

Processes (all on 127.0.0.1):
  upstream  bench/_gateway_upstream.py (raw ASGI on uvicorn+httptools+uvloop), pinned to CPU 1:
            canned OpenAI chat.completion JSON, or 30 SSE chunks + [DONE], optionally paced
  aiwire    bench/_gateway_app.py: build_gateway() on uvicorn (httptools, uvloop, lifespan on,
            one worker), SQLite store with the request-log writer on, router retries 0; CPU 0
  litellm   `litellm --config bench/_litellm_config.yaml --num_workers 1` from its own venv,
            no database, LITELLM_LOCAL_MODEL_COST_MAP=True, under `taskset -c 0`
  this      the load generator (aiohttp client on uvloop), pinned to CPU 1 with the upstream

Both gateways run side by side (each idle while the other is measured; the idle one's CPU use
is recorded) and the targets are interleaved per cell: direct (straight to the upstream), aiwire,
litellm, same request bytes (a ~1 KB chat request), fresh client session per cell, warm-up of
max(50, conc) requests first so every connection is open.

Phases:
  1. non-stream, concurrency 1/16/64/256: req/s, p50/p99 latency, added latency (target minus
     direct at the same concurrency), gateway CPU ms per request (utime+stime from /proc) and
     its CPU use (100 % = the gateway's core is saturated), harness CPU (load generator +
     upstream, both on CPU 1)
  2. stream (no pacing), same concurrencies: responses/s, time to first chunk p50/p99 (+ added),
     full-response p50
  3. stalls: 1 000 concurrent streams paced at 100 ms and 20 ms between chunks (`--stall-gaps`),
     each worker runs two streams; every paced chunk carries the moment the upstream sent it,
     so for each pair of consecutive chunks the client compares the gap it saw with the
     upstream's own gap between the same two chunks; a stall = a stream in which some gap is
     more than 50 ms longer than the upstream's own (also shown: the longest gap the client saw,
     the upstream's longest own gap, the harness's CPU use)
  4. soak: 100 000 requests to aiwire (concurrency 64, every 10th streamed), RSS every 10 000;
     then the request_log rows in its SQLite store are counted (the writer kept up?)
  5. (--profile) py-spy on aiwire for a saturated non-stream and stream run (top functions)

Every loop is bounded by a request count and a time cap. Full run ~10-12 min; --quick ~2 min.
Results: bench/RESULTS.md ("Gateway: aiwire vs LiteLLM proxy").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "_gateway_upstream.py"
GATEWAY_APP = HERE / "_gateway_app.py"
BARE_APP = HERE / "_passthrough_app.py"
LITELLM_CONFIG = HERE / "_litellm_config.yaml"
LITELLM_DEFAULT = "/work/litellm-venv/bin/litellm"

GATEWAY_CPU, HARNESS_CPU = 0, 1
AIWIRE_KEY = "sk-aiwire-bench-master-0000"
LITELLM_KEY = "sk-litellm-bench-master-0000"
UPSTREAM_KEY = "sk-bench-upstream"
N_DATA = 31  # 30 chunks + [DONE]
STALL = 0.050  # s: a gap this much longer than the upstream's own gap for the same two chunks
CONCS = [1, 16, 64, 256]
CLK = os.sysconf("SC_CLK_TCK")

# The same ~1 KB chat request as bench/upstream_http.py; only "model"/"stream" vary.
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. " * 6},
    {
        "role": "user",
        "content": (
            "Summarise the following paragraph in one sentence, keeping the key facts. "
            + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. " * 9
        ),
    },
]


def body_for(model: str, stream: bool, temperature: float = 0.2) -> bytes:
    """The benchmark's request; temperature 0 makes it cacheable (aiwire caches deterministic
    requests by default), 0.2 keeps every request going upstream."""
    req: dict[str, Any] = {"model": model, "messages": MESSAGES, "temperature": temperature}
    req["max_tokens"] = 256
    req["user"] = "bench-user-0001"
    if stream:
        req["stream"] = True
    return orjson.dumps(req)


class BadResponse(Exception):
    pass


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, name: str) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{name} not ready after {timeout:.0f} s ({url})")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def proc_tree(pid: int) -> list[int]:
    """pid and its descendants (LiteLLM may fork; aiwire does not)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK  # utime, stime
        except OSError:
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


@dataclass
class Target:
    name: str
    base: str  # http://127.0.0.1:PORT
    key: str
    pid: int  # the process measured (CPU, RSS)
    model: Callable[[int], str]  # pace (ms) -> model name
    slow: bool = False  # LiteLLM: fewer requests, same time caps
    sent: int = 0  # requests sent to it so far (all phases)
    bodies: dict[tuple[int, bool, float], bytes] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        # identity: LiteLLM would otherwise gzip its answers (aiohttp asks for gzip by default)
        return {
            "content-type": "application/json",
            "authorization": f"Bearer {self.key}",
            "accept-encoding": "identity",
        }

    def body(self, gap: int, stream: bool, temperature: float = 0.2) -> bytes:
        b = self.bodies.get((gap, stream, temperature))
        if b is None:
            b = self.bodies[(gap, stream, temperature)] = body_for(
                self.model(gap), stream, temperature
            )
        return b


# --- client ops ---------------------------------------------------------------------------------


def make_session(conc: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=120),
        timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=120),
        auto_decompress=False,
    )


def op_json(
    session: aiohttp.ClientSession, t: Target, cached: bool = False
) -> Callable[[], Awaitable[Any]]:
    url = t.base + "/v1/chat/completions"
    body = t.body(0, False, 0.0 if cached else 0.2)
    headers = t.headers()
    perf = time.perf_counter

    async def op() -> float:
        t0 = perf()
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            if r.status != 200:
                raise BadResponse(f"status {r.status}: {data[:80]!r}")
        if orjson.loads(data)["choices"][0]["finish_reason"] != "stop":
            raise BadResponse("bad body")
        return perf() - t0

    return op


class StreamTimes:
    """What one stream's client saw, fed each ``data:`` line as it arrives (both load
    generators use it): first chunk, longest gap, and how much longer than the upstream's own gap
    between the same two chunks any gap was (paced chunks carry their send time, see
    bench/_gateway_upstream.py)."""

    __slots__ = ("added", "first", "last", "n", "prev", "recv_prev", "sent_prev", "worst")

    def __init__(self) -> None:
        self.first = self.prev = self.worst = self.added = 0.0
        self.sent_prev = self.recv_prev = -1.0
        self.n = 0
        self.last = b""

    def line(self, line: bytes, now: float) -> None:
        if self.n == 0:
            self.first = now
        elif now - self.prev > self.worst:
            self.worst = now - self.prev
        self.prev = now
        self.n += 1
        self.last = line
        k = line.find(b"@t")
        if k >= 0:
            sent = float(line[k + 2 : line.index(b"|", k)])
            if self.sent_prev >= 0:
                self.added = max(self.added, (now - self.recv_prev) - (sent - self.sent_prev))
            self.sent_prev, self.recv_prev = sent, now

    def result(self, t0: float, end: float) -> tuple[float, float, float, float]:
        """(time to first chunk, whole stream, longest gap, most added to a gap); raises
        :class:`BadResponse` unless all chunks and ``[DONE]`` arrived."""
        if self.n < N_DATA or self.last.rstrip() != b"data: [DONE]":
            raise BadResponse(f"stream: {self.n} data lines, last {self.last[:20]!r}")
        return self.first - t0, end - t0, self.worst, self.added


def op_stream(session: aiohttp.ClientSession, t: Target, gap: int) -> Callable[[], Awaitable[Any]]:
    url = t.base + "/v1/chat/completions"
    body = t.body(gap, True)
    headers = t.headers()
    perf = time.perf_counter

    async def op() -> tuple[float, float, float, float]:
        t0 = perf()
        times = StreamTimes()
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                raise BadResponse(f"status {r.status}: {(await r.read())[:80]!r}")
            async for line in r.content:
                if line.startswith(b"data:"):
                    times.line(line, perf())
        return times.result(t0, perf())

    return op


class RawStreams:
    """Paced streams over plain asyncio sockets (the stall phase's load generator).

    At 1,000 concurrent streams the load generator shares its core with the upstream, and
    aiohttp's per-request and per-line machinery made the client itself late by tens of
    milliseconds at times, which the stall check charged to the gateway. This client writes the
    request bytes itself, decodes the chunked body with ``readline``/``readexactly`` and keeps
    its keep-alive connections in a plain list. Same request bytes, same checks and the same
    result tuple as :func:`op_stream`.
    """

    def __init__(self, t: Target) -> None:
        host, port = t.base.removeprefix("http://").split(":")
        self.addr = (host, int(port))
        self.t = t
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def op_for(self, gap: int) -> Callable[[], Awaitable[Any]]:
        body = self.t.body(gap, True)
        host, port = self.addr
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {self.t.key}\r\n"
            f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

        async def op() -> tuple[float, float, float, float]:
            return await self.stream(request)

        return op

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()

    async def stream(self, request: bytes) -> tuple[float, float, float, float]:
        perf = time.perf_counter
        t0 = perf()
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(*self.addr, limit=1 << 20)
        ok = False
        try:
            writer.write(request)
            status = await reader.readline()
            if not status.startswith(b"HTTP/1.1 200"):
                raise BadResponse(f"status line {status[:40]!r}")
            chunked = False
            while (header := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if not chunked:
                raise BadResponse("stream answer is not chunked")
            times = StreamTimes()
            pending = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()  # the CRLF after the last chunk (no trailers)
                    break
                piece = await reader.readexactly(size + 2)
                now = perf()
                pending += piece[:-2]
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        times.line(line, now)
            result = times.result(t0, perf())
            ok = True
            return result
        finally:
            if ok:
                self.idle.append((reader, writer))
            else:
                writer.close()


def op_mixed(session: aiohttp.ClientSession, t: Target, every: int) -> Callable[[], Awaitable[Any]]:
    j, s = op_json(session, t), op_stream(session, t, 0)
    count = 0

    async def op() -> Any:
        nonlocal count
        count += 1
        return await (s() if count % every == 0 else j())

    return op


async def drive(
    op: Callable[[], Awaitable[Any]],
    conc: int,
    n: int,
    cap: float,
    grace: float = 30.0,
    ramp: float = 0.0,
) -> tuple[list[Any], Counter[str], int]:
    """At most ``n`` requests with ``conc`` workers (started evenly over ``ramp`` seconds); no
    new request after ``cap`` seconds, and anything still running at ``cap`` + ``grace`` is
    cancelled (counted as an error)."""
    remaining = n
    results: list[Any] = []
    errors: Counter[str] = Counter()
    perf = time.perf_counter
    deadline = perf() + cap

    async def worker(i: int) -> None:
        nonlocal remaining
        if ramp:
            await asyncio.sleep(ramp * i / conc)
        while remaining > 0 and perf() < deadline:
            remaining -= 1
            try:
                results.append(await op())
            except Exception as exc:  # counted and reported
                errors[f"{type(exc).__name__}: {str(exc)[:70]}"] += 1

    tasks = [asyncio.ensure_future(worker(i)) for i in range(min(conc, n))]
    _, pending = await asyncio.wait(tasks, timeout=cap + grace)
    for task in pending:
        task.cancel()
    if pending:
        errors[f"cancelled: still running {grace:.0f} s after the time cap"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    return results, errors, n - remaining


async def settle(pids: list[int], timeout: float = 15.0) -> None:
    """Wait until these processes are idle (< 5 % CPU over 0.2 s): work a gateway defers past
    the response (log writes, callbacks) is charged to the cell that caused it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = sum(cpu_seconds(p) for p in pids)
        await asyncio.sleep(0.2)
        if sum(cpu_seconds(p) for p in pids) - c0 < 0.01:
            return


async def upstream_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /_stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    stats: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return stats


# --- one measurement ----------------------------------------------------------------------------


def pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * q))]


@dataclass
class Cell:
    target: str
    kind: str  # json | stream | stall | soak
    conc: int
    gap: int = 0
    started: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    rps: float = 0.0
    p50: float = float("nan")  # ms: latency (json) / full response (stream)
    p99: float = float("nan")
    ttft50: float = float("nan")
    ttft99: float = float("nan")
    gap_max: float = float("nan")  # ms, longest inter-chunk gap seen by the client
    gap_p99: float = float("nan")  # ms, p99 over streams of each stream's longest gap
    added_max: float = float("nan")  # ms, most a gap exceeded the upstream's own for that gap
    added_p99: float = float("nan")  # ms, p99 over streams of each stream's most
    stalls: int = 0  # streams with a gap > the upstream's own gap for the same chunks + 50 ms
    up_own_gap: float = 0.0  # ms, the upstream's own longest gap
    cpu_ms: float = float("nan")  # target process CPU per request
    cpu_pct: float = float("nan")  # target process CPU use during the run
    idle_other_pct: float = 0.0  # the other gateway's CPU use meanwhile (should be ~0)
    harness_pct: float = 0.0  # load generator + upstream CPU use (both on CPU 1)
    up_requests: int = 0
    up_other: int = 0
    up_conns: int = 0
    rss: float = 0.0


async def measure(
    t: Target,
    kind: str,
    conc: int,
    n: int,
    cap: float,
    up_port: int,
    others: list[int],
    gap: int = 0,
    warm: int | None = None,
    warm_gap: int = 0,
    grace: float = 30.0,
    ramp: float = 0.0,
) -> Cell:
    """One cell. ``warm`` requests first (default max(50, conc); JSON for JSON cells, streams
    paced at ``warm_gap`` otherwise, so ``conc`` connections are open end to end)."""
    session = make_session(conc)
    raw = RawStreams(t) if kind == "stall" else None
    try:
        if kind in ("json", "cached"):
            op = op_json(session, t, cached=kind == "cached")
        elif raw is not None:
            op = raw.op_for(gap)
        else:
            op = op_stream(session, t, gap)
        warm_n = (conc if t.slow else max(50, conc)) if warm is None else warm
        if warm_n:
            # LiteLLM warms up with JSON requests (cheaper; the point is the open connections);
            # a cached cell warms with its own request, so every measured one is a hit.
            json_warm = kind in ("json", "cached") or t.slow
            wop = (
                op_json(session, t, cached=kind == "cached")
                if json_warm
                else raw.op_for(warm_gap)
                if raw is not None
                else op_stream(session, t, warm_gap)
            )
            _, werr, wstarted = await drive(wop, conc, warm_n, cap, grace)
            t.sent += wstarted
            if werr:
                print(f"    warm-up errors ({t.name}): {dict(werr)}", file=sys.stderr)
        await settle([t.pid, *others])
        await upstream_stats(up_port)  # reset its counters
        gc.collect()
        oth0 = sum(cpu_seconds(p) for p in others)
        c0, h0, t0 = cpu_seconds(t.pid), time.process_time(), time.perf_counter()
        results, errors, started = await drive(op, conc, n, cap, grace, ramp)
        elapsed = time.perf_counter() - t0
        c1, h1 = cpu_seconds(t.pid), time.process_time()
        oth1 = sum(cpu_seconds(p) for p in others)
        up = await upstream_stats(up_port)
        t.sent += started
        await settle([t.pid])
        c2 = cpu_seconds(t.pid)  # + what it did after the last response (deferred work)
    finally:
        await session.close()
        if raw is not None:
            await raw.close()
    cell = Cell(t.name, kind, conc, gap, started, len(results), errors, elapsed)
    cell.rps = len(results) / elapsed
    cell.cpu_ms = (c2 - c0) / max(1, started) * 1000
    cell.cpu_pct = 100 * (c1 - c0) / elapsed
    cell.idle_other_pct = 100 * (oth1 - oth0) / elapsed
    cell.harness_pct = 100 * ((h1 - h0) + (up["cpu"] if t.name != "direct" else 0)) / elapsed
    if t.name == "direct":  # the measured process is the upstream itself
        cell.harness_pct = 100 * ((h1 - h0) + (c1 - c0)) / elapsed
    cell.up_requests, cell.up_other, cell.up_conns = up["requests"], up["other"], up["conns"]
    cell.up_own_gap = up["max_gap_ms"]
    cell.rss = rss_mb(t.pid)
    if kind in ("json", "cached"):
        lat = sorted(results)
        cell.p50, cell.p99 = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3
    else:
        ttft = sorted(r[0] for r in results)
        full = sorted(r[1] for r in results)
        worst = sorted(r[2] for r in results)
        cell.ttft50, cell.ttft99 = pct(ttft, 0.5) * 1e3, pct(ttft, 0.99) * 1e3
        cell.p50, cell.p99 = pct(full, 0.5) * 1e3, pct(full, 0.99) * 1e3
        added = sorted(r[3] for r in results)
        if worst:
            cell.gap_max, cell.gap_p99 = worst[-1] * 1e3, pct(worst, 0.99) * 1e3
            cell.added_max, cell.added_p99 = added[-1] * 1e3, pct(added, 0.99) * 1e3
            cell.stalls = sum(1 for a in added if a > STALL)
    upstream_expected = kind != "cached" and t.name != "direct"
    if (up["requests"] != started and upstream_expected) or up["other"]:
        note = f"upstream saw {up['requests']} requests (+{up['other']} other), sent {started}"
        if up["requests"] < cell.ok or up["other"]:
            cell.errors[note] += 1
        else:
            print(f"    note ({t.name} {kind} c={conc}): {note}", file=sys.stderr)
    return cell


# --- report -------------------------------------------------------------------------------------


def f(x: float, nd: int = 2) -> str:
    return "-" if x != x else f"{x:,.{nd}f}"


def errs(c: Cell) -> str:
    n = sum(c.errors.values())
    return str(n) if n == 0 else f"**{n}** ({'; '.join(f'{k} ×{v}' for k, v in c.errors.items())})"


def json_table(cells: list[Cell]) -> str:
    direct = {c.conc: c for c in cells if c.target == "direct"}
    rows = [
        "| conc | target | n | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU ms/req | target CPU % | harness CPU % | RSS MB | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        d = direct.get(c.conc)
        add50 = c.p50 - d.p50 if d and c.target != "direct" else float("nan")
        add99 = c.p99 - d.p99 if d and c.target != "direct" else float("nan")
        rows.append(
            f"| {c.conc} | {c.target} | {c.started} | {c.rps:,.0f} | {f(c.p50)} | {f(c.p99)} "
            f"| {f(add50)} | {f(add99)} | {f(c.cpu_ms, 3)} | {c.cpu_pct:.0f} "
            f"| {c.harness_pct:.0f} | {c.rss:.0f} | {errs(c)} |"
        )
    return "\n".join(rows)


def stream_table(cells: list[Cell]) -> str:
    direct = {c.conc: c for c in cells if c.target == "direct"}
    rows = [
        "| conc | target | n | streams/s | TTFT p50 ms | TTFT p99 ms | added TTFT p50 "
        "| added TTFT p99 | full p50 ms | max gap ms | CPU ms/stream | target CPU % "
        "| harness CPU % | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        d = direct.get(c.conc)
        a50 = c.ttft50 - d.ttft50 if d and c.target != "direct" else float("nan")
        a99 = c.ttft99 - d.ttft99 if d and c.target != "direct" else float("nan")
        rows.append(
            f"| {c.conc} | {c.target} | {c.started} | {c.rps:,.0f} | {f(c.ttft50)} "
            f"| {f(c.ttft99)} | {f(a50)} | {f(a99)} | {f(c.p50)} | {f(c.gap_max, 1)} "
            f"| {f(c.cpu_ms, 3)} | {c.cpu_pct:.0f} | {c.harness_pct:.0f} | {errs(c)} |"
        )
    return "\n".join(rows)


def stall_table(cells: list[Cell]) -> str:
    rows = [
        "| streams | pace ms | target | started | completed | elapsed s | upstream's own max "
        "gap ms | client max gap ms | most added to a gap ms | p99 of per-stream most added "
        "| stalls (gap > upstream's own + 50 ms) | TTFT p50 / p99 ms | CPU % | harness CPU % "
        "| errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for c in cells:
        rows.append(
            f"| {c.conc} | {c.gap} | {c.target} | {c.started} | {c.ok} | {c.elapsed:.1f} "
            f"| {f(c.up_own_gap, 1)} | {f(c.gap_max, 1)} | {f(c.added_max, 1)} "
            f"| {f(c.added_p99, 1)} | {c.stalls} | {f(c.ttft50, 1)} / {f(c.ttft99, 1)} "
            f"| {c.cpu_pct:.0f} | {c.harness_pct:.0f} | {errs(c)} |"
        )
    return "\n".join(rows)


def versions(litellm_bin: str | None) -> str:
    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    pk = ["aiwire", "uvicorn", "httptools", "uvloop", "aiohttp", "orjson", "sqlalchemy"]
    pk += ["aiosqlite"]
    out = (
        f"nproc {os.cpu_count()}, Python {platform.python_version()} ({platform.machine()}), "
        + ", ".join(f"{p} {v(p)}" for p in pk)
    )
    if litellm_bin:
        py = str(Path(litellm_bin).parent / "python")
        code = (
            "import importlib.metadata as m\n"
            "def v(p):\n"
            "    try: return m.version(p)\n"
            "    except Exception: return '-'\n"
            "print(', '.join(f'{p} {v(p)}' for p in "
            "['litellm','fastapi','uvicorn','httptools','uvloop','openai','httpx','aiohttp']))"
        )
        try:
            lv = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
            out += f"; LiteLLM venv: {lv.stdout.strip()}"
        except Exception as exc:
            out += f"; LiteLLM venv: ? ({exc})"
    return out


# --- profile ------------------------------------------------------------------------------------


def top_functions(raw: Path, n: int = 25) -> str:
    """Top self and inclusive functions from py-spy's --format raw (collapsed stacks)."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not cnt.isdigit():
            continue
        c = int(cnt)
        total += c
        frames = [_short(fr) for fr in stack.split(";")]
        self_c[frames[-1]] += c
        for fr in set(frames):
            incl[fr] += c
    out = [f"samples: {total}", "", "self (leaf) time:", ""]
    out += [f"  {100 * c / total:5.1f} %  {fn}" for fn, c in self_c.most_common(n)]
    out += ["", "inclusive time (aiwire, aiohttp, uvicorn, sqlalchemy frames):", ""]
    keep = ("aiwire/", "aiohttp/", "uvicorn/", "sqlalchemy/", "aiosqlite/")
    inc = [(fn, c) for fn, c in incl.most_common() if any(k in fn for k in keep)]
    out += [f"  {100 * c / total:5.1f} %  {fn}" for fn, c in inc[:n]]
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py)"
    name, _, loc = frame.partition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="small counts and caps, concurrency ≤ 64: ~2-3 min"
    )
    ap.add_argument("--litellm", default=LITELLM_DEFAULT, help="litellm CLI ('' to skip)")
    ap.add_argument("--stall-streams", type=int, default=1000)
    ap.add_argument("--soak", type=int, default=None, help="requests in the aiwire soak")
    ap.add_argument("--profile", action="store_true", help="py-spy the aiwire gateway")
    ap.add_argument("--profile-conc", type=int, default=64, help="concurrency of the profiled runs")
    ap.add_argument("--json", default=None, help="write all cells to this JSON file")
    ap.add_argument(
        "--bare",
        action="store_true",
        help="also measure bench/_passthrough_app.py (uvicorn + aiohttp, no features): the floor",
    )
    ap.add_argument("--only", default="json,stream,cache,stall,soak", help="phases to run")
    args = ap.parse_args()

    os.sched_setaffinity(0, {HARNESS_CPU})
    q = args.quick
    phases = set(args.only.split(","))
    # (concurrent streams, pace ms) for the stall test; LiteLLM runs only `slow_stall`
    big = args.stall_streams
    stall_spec = [(50, 100), (big, 100)] if q else [(250, 100), (500, 100), (big, 100), (big, 20)]
    slow_stall = {(50, 100)} if q else {(50, 100), (250, 100), (big, 100)}
    if not q:
        stall_spec.insert(0, (50, 100))
    stall_gaps = sorted({g for _, g in stall_spec} | {20})
    soak_n = args.soak or (10_000 if q else 100_000)
    litellm_bin = args.litellm if args.litellm and Path(args.litellm).exists() else None
    if args.litellm and not litellm_bin:
        print(f"{args.litellm} not found: LiteLLM skipped", file=sys.stderr)
    t_start = time.monotonic()

    tmp = tempfile.TemporaryDirectory(prefix="aiwire-gwbench-")
    procs: list[subprocess.Popen[bytes]] = []
    logs = Path(tmp.name)
    try:
        up_port, gw_port, ll_port, bare_port = free_port(), free_port(), free_port(), free_port()
        up_log = open(logs / "upstream.log", "wb")  # noqa: SIM115
        up = subprocess.Popen(
            [sys.executable, str(UPSTREAM), str(up_port), str(HARNESS_CPU)],
            env=child_env(),
            stderr=up_log,
        )
        procs.append(up)
        gaps = ",".join(str(g) for g in stall_gaps)

        def start_aiwire(store: Path) -> subprocess.Popen[bytes]:
            store.mkdir(exist_ok=True)
            gw_log = open(logs / "aiwire.log", "ab")  # noqa: SIM115
            gw = subprocess.Popen(
                [
                    sys.executable, str(GATEWAY_APP), "--port", str(gw_port),
                    "--upstream", f"http://127.0.0.1:{up_port}/v1", "--cpu", str(GATEWAY_CPU),
                    "--store-dir", str(store), "--gaps", gaps,
                ],
                env=child_env(AIWIRE_MASTER_KEY=AIWIRE_KEY),
                stdout=gw_log,
                stderr=gw_log,
            )  # fmt: skip
            procs.append(gw)
            return gw

        gw = start_aiwire(logs / "store1")
        bare = None
        if args.bare:
            bare_log = open(logs / "bare.log", "wb")  # noqa: SIM115
            bare = subprocess.Popen(
                [sys.executable, str(BARE_APP), "--port", str(bare_port),
                 "--upstream", f"http://127.0.0.1:{up_port}/v1", "--cpu", str(GATEWAY_CPU)],
                env=child_env(), stdout=bare_log, stderr=bare_log,
            )  # fmt: skip
            procs.append(bare)
        ll = None
        if litellm_bin:
            ll_log = open(logs / "litellm.log", "wb")  # noqa: SIM115
            ll_cmd = [
                "taskset", "-c", str(GATEWAY_CPU), litellm_bin, "--config", str(LITELLM_CONFIG),
                "--host", "127.0.0.1", "--port", str(ll_port), "--num_workers", "1",
            ]  # fmt: skip
            ll = subprocess.Popen(
                ll_cmd,
                env=child_env(
                    LITELLM_LOCAL_MODEL_COST_MAP="True",
                    LITELLM_LOG="WARNING",
                    LITELLM_MASTER_KEY=LITELLM_KEY,
                    BENCH_UPSTREAM_BASE=f"http://127.0.0.1:{up_port}/v1",
                ),
                stdout=ll_log,
                stderr=ll_log,
                cwd=tmp.name,
            )
            procs.append(ll)
        wait_http(f"http://127.0.0.1:{up_port}/_stats", up, 20, "upstream")
        wait_http(f"http://127.0.0.1:{gw_port}/health/ready", gw, 30, "aiwire")
        if bare is not None:
            wait_http(f"http://127.0.0.1:{bare_port}/health/ready", bare, 30, "bare")
        if ll is not None:
            wait_http(f"http://127.0.0.1:{ll_port}/health/readiness", ll, 180, "litellm")
        print(f"# ready after {time.monotonic() - t_start:.0f} s", file=sys.stderr)

        direct = Target(
            "direct", f"http://127.0.0.1:{up_port}", UPSTREAM_KEY, up.pid,
            lambda g: "gpt-4o-mini" + (f"-g{g}" if g else ""),
        )  # fmt: skip
        gateway_model = lambda g: "bench" + (f"-g{g}" if g else "")  # noqa: E731
        aiwire = Target("aiwire", f"http://127.0.0.1:{gw_port}", AIWIRE_KEY, gw.pid, gateway_model)
        targets = [direct, aiwire]
        if bare is not None:
            targets.append(
                Target("bare", f"http://127.0.0.1:{bare_port}", "none", bare.pid, gateway_model)
            )
        if ll is not None:
            litellm = Target(
                "litellm", f"http://127.0.0.1:{ll_port}", LITELLM_KEY, ll.pid, gateway_model,
                slow=True,
            )  # fmt: skip
            targets.append(litellm)
        gw_pids = {t.name: t.pid for t in targets if t.name != "direct"}

        def others(t: Target) -> list[int]:
            return [p for n, p in gw_pids.items() if n != t.name]

        rss: dict[str, list[tuple[str, float]]] = {n: [] for n in gw_pids}

        def note_rss(when: str) -> None:
            for n, p in gw_pids.items():
                if n in rss:
                    rss[n].append((when, rss_mb(p)))

        note_rss("idle after start")
        cells: list[Cell] = []
        scale = 0.12 if q else 1.0

        async def run_all() -> None:
            # warm both gateways once (imports, first connections, JIT-ish caches)
            for t in targets[1:]:
                await measure(t, "json", 4, 50 if t.slow else 400, 20, up_port, others(t))
            note_rss("after warm-up")

            concs = CONCS[:3] if q else CONCS
            if "json" in phases:
                for conc in concs:
                    for t in targets:
                        if t.slow:
                            n, cap = (
                                max(2 * conc, int({1: 500, 16: 900}.get(conc, 1000) * scale)),
                                (4 if q else 10),
                            )
                        else:
                            n, cap = (
                                max(2 * conc, int({1: 3000}.get(conc, 8000) * scale)),
                                (4 if q else 15),
                            )
                        c = await measure(t, "json", conc, n, cap, up_port, others(t))
                        cells.append(c)
                        print(f"  json c={conc} {t.name}: {c.rps:,.0f} req/s p50 {c.p50:.2f} ms "
                              f"CPU {c.cpu_ms:.3f} ms/req ({c.cpu_pct:.0f} %) err {sum(c.errors.values())}",
                              file=sys.stderr)  # fmt: skip
                note_rss("after non-stream phase")

            if "stream" in phases:
                for conc in concs:
                    for t in targets:
                        if t.slow:
                            n, cap = (
                                max(2 * conc, int({1: 150, 16: 300}.get(conc, 400) * scale)),
                                (4 if q else 10),
                            )
                        else:
                            n, cap = (
                                max(2 * conc, int({1: 800}.get(conc, 3000) * scale)),
                                (4 if q else 15),
                            )
                        c = await measure(t, "stream", conc, n, cap, up_port, others(t))
                        cells.append(c)
                        print(f"  stream c={conc} {t.name}: {c.rps:,.0f}/s TTFT p50 {c.ttft50:.2f} ms "
                              f"CPU {c.cpu_ms:.3f} ms ({c.cpu_pct:.0f} %) err {sum(c.errors.values())}",
                              file=sys.stderr)  # fmt: skip
                note_rss("after stream phase")

            if "cache" in phases:
                # Cache hits at one connection: what answering from the cache adds over the
                # upstream answering a canned body itself.
                for t in targets:
                    if t.slow:
                        continue
                    c = await measure(t, "cached", 1, int(3000 * scale) or 300, 10, up_port,
                                      others(t))  # fmt: skip
                    cells.append(c)
                    print(f"  cached c=1 {t.name}: p50 {c.p50:.3f} ms p99 {c.p99:.3f} ms "
                          f"CPU {c.cpu_ms:.3f} ms/req err {sum(c.errors.values())}",
                          file=sys.stderr)  # fmt: skip

            if "stall" in phases:
                for conc, gap in stall_spec:
                    for t in targets:
                        if t.slow and (conc, gap) not in slow_stall:
                            continue
                        if t.slow:  # LiteLLM: one stream per worker, JSON warm-up, capped
                            c = await measure(t, "stall", conc, conc, 20 if conc > 100 else 15,
                                              up_port, others(t), gap=gap, warm=min(conc, 64),
                                              grace=10, ramp=1.0)  # fmt: skip
                        else:  # two streams per worker, after `conc` paced warm-up streams
                            c = await measure(t, "stall", conc, 2 * conc, 30, up_port, others(t),
                                              gap=gap, warm=conc, warm_gap=20, ramp=1.0)  # fmt: skip
                        cells.append(c)
                        print(f"  stall {conc} streams @{gap} ms {t.name}: {c.ok}/{c.started} ok, "
                              f"max gap {c.gap_max:.1f} ms (own {c.up_own_gap:.1f}), most added "
                              f"{c.added_max:.1f} ms, stalls "
                              f"{c.stalls}, err {sum(c.errors.values())}, {c.elapsed:.1f} s",
                              file=sys.stderr)  # fmt: skip
                note_rss("after stall phase")

        arun(run_all())

        soak: dict[str, Any] = {}
        if "soak" in phases:
            # A fresh aiwire process (and store) for the soak: RSS after soak_n requests from
            # start, not after the 1 000-connection stall test (whose high-water is above).
            gw.terminate()
            gw.wait(15)
            gw = start_aiwire(logs / "store2")
            wait_http(f"http://127.0.0.1:{gw_port}/health/ready", gw, 30, "aiwire")
            aiwire.pid = gw_pids["aiwire"] = gw.pid
            aiwire.sent = 0
            rss["aiwire (fresh, soak)"] = [("idle after start", rss_mb(gw.pid))]
            soak = arun(run_soak(aiwire, soak_n, up_port, logs / "store2"))
            rss["aiwire (fresh, soak)"].append(("after soak", rss_mb(gw.pid)))
            if "litellm" in rss:
                rss["litellm"].append(("end", rss_mb(gw_pids["litellm"])))

        prof = ""
        if args.profile:
            prof = arun(run_profile(aiwire, up_port, logs, q, args.profile_conc))

        # --- report ---
        print(f"\n## Gateway benchmark ({'quick' if q else 'full'} run, "
              f"{time.monotonic() - t_start:.0f} s)\n")  # fmt: skip
        print(f"Machine: {versions(litellm_bin)}\n")
        jc = [c for c in cells if c.kind == "json"]
        cc = [c for c in cells if c.kind == "cached"]
        sc = [c for c in cells if c.kind == "stream"]
        st = [c for c in cells if c.kind == "stall"]
        if jc:
            print("### Non-stream\n\n" + json_table(jc) + "\n")
        if sc:
            print("### Stream (30 chunks + [DONE], no pacing)\n\n" + stream_table(sc) + "\n")
        if cc:
            print("### Cache hits (temperature 0, one connection)\n\n" + json_table(cc) + "\n")
        if st:
            print("### Concurrent paced streams (stalls)\n\n" + stall_table(st) + "\n")
        print("### RSS (MB)\n")
        for n, series in rss.items():
            print(f"- {n}: " + ", ".join(f"{w}: {v:.0f}" for w, v in series))
        if soak:
            print("\n### Soak (aiwire)\n")
            print(soak["text"])
        summary = summarize(jc, sc, st, soak, cc)
        print("\n### Targets\n\n" + summary)
        if prof:
            print("\n### Profile (py-spy, aiwire)\n\n```\n" + prof + "\n```")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "cells": [{**c.__dict__, "errors": dict(c.errors)} for c in cells],
                        "rss": rss,
                        "soak": soak,
                    },
                    indent=1,
                    default=str,
                )
            )
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for name in ("aiwire.log", "litellm.log", "upstream.log"):
            path = logs / name
            if path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace")
                interesting = [ln for ln in text.splitlines() if "Error" in ln or "error" in ln]
                if interesting:
                    print(f"\n[{name}: {len(interesting)} error lines; first: "
                          f"{interesting[0][:200]}]", file=sys.stderr)  # fmt: skip
        tmp.cleanup()


def arun(coro: Any) -> Any:
    """Run ``coro`` in a fresh uvloop loop (asyncio's if uvloop is not installed)."""
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


async def run_soak(t: Target, total: int, up_port: int, store: Path) -> dict[str, Any]:
    block = total // 10
    conc = 64
    series: list[tuple[int, float, float, float, int]] = []  # done, rss, req/s, cpu ms, errors
    done = 0
    all_errors: Counter[str] = Counter()
    session = make_session(conc)
    op = op_mixed(session, t, 10)
    try:
        for _ in range(10):
            c0, t0 = cpu_seconds(t.pid), time.perf_counter()
            res, errors, started = await drive(op, conc, block, 120)
            el = time.perf_counter() - t0
            c1 = cpu_seconds(t.pid)
            done += started
            t.sent += started
            all_errors.update(errors)
            series.append(
                (done, rss_mb(t.pid), len(res) / el, (c1 - c0) / max(1, started) * 1e3,
                 sum(errors.values()))
            )  # fmt: skip
            print(f"  soak {done}: RSS {series[-1][1]:.1f} MB, {series[-1][2]:,.0f} req/s",
                  file=sys.stderr)  # fmt: skip
    finally:
        await session.close()
    await upstream_stats(up_port)
    # Has the log writer kept up? Count rows after a moment to flush.
    rows = -1
    import sqlite3

    for _ in range(20):
        await asyncio.sleep(0.5)
        with contextlib.closing(sqlite3.connect(store / "aiwire.db", timeout=10)) as db:
            rows = db.execute("select count(*) from request_log").fetchone()[0]
        if rows >= t.sent:
            break
    half = series[len(series) // 2 - 1 :]
    xs = [s[0] for s in half]
    ys = [s[1] for s in half]
    slope = statistics.linear_regression(xs, ys).slope * 10_000 if len(xs) > 1 else 0.0
    lines = [
        f"{total:,} requests at concurrency {conc} (every 10th streamed), RSS after each "
        f"{block:,}:",
        "",
        "| requests | RSS MB | req/s | CPU ms/req | errors |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {d:,} | {r:.1f} | {q:,.0f} | {c:.3f} | {e} |" for d, r, q, c, e in series]
    lines += [
        "",
        f"Trend over the last half (from {half[0][0]:,}): {slope:+.2f} MB per 10 000 requests; "
        f"last − middle = {series[-1][1] - half[0][1]:+.1f} MB.",
        f"request_log rows in its SQLite store afterwards: {rows:,} of {t.sent:,} requests "
        f"sent to this process (soak + warm-up; checked ≤ 10 s after the last response).",
    ]
    if all_errors:
        lines.append(f"Errors: {dict(all_errors)}")
    return {
        "text": "\n".join(lines),
        "series": series,
        "slope_per_10k": slope,
        "final_rss": series[-1][1],
        "errors": sum(all_errors.values()),
        "rows": rows,
        "total": done,
    }


async def run_profile(t: Target, up_port: int, logs: Path, quick: bool, conc: int = 64) -> str:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return "py-spy not installed in this venv: pip install py-spy"
    out = []
    dur = 5 if quick else 10
    for kind in ("json", "stream"):
        raw = logs / f"profile-{kind}.txt"
        cmd = [str(spy), "record", "--pid", str(t.pid), "--duration", str(dur), "--rate", "200",
               "--format", "raw", "--output", str(raw), "--nonblocking", "--gil"]  # fmt: skip
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
        n = 100_000 if kind == "json" else 30_000
        await measure(t, kind, conc, n, dur + 1, up_port, [], warm=0)
        try:
            spy_proc.wait(30)
        except subprocess.TimeoutExpired:
            spy_proc.kill()
        if raw.exists():
            out.append(f"== {kind}, concurrency {conc}, {dur} s ==\n" + top_functions(raw))
            keep = Path(tempfile.gettempdir()) / f"aiwire-gwbench-profile-{kind}.txt"
            with contextlib.suppress(OSError):
                keep.write_text(raw.read_text())
        else:
            out.append(f"== {kind}: py-spy produced nothing ==")
    return "\n\n".join(out)


def summarize(
    jc: list[Cell], sc: list[Cell], st: list[Cell], soak: dict[str, Any], cc: list[Cell]
) -> str:
    lines = []
    d_hit = next((c for c in cc if c.target == "direct"), None)
    a_hit = next((c for c in cc if c.target == "aiwire"), None)
    if d_hit and a_hit:
        added = a_hit.p50 - d_hit.p50
        lines.append(
            f"- cache hit, 1 connection: p50 {a_hit.p50:.3f} ms vs the upstream's own canned "
            f"answer {d_hit.p50:.3f} ms: adds {added:.3f} ms (target < 1) "
            f"{'PASS' if added < 1 else 'FAIL'}"
        )

    def get(cells: list[Cell], target: str, conc: int) -> Cell | None:
        return next((c for c in cells if c.target == target and c.conc == conc), None)

    d1, a1 = get(jc, "direct", 1), get(jc, "aiwire", 1)
    if d1 and a1:
        add50, add99 = a1.p50 - d1.p50, a1.p99 - d1.p99
        lines.append(
            f"- added latency, 1 connection: p50 {add50:.3f} ms (target ≤ 0.8) "
            f"{'PASS' if add50 <= 0.8 else 'FAIL'}; p99 {add99:.3f} ms (target ≤ 2) "
            f"{'PASS' if add99 <= 2 else 'FAIL'}"
        )
    for name, cells in (("non-stream", jc), ("stream", sc)):
        aw = [c for c in cells if c.target == "aiwire"]
        ll = [c for c in cells if c.target == "litellm"]
        if aw and ll:
            ba, bl = max(aw, key=lambda c: c.rps), max(ll, key=lambda c: c.rps)
            ratio = ba.rps / bl.rps if bl.rps else float("inf")
            aerr = sum(sum(c.errors.values()) for c in aw)
            cpu_ratio = min(c.cpu_ms for c in ll) / min(c.cpu_ms for c in aw)
            lines.append(
                f"- saturated {name} throughput: aiwire {ba.rps:,.0f}/s (c={ba.conc}, "
                f"{ba.cpu_pct:.0f} % CPU) vs LiteLLM {bl.rps:,.0f}/s (c={bl.conc}) = "
                f"{ratio:.1f}x (target ≥ 25x, no errors: aiwire errors {aerr}) "
                f"{'PASS' if ratio >= 25 and aerr == 0 else 'FAIL'}; CPU per request "
                f"ratio (best cells) {cpu_ratio:.1f}x"
            )
    for c in st:
        if c.target == "aiwire":
            ok = c.ok == c.started and c.stalls == 0 and not c.errors
            lines.append(
                f"- {c.conc} concurrent streams @ {c.gap} ms: {c.ok}/{c.started} complete, "
                f"at most {c.added_max:.1f} ms added to a gap (limit 50; the upstream's own "
                f"gaps up to {c.up_own_gap:.1f} ms), stalls {c.stalls} "
                f"{'PASS' if ok else 'FAIL'}"
            )
    if soak:
        ok = soak["final_rss"] <= 150 and soak["slope_per_10k"] <= 0.5
        lines.append(
            f"- RSS after {soak['total']:,} requests: {soak['final_rss']:.1f} MB (target ≤ 150), "
            f"trend over last half {soak['slope_per_10k']:+.2f} MB/10k "
            f"{'PASS' if ok else 'FAIL'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
