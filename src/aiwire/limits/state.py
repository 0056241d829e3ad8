"""Where limit counters live: in this process (:class:`MemoryState`) or in Redis, shared by
every replica (:class:`aiwire.limits.redis_state.RedisState`). Both implement one contract.

Three kinds of counter:

* **Sliding windows** (per-key RPM/TPM): at most ``limit`` units in any ``window`` seconds,
  exactly (a log of entries, not fixed buckets), so a 120 RPM key gets 120 requests in any
  minute, never 240 across a minute boundary. An entry's cost can be corrected afterwards
  (estimated tokens → the tokens the provider reported).
* **Budgets**: money spent in a period window plus reservations in flight. Admission reserves a
  request's maximum cost and fails if ``spent + reserved + amount > limit``; settling replaces the
  reservation by the actual cost. A reservation carries a lease: if its process dies, it expires.
* **Pacing buckets** (per deployment): the providers' own continuous-refill token buckets
  (capacity C per minute, refilled C/60 per second), kept as a theoretical arrival time (GCRA)
  so each request reserves its place in time and learns how long to wait - fair, FIFO, no
  polling. A provider 429 makes the bucket wait as long as the provider asked; a second one
  within ``RECOVERY`` seconds also cuts the rate by a fifth (more compound), and the rate
  recovers linearly over ``RECOVERY`` seconds.

``admit`` is all-or-nothing: when any window or budget refuses, nothing is recorded.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Seconds for a backed-off pacing rate to climb back to its full value.
RECOVERY = 60.0
#: What one provider 429 multiplies a pacing rate by (repeated 429s compound).
BACKOFF = 0.8
#: The lowest fraction of a deployment's rate pacing backs off to.
MIN_FACTOR = 0.1


@dataclass(slots=True)
class RateCheck:
    """``cost`` more units against at most ``limit`` per ``window`` seconds under ``key``."""

    key: str
    limit: float
    cost: float
    window: float = 60.0


@dataclass(slots=True)
class BudgetCheck:
    """Reserve ``amount`` USD under ``key`` (one budget's current window) capped at ``limit``.

    ``initial`` is the spend already recorded elsewhere (the request log) for when the counter
    does not exist yet; ``ttl`` how long the counter outlives its window (None: forever)."""

    key: str
    limit: float
    amount: float
    initial: float = 0.0
    ttl: float | None = None


@dataclass(slots=True)
class Verdict:
    """What ``admit`` decided. ``failed`` indexes the refusing check: rate checks first, then
    budgets (-1 when admitted). Per rate check: units left and seconds until the oldest entry
    leaves the window; per budget: spent + reserved after this request."""

    ok: bool
    failed: int = -1
    retry_after: float | None = None  # None when waiting can never help (cost > limit)
    remaining: list[float] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)


@dataclass(slots=True)
class PaceCheck:
    """One dimension of a deployment's pacing: ``capacity`` per minute, this request's ``cost``."""

    capacity: float
    cost: float


class LimitState(ABC):
    """Counters for limits, budgets and pacing; see the module docstring."""

    @abstractmethod
    async def admit(
        self, rid: str, rates: Sequence[RateCheck], budgets: Sequence[BudgetCheck], lease: float
    ) -> Verdict: ...

    @abstractmethod
    async def settle(
        self,
        rid: str,
        rates: Sequence[tuple[str, float]],
        budgets: Sequence[tuple[str, float]],
    ) -> list[float]:
        """Correct the window entries of ``rid`` to their actual cost and turn its budget
        reservations into actual spend; returns each budget's spend afterwards."""

    @abstractmethod
    async def spent(self, key: str) -> float | None:
        """A budget counter's recorded spend (None if it does not exist)."""

    @abstractmethod
    async def pace(self, key: str, dims: Sequence[PaceCheck], max_wait: float) -> float | None:
        """Reserve a slot in ``key``'s buckets; seconds to wait before sending, or None (nothing
        reserved) when that would be longer than ``max_wait``."""

    @abstractmethod
    async def pace_feedback(
        self,
        key: str,
        *,
        corrections: Sequence[tuple[int, float, float]] = (),
        remaining: Sequence[tuple[int, float, float]] = (),
        throttled: float | None = None,
    ) -> None:
        """Tell ``key``'s buckets what the provider said: ``corrections`` (dimension, capacity,
        actual - estimated cost), ``remaining`` (dimension, capacity, units the provider says
        are left), ``throttled`` (it answered 429: back off, nothing before that many seconds)."""

    async def aclose(self) -> None:
        return None


# --- in process ---------------------------------------------------------------------------------


class _Log:
    __slots__ = ("by_rid", "entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list[float | str]] = deque()  # [ts, cost, rid]
        self.total = 0.0
        self.by_rid: dict[str, list[float | str]] = {}

    def expire(self, cutoff: float) -> None:
        entries = self.entries
        while entries and float(entries[0][0]) <= cutoff:
            _, cost, rid = entries.popleft()
            self.total -= float(cost)
            self.by_rid.pop(str(rid), None)

    def wait_for(self, cost: float, limit: float, window: float, now: float) -> float | None:
        """Seconds until ``cost`` more fits (None: never, it is larger than the limit)."""
        if cost > limit:
            return None
        excess = self.total + cost - limit
        freed = 0.0
        for ts, c, _ in self.entries:
            freed += float(c)
            if freed >= excess:
                return max(0.0, float(ts) + window - now)
        return 0.0


class _Budget:
    __slots__ = ("reserved", "reserved_total", "spent")

    def __init__(self, spent: float) -> None:
        self.spent = spent
        self.reserved: dict[str, tuple[float, float]] = {}  # rid -> (amount, lease deadline)
        self.reserved_total = 0.0

    def expire(self, now: float) -> None:
        stale = [rid for rid, (_, deadline) in self.reserved.items() if deadline <= now]
        for rid in stale:
            self.reserved_total -= self.reserved.pop(rid)[0]


class _Bucket:
    __slots__ = ("factor0", "last_429", "tat", "throttled_at")

    def __init__(self, dims: int, now: float) -> None:
        self.tat = [now] * dims
        self.factor0 = 1.0
        self.throttled_at = -1e18  # never (finite: the recovery arithmetic stays a number)
        self.last_429 = -1e18

    def factor(self, now: float) -> float:
        return min(1.0, self.factor0 + (1.0 - self.factor0) * (now - self.throttled_at) / RECOVERY)


def pace_slot(
    tats: list[float], dims: Sequence[PaceCheck], factor: float, now: float, max_wait: float
) -> float | None:
    """The GCRA arithmetic shared by both backends (Redis runs the same in Lua): the wait, and
    ``tats`` advanced in place, or None and ``tats`` untouched."""
    new = []
    wait = 0.0
    for tat, dim in zip(tats, dims, strict=True):
        capacity = dim.capacity * factor
        inc = dim.cost * 60.0 / capacity
        base = max(tat, now)
        new.append(base + inc)
        wait = max(wait, base + inc - now - 60.0)
    if wait > max_wait + 1e-6:  # (float noise on epoch-sized times is ~1e-5 s)
        return None
    tats[:] = new
    return wait


class MemoryState(LimitState):
    """Counters in this process: exact and free, but private to it (use Redis for replicas)."""

    def __init__(self, clock: object = time.time) -> None:
        self._clock = clock  # wall time, like the Redis backend (comparable across processes)
        self._logs: dict[str, _Log] = {}
        self._budgets: dict[str, _Budget] = {}
        self._buckets: dict[str, _Bucket] = {}

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    async def admit(
        self, rid: str, rates: Sequence[RateCheck], budgets: Sequence[BudgetCheck], lease: float
    ) -> Verdict:
        now = self._now()
        verdict = Verdict(ok=True)
        logs = []
        for i, check in enumerate(rates):
            log = self._logs.get(check.key)
            if log is None:
                log = self._logs[check.key] = _Log()
            log.expire(now - check.window)
            logs.append(log)
            if log.total + check.cost > check.limit:
                verdict.ok, verdict.failed = False, i
                verdict.retry_after = log.wait_for(check.cost, check.limit, check.window, now)
        books = []
        for j, b in enumerate(budgets):
            book = self._budgets.get(b.key)
            if book is None:
                book = self._budgets[b.key] = _Budget(b.initial)
            book.expire(now)
            books.append(book)
            if verdict.ok and book.spent + book.reserved_total + b.amount > b.limit:
                verdict.ok, verdict.failed, verdict.retry_after = False, len(rates) + j, None
        for check, log in zip(rates, logs, strict=True):
            if verdict.ok:
                entry: list[float | str] = [now, check.cost, rid]
                log.entries.append(entry)
                log.by_rid[rid] = entry
                log.total += check.cost
            verdict.remaining.append(max(0.0, check.limit - log.total))
            oldest = float(log.entries[0][0]) if log.entries else now
            verdict.resets.append(max(0.0, oldest + check.window - now))
        for b, book in zip(budgets, books, strict=True):
            if verdict.ok:
                book.reserved[rid] = (b.amount, now + lease)
                book.reserved_total += b.amount
            verdict.committed.append(book.spent + book.reserved_total)
        return verdict

    async def settle(
        self,
        rid: str,
        rates: Sequence[tuple[str, float]],
        budgets: Sequence[tuple[str, float]],
    ) -> list[float]:
        for key, actual in rates:
            log = self._logs.get(key)
            entry = log.by_rid.get(rid) if log is not None else None
            if log is not None and entry is not None:
                log.total += actual - float(entry[1])
                entry[1] = actual
        out = []
        for key, actual in budgets:
            book = self._budgets.get(key)
            if book is None:
                book = self._budgets[key] = _Budget(0.0)
            held = book.reserved.pop(rid, None)
            if held is not None:
                book.reserved_total -= held[0]
            book.spent += actual
            out.append(book.spent)
        return out

    async def spent(self, key: str) -> float | None:
        book = self._budgets.get(key)
        return None if book is None else book.spent

    async def pace(self, key: str, dims: Sequence[PaceCheck], max_wait: float) -> float | None:
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(len(dims), now)
        return pace_slot(bucket.tat, dims, bucket.factor(now), now, max_wait)

    async def pace_feedback(
        self,
        key: str,
        *,
        corrections: Sequence[tuple[int, float, float]] = (),
        remaining: Sequence[tuple[int, float, float]] = (),
        throttled: float | None = None,
    ) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        now = self._now()
        factor = bucket.factor(now)
        for dim, capacity, delta in corrections:
            bucket.tat[dim] += delta * 60.0 / (capacity * factor)
        for dim, capacity, left in remaining:
            # Never more optimistic than the provider: its level is at most `left`.
            bucket.tat[dim] = max(bucket.tat[dim], now + 60.0 - left * 60.0 / (capacity * factor))
        if throttled is not None:
            if now - bucket.last_429 < RECOVERY:  # not a stray one: the rate really is lower
                bucket.factor0 = max(MIN_FACTOR, factor * BACKOFF)
                bucket.throttled_at = now
            bucket.last_429 = now
            bucket.tat = [max(t, now + 60.0 + throttled) for t in bucket.tat]
