"""Circuit breakers shared by replicas: a deployment one replica opened is avoided by all.

When a replica's router opens a deployment's circuit it publishes the deadline to Redis
(``aiw:cool:<deployment id>``, expiring with it); every replica reads all deadlines once a
second and opens its own circuit for any it has not seen. Without Redis each replica keeps its
own breakers, which is all a single process needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiwire.router import Deployment, Router

log = logging.getLogger("aiwire.health")

PREFIX = "aiw:cool:"


class HealthSync:
    def __init__(self, router: Router, redis: Any, *, interval: float = 1.0) -> None:
        self.router = router
        self.redis = redis
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        router.on_cooldown.append(self._publish)

    def _publish(self, dep: Deployment, seconds: float) -> None:
        task = asyncio.get_running_loop().create_task(self._set(dep.id, seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _set(self, dep_id: str, seconds: float) -> None:
        until = time.time() + seconds
        try:
            await self.redis.set(PREFIX + dep_id, repr(until), px=max(1, int(seconds * 1000)))
        except Exception as exc:  # a shared view is best effort; the local breaker holds
            log.warning("publishing the cooldown of %s failed: %s", dep_id, exc)

    async def sync_once(self) -> None:
        deployments = self.router.deployments()
        if not deployments:
            return
        values = await self.redis.mget([PREFIX + d.id for d in deployments])
        wall, mono = time.time(), time.monotonic()
        for dep, raw in zip(deployments, values, strict=True):
            if raw is None:
                continue
            remaining = float(raw) - wall
            if remaining <= 0:
                continue
            self.router.open_circuit(dep, mono + remaining, publish=False)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception as exc:  # keep polling; Redis may come back
                log.warning("reading shared cooldowns failed: %s", exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
