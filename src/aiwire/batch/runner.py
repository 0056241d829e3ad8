"""The batch worker: claims lines, runs them through the router, records their outcomes, and
moves batches through their lifecycle.

One loop per worker process (the gateway runs one, ``aiwire worker`` runs one, a local
``aiwire batch run`` runs one for its batch):

* **dispatch**: while fewer than ``max_concurrency`` lines are in flight, claim more (in line
  order). Pacing is the router's: each line waits in its deployment's queue under the
  configured RPM/TPM (shared through Redis between workers when configured), so concurrency
  only bounds how many lines wait there;
* **housekeeping**, every ``poll_interval`` and whenever this worker runs dry: re-queue lines
  whose worker died (lease over), expire a batch past its window (pending lines ``expired``,
  in-flight ones finish), cancel (pending lines ``cancelled``), finalize a batch with no open
  line (output and error files), and step native batches (submit, poll, map results);
* **heartbeat**: every ``lease / 3`` seconds the worker renews the lease of everything it holds.

Stopping lets in-flight lines finish for ``grace`` seconds, then puts the rest back to
``pending`` for any worker to take (their calls may have reached the provider: at-least-once
for those lines only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from aiwire import errors
from aiwire.batch import lines
from aiwire.batch.budget import BudgetGuard
from aiwire.batch.execute import Context, Executed, LineExecutor
from aiwire.batch.records import BatchRecord, Claimed, Counts, LineResult
from aiwire.batch.store import BatchNotFound, BatchStore
from aiwire.limits.admission import Refused, Ticket
from aiwire.server import openai_wire
from aiwire.types import new_id

log = logging.getLogger("aiwire.batch")


@dataclass(slots=True)
class WorkerSettings:
    #: Lines this worker has in flight at once (waiting for pacing or for their answer).
    max_concurrency: int = 64
    #: Seconds a claimed line stays this worker's without a heartbeat.
    lease: float = 60.0
    #: How often to look for new batches, expiries, cancellations and finished batches.
    poll_interval: float = 1.0
    #: How often to ask a provider about a native batch.
    native_poll_interval: float = 30.0
    #: Seconds in-flight lines get to finish when the worker stops.
    grace: float = 10.0


LineObserver = Callable[[Claimed, LineResult], None]


def worker_id() -> str:
    host = socket.gethostname().split(".")[0][:24]
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class BatchWorker:
    def __init__(
        self,
        store: BatchStore,
        executor: LineExecutor,
        *,
        settings: WorkerSettings | None = None,
        budget: BudgetGuard | None = None,
        native: NativeStepper | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings or WorkerSettings()
        self.budget = budget
        self.native = native
        self.owner = owner or worker_id()
        #: Called after each line's outcome is recorded (progress bars, tests).
        self.on_line: list[LineObserver] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = False
        self._stopping = False
        self._runnable: list[str] = []
        self._contexts: dict[str, Context] = {}
        self._native_polled: dict[str, float] = {}

    # -- control -------------------------------------------------------------------------------

    def kick(self) -> None:
        """Look for work now (a batch was just created or cancelled)."""
        self._idle = True
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to end (in-flight lines get ``grace`` seconds)."""
        self._stopping = True
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def serve(self) -> None:
        """Work on every batch until :meth:`stop`."""
        await self._loop(None)

    async def run(self, batch_id: str) -> BatchRecord:
        """Work on one batch until it is final (a local run: nobody else holds its lines, so
        the ones in flight when a previous run died are taken back at once)."""
        await self.store.release(batch_id=batch_id)
        await self._loop(batch_id)
        return await self.store.get(batch_id)

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self, only: str | None) -> None:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        settings = self.settings
        try:
            next_check = 0.0
            while not self._stopping:
                if self._idle or time.monotonic() >= next_check:
                    self._idle = False
                    if await self._housekeeping(only):
                        return
                    next_check = time.monotonic() + settings.poll_interval
                free = settings.max_concurrency - len(self._tasks)
                if free > 0 and self._runnable:
                    claimed = await self._claim(free)
                    for line in claimed:
                        self._spawn(line)
                    if claimed and len(claimed) == free:
                        continue  # there may be more: fill the free slots first
                self._wake.clear()
                timeout = max(0.0, next_check - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._drain()

    async def _claim(self, n: int) -> list[Claimed]:
        try:
            return await self.store.claim(self._runnable, self.owner, n, self.settings.lease)
        except Exception as exc:  # the store is unreachable: keep running, try at the next poll
            log.warning("claiming batch lines failed: %s", exc)
            self._runnable = []
            return []

    def _spawn(self, line: Claimed) -> None:
        task = asyncio.get_running_loop().create_task(
            self._line(line, self._contexts[line.batch_id])
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("batch line task failed", exc_info=task.exception())
        if not self._tasks:
            self._idle = True  # ran dry: see at once whether a batch is finished
        self._wake.set()

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        try:
            released = await self.store.release(owner=self.owner)
        except Exception as exc:  # the store is gone: the leases will run out instead
            log.warning("could not release this worker's batch lines: %s", exc)
            return
        if released:
            log.info("put %d in-flight batch line(s) back in the queue", released)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            try:
                await self.store.renew(self.owner, self.settings.lease)
            except Exception as exc:  # a store hiccup: the next beat tries again
                log.warning("renewing batch leases failed: %s", exc)

    # -- one line ------------------------------------------------------------------------------

    async def _line(self, line: Claimed, ctx: Context) -> None:
        ticket: Ticket | None = None
        try:
            refused = None
            if self.budget is not None:
                try:
                    request = lines.parse_request(ctx.endpoint, line.body)
                    ticket = await self.budget.reserve(ctx, line, request)
                except (Refused, errors.BadRequestError) as exc:
                    refused = exc
            if refused is not None:
                executed = Executed(_failed(refused), None)
            else:
                executed = await self.executor.run(line, ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not leave the line in flight forever
            log.exception("batch %s line %d failed unexpectedly", line.batch_id, line.idx)
            executed = Executed(_failed(Exception()), None)
        result = executed.result
        await self._record(line, executed)
        if self.budget is not None and ticket is not None:
            tokens = executed.usage.total_tokens if executed.usage is not None else None
            try:
                await self.budget.settle(ticket, tokens, result.cost_usd)
            except Exception:  # the outcome is stored; a counter hiccup must not undo it
                log.exception("settling a batch line's budget reservation failed")
        for observer in self.on_line:
            observer(line, result)

    async def _record(self, line: Claimed, executed: Executed) -> None:
        """Store the outcome; a store outage is waited out (the answer is paid for)."""
        delay = 0.1
        while True:
            try:
                await self.store.finish(line, self.owner, executed.result, executed.log)
                return
            except Exception as exc:  # keep the result until the store takes it
                if self._stopping and delay > 5:
                    log.error("batch line %s:%d not recorded: %s", line.batch_id, line.idx, exc)
                    return
                log.warning("recording a batch line failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- housekeeping --------------------------------------------------------------------------

    async def _housekeeping(self, only: str | None) -> bool:
        """Advance every active batch; True when ``only`` is final."""
        try:
            batches = await self.store.active()
        except Exception as exc:  # the store is down: try again at the next poll
            log.warning("listing active batches failed: %s", exc)
            return False
        if only is not None:
            batches = [b for b in batches if b.id == only]
            if not batches:
                try:
                    return (await self.store.get(only, counts=False)).terminal
                except BatchNotFound:
                    return True
        runnable: list[str] = []
        for batch in batches:
            try:
                if await self._advance(batch):
                    runnable.append(batch.id)
            except errors.AIWireError as exc:  # a provider or store refusal: retried next poll
                log.warning("batch %s: %s", batch.id, exc)
            except Exception:  # one batch's failure (a bug, a store outage) must not stop the rest
                log.exception("batch %s: housekeeping failed; retrying at the next poll", batch.id)
        self._runnable = runnable
        return False

    async def _advance(self, batch: BatchRecord) -> bool:
        """One batch's step; True when its lines can be dispatched."""
        store = self.store
        if batch.mode == "native":
            if self.native is not None and self._native_due(batch):
                await self.native.step(batch, self.owner)
            return False
        if batch.status == "finalizing":
            await store.finalize(batch.id, "completed")
            return False
        await store.requeue_expired([batch.id])
        if batch.status == "cancelling":
            await self._close(batch, "cancelled", lines.CANCELLED_ERROR)
            return False
        if store.now() >= batch.expires_at:
            await self._close(batch, "expired", lines.EXPIRED_ERROR)
            return False
        counts = await store.counts(batch.id)
        if counts.open == 0:
            if await store.transition(batch.id, "finalizing", from_=("in_progress",)):
                await store.finalize(batch.id, "completed")
            return False
        self._contexts[batch.id] = Context(
            batch.id, batch.endpoint, batch.max_attempts, batch.key_id, batch.team
        )
        return counts.pending > 0

    async def _close(self, batch: BatchRecord, status: str, error: dict[str, str]) -> None:
        """Expiry or cancellation: no new line starts; the batch is final once the lines in
        flight have ended."""
        closed = await self.store.close_open_lines(batch.id, status, error)
        if closed:
            log.info("batch %s: %d line(s) %s", batch.id, closed, status)
        counts: Counts = await self.store.counts(batch.id)
        if counts.in_flight == 0:
            await self.store.finalize(batch.id, status)

    def _native_due(self, batch: BatchRecord) -> bool:
        now = time.monotonic()
        last = self._native_polled.get(batch.id)
        fresh = batch.native is None or batch.status == "cancelling"
        if last is not None and now - last < self.settings.native_poll_interval and not fresh:
            return False
        self._native_polled[batch.id] = now
        return True


class NativeStepper(Protocol):
    """What the worker asks of native mode (see :mod:`aiwire.batch.native`): submit a batch to
    its provider, or poll it and map its results back."""

    async def step(self, batch: BatchRecord, owner: str) -> None: ...


def _failed(exc: BaseException) -> LineResult:
    """A line that ends without reaching a provider: refused by a budget, or a bug."""
    status = openai_wire.status_of(exc) if isinstance(exc, errors.AIWireError) else 500
    return LineResult(
        state="errored",
        status_code=status,
        request_id=new_id("req_"),
        response=orjson.dumps(openai_wire.error_dict(exc)),
    )
