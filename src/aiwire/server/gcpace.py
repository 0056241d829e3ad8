"""The garbage collector on the gateway's schedule: a short young pass every 20 ms, its
survivors set aside, and a full pass rarely.

CPython's automatic collection paused the gateway for 10-120 ms at a time with 1,000 concurrent
streams (bench/RESULTS.md), which is what made streamed chunks miss their pace. Two causes: the
young generation is collected when allocations minus deallocations of *any* tracked object pass
a threshold, so while old objects die (streams ending) as new ones are made (streams starting)
the young generation grows to 100,000+ objects before it is scanned; and every older-generation
pass scans all the objects of every stream in flight.

:class:`GcPacer` (for a dedicated server process, as ``aiwire serve`` runs) turns automatic
collection off and, every ``interval`` seconds, collects the young generation (what was made
since the last tick: at 0.1 s that was still up to ~30 ms of work while a thousand streams
started; at 20 ms a few milliseconds) and then moves the
survivors out of the collector's sight (``gc.freeze``), so no later pass scans them again. Objects
set aside are still freed by reference counting the moment they are unused; only a reference
cycle among them would wait, and requests make almost none (measured: ~10 objects a second at
full load). Those are freed by a full pass every ``full_every`` seconds (unfreeze, collect all,
freeze again: one pause of ~0.1-0.3 s per ``full_every``), or sooner if the objects set aside
grow past twice what the last full pass kept plus ``slack`` (a workload that does make cycles
then pays more full passes instead of growing). Counting what is set aside walks the whole list
(~4 ms per 300,000 objects), so that is checked every ``check_every`` seconds, not every tick.
"""

from __future__ import annotations

import asyncio
import gc


class GcPacer:
    def __init__(
        self,
        *,
        interval: float = 0.02,
        full_every: float = 600.0,
        slack: int = 200_000,
        check_every: float = 10.0,
    ) -> None:
        self.interval = interval
        self.full_every = full_every
        self.slack = slack
        self.check_every = check_every
        self._next_check = 0.0
        self._kept = 0  # objects set aside after the last full pass
        self.young_passes = 0
        self.full_passes = 0
        self._handle: asyncio.TimerHandle | None = None
        self._next_full = 0.0
        self._was_enabled = True

    def start(self) -> None:
        """Collect everything once, set it aside, and take over from automatic collection."""
        loop = asyncio.get_running_loop()
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        self._kept = gc.get_freeze_count()
        self._next_check = loop.time() + self.check_every
        self._next_full = loop.time() + self.full_every
        self._handle = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = now >= self._next_full
        if not due and now >= self._next_check:
            self._next_check = now + self.check_every
            due = gc.get_freeze_count() > 2 * self._kept + self.slack
        if due:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._kept = gc.get_freeze_count()
            self.full_passes += 1
            self._next_full = loop.time() + self.full_every
        else:
            gc.collect(0)
            gc.freeze()
            self.young_passes += 1
        self._handle = loop.call_later(self.interval, self._tick)
