"""Flows inside a long-running process (``aiwire serve``, ``aiwire flow serve``).

- **Schedules**: each flow with a ``schedule`` runs at its cron times (in its ``timezone``); a
  run still going when the next time comes delays that one (runs of one flow never overlap),
  and of several workers or replicas on one store only the first to claim a due time runs it.
- **Webhook events and review decisions**: :meth:`FlowService.kick` runs the flow's waiting
  records in the background at once; kicks during a run are folded into one follow-up run.
- **Review timeouts**, and records a decision taken elsewhere (``aiwire review`` on the same
  store) made runnable: swept every ``sweep_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiwire.flows.cron import Cron
from aiwire.flows.loader import Flow
from aiwire.flows.runner import FlowRunner
from aiwire.flows.store import FlowStore

log = logging.getLogger("aiwire.flows")


class FlowService:
    def __init__(
        self,
        store: FlowStore,
        runner: FlowRunner,
        flows: Mapping[str, Flow],
        *,
        sweep_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.runner = runner
        self.flows = dict(flows)
        self.sweep_seconds = sweep_seconds
        self._clock = clock
        self._locks = {name: asyncio.Lock() for name in self.flows}
        self._again: dict[str, bool] = {}
        self._kicked: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for flow in self.flows.values():
            self.runner.check_models(flow)  # a typo in a model name fails the start, not a run
            await self.store.register(flow.name, str(flow.path) if flow.path else None, flow.digest)
            if flow.spec.schedule:
                self._tasks.append(
                    asyncio.create_task(self._schedule(flow), name=f"flow:{flow.name}")
                )
            self.kick(flow.name)  # records left waiting by a previous process
        self._tasks.append(asyncio.create_task(self._sweep(), name="flows:reviews"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._kicked.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._kicked.clear()
        await self.runner.aclose()

    def kick(self, name: str) -> None:
        """Work the flow's runnable records soon, in the background."""
        if name not in self.flows:
            return
        running = self._kicked.get(name)
        if running is not None and not running.done():
            self._again[name] = True
            return
        self._kicked[name] = asyncio.create_task(self._kick(name), name=f"flow:{name}:kick")

    async def _kick(self, name: str) -> None:
        flow = self.flows[name]
        while True:
            self._again[name] = False
            try:
                async with self._locks[name]:
                    await self.runner.run(flow, trigger="event", read_source=False)
            except asyncio.CancelledError:
                raise
            except Exception:  # a run's own failures are recorded in its run row; keep serving
                log.exception("flow %s: background run failed", name)
            if not self._again.get(name):
                return

    async def run_now(self, name: str, trigger: str = "schedule") -> None:
        async with self._locks[name]:
            await self.runner.run(self.flows[name], trigger=trigger)

    async def _schedule(self, flow: Flow) -> None:
        cron = Cron.parse(str(flow.spec.schedule))
        tz = ZoneInfo(flow.spec.timezone)
        while True:
            due = cron.next_after(self._clock(), tz)
            delay = (due - self._clock()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if await self.store.claim_schedule(flow.name, due):
                    await self.run_now(flow.name)
            except asyncio.CancelledError:
                raise
            except Exception:  # recorded in the run row; the schedule goes on
                log.exception("flow %s: scheduled run failed", flow.name)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            for flow in self.flows.values():
                try:
                    await self.runner.expire_reviews(flow)
                    # decisions taken elsewhere (the CLI on the same store) continue here too
                    if await self.store.runnable_keys(flow.name, limit=1):
                        self.kick(flow.name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("flow %s: review timeout sweep failed", flow.name)
