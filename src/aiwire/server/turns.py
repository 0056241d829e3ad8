"""At most a few new requests start in one turn of the event loop, so answers already streaming
keep their pace when a crowd of requests arrives at once.

The event loop runs, in each turn, every callback that was ready when the turn began, then polls
the sockets. When a few hundred requests arrive together, the turn that starts them all runs
each one's set-up (parsing, auth, routing, the upstream call: a few hundred microseconds apiece)
before any socket is read again, and every streamed chunk that arrived meanwhile waits the
whole turn: with 1,000 concurrent streams that was gaps of 100 ms and more between chunks.
:class:`TurnGate` lets ``per_turn`` requests start per turn and queues the rest, in order, for
the next turns. In-flight work never passes through it, so it is never held back; a burst of
new requests only waits a few turns (each a few milliseconds) longer for its start.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnGate:
    def __init__(self, per_turn: int = 8) -> None:
        if per_turn < 1:
            raise ValueError("per_turn must be at least 1")
        self.per_turn = per_turn
        self._started = 0  # requests started in the current turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_armed = False

    async def enter(self) -> None:
        """Return once this request may start (at once unless ``per_turn`` already did)."""
        if self._started < self.per_turn and not self._waiting:
            self._started += 1
            self._arm()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._arm()
        await waiter  # a cancelled waiter is skipped by _next_turn

    def _arm(self) -> None:
        if not self._turn_armed:
            self._turn_armed = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """Runs once per loop turn while requests start: a new allowance, given to the queue."""
        self._turn_armed = False
        self._started = 0
        waiting = self._waiting
        while waiting and self._started < self.per_turn:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._started += 1
        if self._started or waiting:
            self._arm()
