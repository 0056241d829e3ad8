"""Limits that survive a Redis outage: Redis first, this replica's own counters while it is down.

With ``server.redis`` every replica keeps its limit counters, budget reservations and pacing
buckets in Redis (:class:`~aiwire.limits.redis_state.RedisState`). When Redis cannot be reached
(refused, timed out, failing over), a gateway that answered 500 to every limited request would
turn a cache outage into a full one. :class:`FallbackState` instead:

- answers from a fresh in-process :class:`~aiwire.limits.state.MemoryState` for ``retry_after``
  seconds, then tries Redis again (one request pays the timeout, not all of them);
- seeds that state from the truth: budget counters start from the request log's spend
  (``BudgetCheck.initial``), so a budget already spent stays spent;
- when Redis answers again, adds the spend settled locally to each Redis budget counter that
  still exists (one that expired or was lost is re-seeded from the request log, which has it),
  then drops the local counters.

While Redis is down each replica enforces limits on its own: a key's 120 RPM shared by three
replicas can become up to 3 x 120, and parallel requests on different replicas may together
pass a budget by up to one request's reservation per replica. The outage is logged once when it
starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from aiwire.limits.redis_state import RedisState
from aiwire.limits.state import BudgetCheck, LimitState, MemoryState, PaceCheck, RateCheck, Verdict

log = logging.getLogger("aiwire.limits")

T = TypeVar("T")

#: What an unreachable or failing Redis raises through redis-py.
UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)
#: The request id the outage's spend is settled under (no reservation has it).
_FLUSH_RID = "aiwire-outage-flush"


class FallbackState(LimitState):
    """:class:`RedisState` with an in-process stand-in while Redis is unreachable."""

    def __init__(
        self,
        primary: RedisState,
        *,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.retry_after = retry_after
        self._clock = clock
        #: The stand-in while Redis is down (None while it is up).
        self._local: MemoryState | None = None
        self._retry_at = 0.0
        #: Spend settled on the stand-in, per budget counter: added to Redis on recovery.
        self._outage_spend: dict[str, float] = {}

    @property
    def redis(self) -> Any:
        return self.primary.redis

    @property
    def degraded(self) -> bool:
        """Whether limits are being counted in this process because Redis is unreachable."""
        return self._local is not None

    async def ping(self) -> bool:
        return await self.primary.ping()

    async def _call(
        self,
        remote: Callable[[], Awaitable[T]],
        local: Callable[[MemoryState], Awaitable[T]],
    ) -> T:
        if self._local is not None and self._clock() < self._retry_at:
            return await local(self._local)
        try:
            result = await remote()
        except UNAVAILABLE as exc:
            if self._local is None:
                log.warning(
                    "Redis is unreachable (%s): limits, budgets and pacing are counted in this "
                    "process until it answers again",
                    type(exc).__name__,
                )
                self._local = MemoryState()
                self._outage_spend.clear()
            self._retry_at = self._clock() + self.retry_after
            return await local(self._local)
        if self._local is not None:
            await self._recover()
        return result

    async def _recover(self) -> None:
        spend, self._outage_spend = self._outage_spend, {}
        self._local = None
        try:
            for key, amount in spend.items():
                if amount and await self.primary.spent(key) is not None:
                    await self.primary.settle(_FLUSH_RID, [], [(key, amount)])
        except UNAVAILABLE as exc:  # down again at once: the request log still has the spend
            log.warning("Redis failed while taking back the outage's spend (%s)", exc)
            return
        log.warning("Redis answers again: limits are shared by the replicas again")

    # -- the LimitState contract ---------------------------------------------------------------

    async def admit(
        self, rid: str, rates: Sequence[RateCheck], budgets: Sequence[BudgetCheck], lease: float
    ) -> Verdict:
        return await self._call(
            lambda: self.primary.admit(rid, rates, budgets, lease),
            lambda state: state.admit(rid, rates, budgets, lease),
        )

    async def settle(
        self,
        rid: str,
        rates: Sequence[tuple[str, float]],
        budgets: Sequence[tuple[str, float]],
    ) -> list[float]:
        async def local(state: MemoryState) -> list[float]:
            for key, actual in budgets:
                self._outage_spend[key] = self._outage_spend.get(key, 0.0) + actual
            # A counter this process has not seen (the request was admitted by Redis) is left
            # unborn, so the next local admission seeds it from the request log; its spend
            # reaches Redis on recovery. Its "spend after" is unknown: 0 (no soft alert).
            known = [await state.spent(key) is not None for key, _ in budgets]
            mine = [b for b, k in zip(budgets, known, strict=True) if k]
            after = iter(await state.settle(rid, rates, mine))
            return [next(after) if k else 0.0 for k in known]

        return await self._call(lambda: self.primary.settle(rid, rates, budgets), local)

    async def spent(self, key: str) -> float | None:
        return await self._call(lambda: self.primary.spent(key), lambda s: s.spent(key))

    async def pace(self, key: str, dims: Sequence[PaceCheck], max_wait: float) -> float | None:
        return await self._call(
            lambda: self.primary.pace(key, dims, max_wait),
            lambda state: state.pace(key, dims, max_wait),
        )

    async def pace_feedback(
        self,
        key: str,
        *,
        corrections: Sequence[tuple[int, float, float]] = (),
        remaining: Sequence[tuple[int, float, float]] = (),
        throttled: float | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {
            "corrections": corrections,
            "remaining": remaining,
            "throttled": throttled,
        }
        await self._call(
            lambda: self.primary.pace_feedback(key, **kwargs),
            lambda state: state.pace_feedback(key, **kwargs),
        )

    async def aclose(self) -> None:
        await self.primary.aclose()


__all__ = ["UNAVAILABLE", "FallbackState"]
