"""The response cache: exact-match replay of answers to repeated requests.

A request is keyed by :func:`cache_key` (a SHA-256 over everything that can change its answer,
within a tenant scope); :func:`decide` says whether to look it up and whether to store its
answer (deterministic requests by default, ``x-aiwire-cache`` header, per-key opt-out). An
:class:`Entry` holds exactly the bytes the client got (a body, or a stream's SSE events) plus
the usage for the log; :func:`replay` sends them again. Backends keep one async contract
(:class:`CacheBackend`): :class:`MemoryCache` (in-process LRU), :class:`SQLCache` (the
gateway's store) and :class:`RedisCache` (shared by replicas); :func:`open_cache` builds the one
:class:`CacheConfig` names.

Wiring in the gateway, in outline::

    decision = decide(request, cfg.mode, header(scope, HEADER_BYTES), opted_out=...)
    key = cache_key(scope_for(cfg.scope, key_id, team), "openai", request, bool(request.stream))
    entry = await cache.get(key) if decision.lookup else None
    if entry is not None:
        await replay(send, entry, headers=outcome.headers)       # cost 0, logged as a hit
    ...  # else answer as usual with x-aiwire-cache: miss, recording the body or the events,
    await cache.set(key, Entry.whole(body, usage=..., ttl=cfg.ttl))  # if decision.store

:class:`SemanticCache` (``cache.semantic``) is a second lookup after an exact miss: the same
model and context, a final question that means the same (cosine of embeddings above a threshold).
"""

from aiwire.cache.base import CacheBackend, CacheError, CacheStats, RemoteCache
from aiwire.cache.config import CacheConfig, open_cache
from aiwire.cache.entry import (
    DEFAULT_MAX_ENTRY_BYTES,
    CorruptEntry,
    Entry,
    StreamRecorder,
    decode,
    encode,
)
from aiwire.cache.key import KEY_VERSION, cache_key, canonical, scope_for
from aiwire.cache.memory import MemoryCache
from aiwire.cache.policy import (
    HEADER,
    HEADER_BYTES,
    HIT,
    MISS,
    Decision,
    Mode,
    cacheable,
    decide,
    deterministic,
    directives,
    key_opted_out,
)
from aiwire.cache.redis_cache import RedisCache
from aiwire.cache.replay import replay, replay_body, replay_events
from aiwire.cache.semantic import SemanticCache, SemanticConfig, open_semantic

__all__ = [
    "DEFAULT_MAX_ENTRY_BYTES",
    "HEADER",
    "HEADER_BYTES",
    "HIT",
    "KEY_VERSION",
    "MISS",
    "CacheBackend",
    "CacheConfig",
    "CacheError",
    "CacheStats",
    "CorruptEntry",
    "Decision",
    "Entry",
    "MemoryCache",
    "Mode",
    "RedisCache",
    "RemoteCache",
    "SQLCache",
    "SemanticCache",
    "SemanticConfig",
    "StreamRecorder",
    "cache_key",
    "cacheable",
    "canonical",
    "decide",
    "decode",
    "deterministic",
    "directives",
    "encode",
    "key_opted_out",
    "open_cache",
    "open_semantic",
    "replay",
    "replay_body",
    "replay_events",
    "scope_for",
]


def __getattr__(name: str) -> object:
    # SQLCache pulls in SQLAlchemy: imported on first use, so `import aiwire` stays light.
    if name == "SQLCache":
        from aiwire.cache.sql import SQLCache

        return SQLCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
