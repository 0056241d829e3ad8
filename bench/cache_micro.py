"""Micro-benchmark of the response cache (aiwire.cache): µs per operation, per backend.

    .venv/bin/python bench/cache_micro.py [--number N] [--backends memory,sqlite,postgresql,redis]

For each backend: ``get`` of a present key (hit), of an absent key (miss), and ``set``, each
call timed on its own (wall clock, ``perf_counter_ns``) on one event loop (uvloop when
installed, as the gateway runs); the table gives p50, p99 and mean in µs. The entry is a ~1 KB
chat completion (streams cost the same: one body plus an offsets table). Also measured: the
key (``cache_key`` of a 4-message request with a tool) and ``decide``, entry encode/decode, and
a whole memory hit as the gateway would serve it (decide + key + get + replay into a no-op
ASGI ``send``): the part of a hit's latency that the cache adds inside the gateway.

PostgreSQL: a throw-away database ``aiwire_bench_<random>`` on AIWIRE_BENCH_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test), dropped at the end. Redis:
AIWIRE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0), keys under a random prefix, cleared
at the end. An unreachable service is reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from aiwire.cache import (
    CacheBackend,
    Entry,
    MemoryCache,
    RedisCache,
    SQLCache,
    cache_key,
    decide,
    decode,
    encode,
    replay,
)
from aiwire.server.openai_wire import parse_chat
from aiwire.store import Database
from aiwire.types import Usage

PG_ADMIN_URL = os.environ.get(
    "AIWIRE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AIWIRE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

REQUEST = parse_chat(
    orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. Be terse."},
                {"role": "user", "content": "What's the weather in Oslo and in Paris today?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "4°C, rain"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Current weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                }
            ],
        }
    )
)
BODY = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Oslo: 4°C and rain. " * 40},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 412, "completion_tokens": 58, "total_tokens": 470},
    }
)
ENTRY = Entry.whole(BODY, usage=Usage.of(412, 58), ttl=3600)


def _stats(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) / 1000, p99 / 1000, statistics.fmean(ordered) / 1000


async def _time_async(fn: Callable[[int], Awaitable[Any]], number: int) -> list[int]:
    samples = []
    clock = time.perf_counter_ns
    for i in range(number):
        t0 = clock()
        await fn(i)
        samples.append(clock() - t0)
    return samples


def _time_sync(fn: Callable[[], Any], number: int) -> list[int]:
    samples = []
    clock = time.perf_counter_ns
    for _ in range(number):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return samples


async def _backend_rows(name: str, cache: CacheBackend, number: int) -> list[tuple[str, ...]]:
    keys = [f"{i:064x}" for i in range(number)]
    rows = []
    # set first (fills the keys the hits then read), then hits, then misses
    set_ns = await _time_async(lambda i: cache.set(keys[i], ENTRY), number)
    hit_ns = await _time_async(lambda i: cache.get(keys[i]), number)
    miss_ns = await _time_async(lambda i: cache.get(f"{i + number:064x}"), number)
    for op, samples in (("get (hit)", hit_ns), ("get (miss)", miss_ns), ("set", set_ns)):
        rows.append((name, op, *(f"{v:.1f}" for v in _stats(samples))))
    stats = await cache.stats()
    assert stats.hits == number and stats.errors == 0, stats
    return rows


async def _create_pg_database() -> str | None:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"aiwire_bench_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"postgresql: skipped ({type(exc).__name__}: {exc})")
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await conn.close()


async def _sql_rows(name: str, url: str, number: int) -> list[tuple[str, ...]]:
    db = Database(url)
    try:
        await db.migrate()
        return await _backend_rows(name, SQLCache(db), number)
    finally:
        await db.aclose()


async def _cpu_rows(number: int) -> list[tuple[str, ...]]:
    blob = encode(ENTRY)
    cache = MemoryCache()
    key = cache_key("k:bench", "openai", REQUEST, False)
    await cache.set(key, ENTRY)

    async def send(message: Any) -> None:
        return None

    async def hit(_: int) -> None:
        d = decide(REQUEST, "deterministic", None)
        k = cache_key("k:bench", "openai", REQUEST, False)
        entry = await cache.get(k) if d.lookup else None
        assert entry is not None
        await replay(send, entry, headers=[("x-request-id", "req_1")])

    measured = [
        ("cache_key (4 messages, 1 tool)", _time_sync(
            lambda: cache_key("k:bench", "openai", REQUEST, False), number
        )),
        ("decide (no header)", _time_sync(lambda: decide(REQUEST, "deterministic", None), number)),
        (f"encode ({len(BODY)} B body)", _time_sync(lambda: encode(ENTRY), number)),
        (f"decode ({len(blob)} B)", _time_sync(lambda: decode(blob), number)),
        ("memory hit, gateway view", await _time_async(hit, number)),
    ]  # fmt: skip
    return [("-", op, *(f"{v:.1f}" for v in _stats(s))) for op, s in measured]


async def main(number: int, backends: list[str]) -> None:
    rows = await _cpu_rows(number)
    if "memory" in backends:
        rows += await _backend_rows("memory", MemoryCache(), number)
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            rows += await _sql_rows("sql (sqlite)", f"sqlite:///{tmp}/bench.db", number)
    if "postgresql" in backends:
        url = await _create_pg_database()
        if url is not None:
            try:
                rows += await _sql_rows("sql (postgresql)", url, number)
            finally:
                await _drop_pg_database(url)
    if "redis" in backends:
        cache = RedisCache(REDIS_URL, prefix=f"aiwcbench:{secrets.token_hex(4)}:")
        if await cache.ping():
            try:
                rows += await _backend_rows("redis", cache, number)
            finally:
                await cache.clear()
        else:
            print(f"redis: skipped (no answer at {REDIS_URL})")
        await cache.aclose()

    header = ("backend", "operation", "p50 µs", "p99 µs", "mean µs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(f"aiwire.cache micro-benchmark: {number} calls each, entry {ENTRY.size} B serialised")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per operation")
    parser.add_argument(
        "--backends",
        default="memory,sqlite,postgresql,redis",
        help="comma-separated subset of memory,sqlite,postgresql,redis",
    )
    args = parser.parse_args()
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(main(args.number, chosen))
    else:
        asyncio.run(main(args.number, chosen))
