"""Values read from the store, kept fresh without making requests wait for the store.

The gateway keeps keys and budgets in memory and re-reads them every few seconds, so that a
change made on another replica shows up within a stated bound. Waiting for that re-read on the
request path put every request arriving during it behind a database round trip, and under
load such a round trip waits behind whole turns of a busy event loop: at 256 connections the
budget re-read every 2 s held ~1 % of requests for 0.3-1.8 s (bench/RESULTS.md).

:class:`Fresh` serves a value younger than half its ``ttl`` as is; from half the ``ttl`` on, a use
starts one background re-read and is still served the value it has; only a value older than
``ttl`` (or none yet, or one :meth:`~Fresh.forget` dropped) makes the caller wait, and callers
waiting for the same key share one read. So ``ttl`` stays a hard bound on staleness, and on a
busy gateway the re-read nearly always happens off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("aiwire.fresh")


class Fresh(Generic[K, V]):
    """Per-key values read by a loader, at most ``max_entries`` of them (least recently read
    first out)."""

    def __init__(
        self,
        ttl: float,
        *,
        what: str,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.what = what  # for log lines: "API key", "budgets"
        self._max = max_entries
        self._clock = clock
        self._values: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (read at, value)
        self._reads: dict[K, asyncio.Task[V]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """``key``'s value: kept, or read with ``load`` (see the module docstring for when)."""
        now = self._clock()
        kept = self._values.get(key)
        if kept is not None:
            age = now - kept[0]
            if age < self.ttl / 2:
                return kept[1]
            if age < self.ttl:
                if key not in self._reads:
                    self._read(key, load, now).add_done_callback(self._background_done)
                return kept[1]
        # Shielded: a caller that goes away (client disconnect) must not cancel the shared read.
        return await asyncio.shield(self._read(key, load, now))

    def forget(self) -> None:
        """Drop every value; reads already under way are not kept (after a change here)."""
        self._values.clear()
        self._reads.clear()
        self._generation += 1

    def _read(self, key: K, load: Callable[[], Awaitable[V]], now: float) -> asyncio.Task[V]:
        task = self._reads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._store(key, load, now))
            self._reads[key] = task
        return task

    async def _store(self, key: K, load: Callable[[], Awaitable[V]], started: float) -> V:
        generation = self._generation
        try:
            value = await load()
        finally:
            if self._generation == generation:
                self._reads.pop(key, None)
        if self._generation == generation:
            # Dated from when the read started: the value is at least that old.
            self._values[key] = (started, value)
            self._values.move_to_end(key)
            while len(self._values) > self._max:
                self._values.popitem(last=False)
        return value

    def _background_done(self, task: asyncio.Task[V]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Kept value still served until it is ttl old; then callers wait and see the error.
            # The type only: a driver's message may carry connection details.
            log.warning("re-reading %s in the background failed: %s", self.what, type(exc).__name__)
