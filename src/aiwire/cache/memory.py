"""The in-process cache: an LRU bounded by entries and by bytes, with a TTL per entry.

A hit is one dict lookup, one clock read and one ``move_to_end`` (all O(1)) inside the
coroutine: nothing is awaited, nothing serialised, and the entry object itself is returned (it
is immutable, so callers share it safely). Everything runs on the event loop's thread, so no
lock is needed. Expired entries leave when they are read, when LRU eviction reaches them, or
on :meth:`MemoryCache.purge`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from aiwire.cache.base import CacheBackend, CacheStats
from aiwire.cache.entry import DEFAULT_MAX_ENTRY_BYTES, Entry

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 128 * 1024 * 1024


class MemoryCache(CacheBackend):
    """Entries in this process. ``clock`` gives monotonic seconds (tests move it by hand)."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        super().__init__(max_entry_bytes=min(max_entry_bytes, max_bytes))
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        #: key -> (entry, expires at (clock seconds), size); oldest use first.
        self._items: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            self._stats.misses += 1
            return None
        if item[1] <= self._clock():
            del self._items[key]
            self._bytes -= item[2]
            self._stats.expired += 1
            self._stats.misses += 1
            return None
        self._items.move_to_end(key)
        self._stats.hits += 1
        return item[0]

    async def set(self, key: str, entry: Entry, ttl: float | None = None) -> bool:
        ttl = entry.ttl if ttl is None else ttl
        if not self.accepts(entry, ttl):
            return False
        size = entry.size
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        self._items[key] = (entry, self._clock() + ttl, size)
        self._bytes += size
        self._stats.sets += 1
        items = self._items
        while len(items) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, dropped) = items.popitem(last=False)
            self._bytes -= dropped
            self._stats.evictions += 1
        return True

    async def delete(self, key: str) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self._bytes -= item[2]
        return True

    async def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    async def purge(self) -> int:
        now = self._clock()
        expired = [k for k, (_, expires, _) in self._items.items() if expires <= now]
        for k in expired:
            self._bytes -= self._items.pop(k)[2]
        self._stats.expired += len(expired)
        return len(expired)

    async def stats(self) -> CacheStats:
        out = self._snapshot()
        out.entries, out.bytes = len(self._items), self._bytes
        return out
