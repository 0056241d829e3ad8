"""A stream's time limits with one timer per stream instead of one per chunk.

``asyncio.timeout`` around every ``await`` of a chunk costs a context manager, a timer handle
created and cancelled, per chunk. :class:`Watchdog` keeps a single timer handle per stream: each
wait only records its deadline (a clock read and a comparison); when the timer fires it looks
at the deadline in force and either re-arms itself or cancels the waiting task, exactly as
``asyncio.timeout`` would (``Task.cancel`` then ``Task.uncancel``, so an outside cancellation
arriving at the same time is never swallowed).

Time spent while disarmed (the consumer holding a chunk, a slow client) never counts.
"""

from __future__ import annotations

import asyncio


class Watchdog:
    """Deadlines for successive waits of the current task.

    ``arm(seconds)`` before a wait, ``disarm()`` after it; if the task was cancelled by the
    watchdog, ``expired(exc)`` on the resulting ``CancelledError`` says so (and un-cancels the
    task) so the caller can raise its own timeout error instead.
    """

    __slots__ = ("_base", "_deadline", "_end", "_fired", "_handle", "_loop", "_task", "_timer_at")

    def __init__(self, total: float | None = None) -> None:
        """``total``: seconds from now that no wait may extend past, whatever it asks for."""
        self._loop = asyncio.get_running_loop()
        self._end = float("inf") if total is None else self._loop.time() + total
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Watchdog needs to run inside a task")
        self._task = task
        self._base = task.cancelling()
        self._deadline: float | None = None  # None: disarmed
        self._handle: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._fired = False

    def arm(self, seconds: float) -> None:
        deadline = self._loop.time() + seconds
        if deadline > self._end:
            deadline = self._end
        self._deadline = deadline
        if self._handle is None or deadline < self._timer_at:
            if self._handle is not None:
                self._handle.cancel()
            self._timer_at = deadline
            self._handle = self._loop.call_at(deadline, self._check)

    def disarm(self) -> None:
        self._deadline = None

    def close(self) -> None:
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # nothing is waiting; the next arm() schedules a new timer
        if self._loop.time() >= deadline:
            self._deadline = None
            self._fired = True
            self._task.cancel()
        else:
            self._timer_at = deadline
            self._handle = self._loop.call_at(deadline, self._check)

    @property
    def past_end(self) -> bool:
        """Whether the ``total`` time is used up."""
        return self._loop.time() >= self._end

    def expired(self) -> bool:
        """Call on a ``CancelledError`` from an armed wait: True if the watchdog caused it (the
        task is then un-cancelled), False if the cancellation came from elsewhere (re-raise)."""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._base
