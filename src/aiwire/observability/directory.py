"""Key ids to key names and options, for observers that see only a log row's ``key_id``.

A request-log row carries the key's id; metrics label by the key's *name* and the content
policy needs its ``log_content`` option. Looking either up per request would put a database
query on every request, so this directory holds every key in memory: loaded at start-up,
reloaded every ``refresh`` seconds (renames and option changes show up within that bound), and
an id it has not seen yet (a key created on another replica a moment ago) is fetched on its
own, once, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiwire.store.keys import KeyRecord, KeyStore

log = logging.getLogger("aiwire.observability")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What observers may know about a key: never its secret or hash."""

    id: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, record: KeyRecord) -> KeyInfo:
        return cls(record.id, record.name, dict(record.options))


Resolved = Callable[[KeyInfo | None], None]


class KeyDirectory:
    def __init__(self, keys: KeyStore | None, *, refresh: float = 30.0) -> None:
        self._keys = keys
        self.refresh = refresh
        self._by_id: dict[str, KeyInfo] = {}
        self._waiting: dict[str, list[Resolved]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def get(self, key_id: str) -> KeyInfo | None:
        return self._by_id.get(key_id)

    def add(self, info: KeyInfo) -> None:
        self._by_id[info.id] = info

    def resolve(self, key_id: str, then: Resolved) -> None:
        """Call ``then`` with the key's info (None: no such key, or the store failed) once it
        is known: at once if it is, else after one background lookup shared by all callers."""
        known = self._by_id.get(key_id)
        if known is not None or self._keys is None:
            then(known)
            return
        waiting = self._waiting.get(key_id)
        if waiting is not None:
            waiting.append(then)
            return
        self._waiting[key_id] = [then]
        task = asyncio.get_running_loop().create_task(self._fetch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, key_id: str) -> None:
        assert self._keys is not None
        info: KeyInfo | None = None
        try:
            record = await self._keys.get(key_id)
            if record is not None:
                info = KeyInfo.of(record)
                self._by_id[key_id] = info
        except Exception as exc:  # the store may be down: callers get None, not an error
            log.warning("looking up key %s failed: %s", key_id, type(exc).__name__)
        for then in self._waiting.pop(key_id, []):
            try:
                then(info)
            except Exception:  # one observer's bug must not starve the others
                log.exception("key directory callback failed")

    async def load(self) -> None:
        """Read every key (failures are logged; the previous view stays)."""
        if self._keys is None:
            return
        try:
            records = await self._keys.list()
        except Exception as exc:  # keep serving with what we know
            log.warning("loading keys for metrics and logs failed: %s", type(exc).__name__)
            return
        self._by_id = {r.id: KeyInfo.of(r) for r in records}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            await self.load()

    async def start(self) -> None:
        await self.load()
        if self._loop_task is None and self._keys is not None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None
