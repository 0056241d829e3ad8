"""The request-log writer: rows leave the hot path in O(1) and reach the database in batches.

:meth:`LogWriter.submit` appends to an in-memory queue and returns; a background task writes the
queue with multi-row ``INSERT ... ON CONFLICT (request_id) DO NOTHING`` statements, one transaction
per batch. A batch that fails is kept and retried with capped exponential backoff, and because
the insert ignores request ids already present, a retry after an ambiguous failure (the commit
reached the database but its acknowledgement did not reach us) never duplicates a row.

Where a row can be lost, and how each loss is made visible (``dropped`` / ``rejected`` counters
and an ERROR log line; nothing is lost silently):

* the queue holds ``max_queue`` rows; when the database has been unreachable long enough to fill
  it, :meth:`~LogWriter.submit` drops the new row (``dropped``, logged at most once per
  ``drop_log_interval`` with the count). This is the only loss path while the server runs
  normally, and it happens only during a database outage of ``max_queue`` rows' length;
* at shutdown, if the database stays unreachable past :meth:`~LogWriter.aclose`'s timeout, the
  rows still queued are counted in ``dropped`` and logged; so are rows submitted after
  ``aclose()`` began (a shutdown-ordering bug in the caller: stop serving, then close);
* a row the database refuses by its content (a NOT NULL or type violation: retrying cannot
  help) is isolated by splitting its batch, then counted in ``rejected`` and logged by request id,
  so one bad row never blocks the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import random
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.sql.dml import ReturningInsert

from aiwire.store.db import Database, StoreError
from aiwire.store.models import RequestLog

log = logging.getLogger("aiwire.store.writer")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RequestLogRow:
    """One request's log row, built on the hot path: a plain slotted dataclass, no validation
    (not frozen: a frozen dataclass sets each of its fields through ``object.__setattr__``).

    ``request_id`` must be unique per request (it makes writes idempotent). ``prompt`` and
    ``completion`` are written only if the writer was created with ``store_content=True``.
    """

    request_id: str
    model: str
    endpoint: str
    status: int
    ts: datetime = field(default_factory=_utcnow)
    key_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    retries: int = 0
    fallback: bool = False
    stream: bool = False
    prompt: str | None = None
    completion: str | None = None
    team: str | None = None
    cost_usd: float = 0.0
    cache_hit: bool = False


_FIELDS = tuple(f.name for f in fields(RequestLogRow))
_CONTENT_FIELDS = ("prompt", "completion")


def _insert_ignoring_duplicates() -> ReturningInsert[tuple[int]]:
    """``INSERT ... ON CONFLICT (request_id) DO NOTHING RETURNING id`` (PostgreSQL).

    Executed with a list of rows, SQLAlchemy's "insertmanyvalues" sends it as multi-row
    ``VALUES`` statements from one cached compilation (building a 500-row ``.values()`` construct
    instead costs ~10x more in compilation); ``RETURNING`` tells exactly which rows were new.
    """
    return (
        pg_insert(RequestLog)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(RequestLog.id)
    )


class _SqliteRows:
    """Multi-row ``INSERT ... ON CONFLICT (request_id) DO NOTHING`` texts for SQLite, one per
    piece size, with the values converted by the columns' own SQLAlchemy bind processors.

    Why not the PostgreSQL path: aiosqlite runs each driver call (cursor, execute, fetch,
    close, commit) in its own thread and hands the result back through the event loop, so
    every call waits behind one full turn of a busy loop. ``RETURNING`` through SQLAlchemy's
    "insertmanyvalues" made ~28 such round trips per 512 rows; under saturating load that
    capped the writer near 1,000 rows/s, below the gateway's request rate, and its queue (and
    the process's memory) grew for as long as the load lasted (bench/RESULTS.md, "Memory").
    Here a 512-row piece is one statement (cursor, execute, close) and the number of new rows
    is its change count: 5 round trips per 512 rows, commit included.
    """

    def __init__(self, dialect: Dialect) -> None:
        columns = RequestLog.__table__.c
        self.fields = operator.attrgetter(*_FIELDS)
        # Only a few columns convert their values (timestamps, booleans); None stays None.
        self.convert = [
            (i, process)
            for i, name in enumerate(_FIELDS)
            if (process := columns[name].type.bind_processor(dialect)) is not None
        ]
        self.content = tuple(_FIELDS.index(n) for n in _CONTENT_FIELDS)
        self.head = f"INSERT INTO {RequestLog.__tablename__} ({', '.join(_FIELDS)}) VALUES "
        self.one = "(" + ",".join("?" * len(_FIELDS)) + ")"
        self.texts: dict[int, str] = {}
        # SQLite >= 3.32 allows 32766 bound values per statement; older builds 999.
        limit = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
        self.largest = 1 << min(9, (limit // len(_FIELDS)).bit_length() - 1)

    def text(self, n: int) -> str:
        sql = self.texts.get(n)
        if sql is None:
            sql = self.texts[n] = (
                self.head + ",".join([self.one] * n) + " ON CONFLICT (request_id) DO NOTHING"
            )
        return sql

    def values(self, rows: list[RequestLogRow], store_content: bool) -> list[Any]:
        """The rows' values, flat, in column order, as the columns' bind processors make them."""
        flat: list[Any] = []
        fields, convert = self.fields, self.convert
        blank = () if store_content else self.content
        for row in rows:
            values = list(fields(row))
            for i, process in convert:
                if values[i] is not None:
                    values[i] = process(values[i])
            for i in blank:
                values[i] = None
            flat += values
        return flat


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver exception SQLAlchemy wrapped, and their causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo.extend(
            [
                current.__cause__,
                current.__context__,
                orig if isinstance(orig, BaseException) else None,
            ]
        )


def _is_row_error(exc: Exception) -> bool:
    """Errors caused by a row's content, which no retry can fix (as opposed to an unreachable
    or locked database, a missing table, a timeout: all worth retrying)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    # A StatementError that is not a DBAPIError failed before reaching the database: a bind
    # value our types refused (e.g. a naive timestamp).
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True
    # asyncpg checks values client-side and SQLAlchemy wraps its refusal in a generic
    # DBAPIError; the TypeError / ValueError / OverflowError underneath gives it away.
    return any(isinstance(e, TypeError | ValueError | OverflowError) for e in _causes(exc))


class LogWriter:
    """Batches :class:`RequestLogRow` objects into the ``request_log`` table in the background.

    Use from the event loop's thread. ``submit`` starts the background task on first use (or call
    :meth:`start`); ``async with LogWriter(...)`` closes it on exit.
    """

    def __init__(
        self,
        database: Database,
        *,
        batch_size: int = 512,
        flush_interval: float = 0.5,
        max_queue: int = 100_000,
        store_content: bool = False,
        drop_log_interval: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        self._db = database
        self._sqlite = (
            _SqliteRows(database.engine.dialect) if database.dialect == "sqlite" else None
        )
        self._statement = _insert_ignoring_duplicates()
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.store_content = store_content
        self.drop_log_interval = drop_log_interval
        self.max_backoff = max_backoff

        #: Rows written to the table by this writer.
        self.written = 0
        #: Rows whose request_id was already in the table (a retried batch, or a resubmission).
        self.duplicates = 0
        #: Rows lost: queue full, submitted after close, or unwritten when aclose() timed out.
        self.dropped = 0
        #: Rows the database refused by content (logged with their request id).
        self.rejected = 0
        #: Batch attempts that failed and were retried.
        self.failed_batches = 0

        self._queue: deque[RequestLogRow] = deque()
        self._accepted = 0  # rows ever accepted by submit()
        self._settled = 0  # rows whose fate is final: written, duplicate or rejected
        self._inflight = 0  # rows taken off the queue by the batch being written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._drops_unreported = 0
        self._last_drop_log = float("-inf")

    # -- hot path --

    def submit(self, row: RequestLogRow) -> None:
        """Queue ``row`` for writing. O(1); never blocks, never awaits, never raises for a full
        queue (see the module docstring for when a row is dropped instead)."""
        if self._closing:
            self._drop("submitted after the writer was closed")
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            self._drop("queue full: the database is not keeping up or is unreachable")
            return
        queue.append(row)
        self._accepted += 1
        if self._task is None:
            self._start_if_loop()
        if len(queue) == 1 or len(queue) == self.batch_size:
            self._wake.set()

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_log >= self.drop_log_interval:
            self._report_drops(reason, now)

    def _report_drops(self, reason: str, now: float) -> None:
        log.error(
            "request log: %d row(s) dropped (%s); %d dropped in total",
            self._drops_unreported,
            reason,
            self.dropped,
        )
        self._drops_unreported = 0
        self._last_drop_log = now

    # -- counters --

    @property
    def queued(self) -> int:
        """Rows accepted but not yet settled (queued or in the batch being written)."""
        return self._accepted - self._settled

    def stats(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "written": self.written,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "failed_batches": self.failed_batches,
        }

    # -- lifecycle --

    def start(self) -> None:
        """Start the background task (needs a running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aiwire-log-writer"
            )
            self._task.add_done_callback(self._task_done)

    def _start_if_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: start() or flush() will
            self.start()

    async def __aenter__(self) -> LogWriter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every row submitted before this call is written (or rejected)."""
        target = self._accepted
        if self._settled >= target:
            return
        self.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._wake.set()
        await asyncio.wait_for(future, timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop accepting rows, write everything queued, stop the task.

        If the database does not take the remaining rows within ``timeout`` seconds, they are
        counted in ``dropped`` and logged: at that point the process is going away regardless.
        """
        if self._closing and self._task is None:
            return
        self._closing = True
        if self._task is None and self._queue:
            self.start()
        task = self._task
        if task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                lost = len(self._queue) + self._inflight
                self._queue.clear()
                self.dropped += lost
                self._settled = self._accepted
                log.error(
                    "request log: %d row(s) not confirmed written: the store at %s did not "
                    "accept them within %.1fs of shutdown",
                    lost,
                    self._db.display_url,
                    timeout,
                )
            self._task = None
        if self._drops_unreported:
            self._report_drops("during shutdown", time.monotonic())
        self._fail_waiters(StoreError("the request-log writer closed before writing these rows"))

    # -- background task --

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # a bug: _run handles database errors itself
            log.error("request log writer stopped unexpectedly", exc_info=exc)
            self._task = None
            self._fail_waiters(exc)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_exception(exc)

    def _urgent(self) -> bool:
        return self._closing or bool(self._waiters)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(queue) < self.batch_size and not self._urgent():
                # Give a partial batch up to flush_interval to fill.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            while queue:
                n = min(self.batch_size, len(queue))
                batch = [queue.popleft() for _ in range(n)]
                self._inflight = n
                await self._write(batch)
                self._inflight = 0
                self._settle(n)

    def _settle(self, n: int) -> None:
        self._settled += n
        if self._waiters:
            ready = [f for target, f in self._waiters if target <= self._settled]
            self._waiters = [(t, f) for t, f in self._waiters if t > self._settled]
            for future in ready:
                if not future.done():
                    future.set_result(None)

    def _params(self, row: RequestLogRow) -> dict[str, Any]:
        params = {name: getattr(row, name) for name in _FIELDS}
        if not self.store_content:
            for name in _CONTENT_FIELDS:
                params[name] = None
        return params

    async def _write(self, batch: list[RequestLogRow]) -> None:
        """Write ``batch`` until it is in the table: retried on database errors (forever, with
        capped backoff), split in halves on content errors to isolate the bad rows."""
        pending: deque[list[RequestLogRow]] = deque([batch])
        attempt = 0
        while pending:
            chunk = pending.popleft()
            try:
                inserted = await self._insert(chunk)
            except Exception as exc:  # every failure keeps the rows; the branch decides how
                if _is_row_error(exc):
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        pending.extendleft([chunk[half:], chunk[:half]])
                    else:
                        self.rejected += 1
                        log.error(
                            "request log: row %s rejected by the database: %s",
                            chunk[0].request_id,
                            self._db.describe(exc),
                        )
                    continue
                self.failed_batches += 1
                delay = min(self.max_backoff, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "request log: writing %d row(s) failed (attempt %d), retrying in %.2fs: %s",
                    len(chunk),
                    attempt + 1,
                    delay,
                    self._db.describe(exc),
                )
                attempt += 1
                pending.appendleft(chunk)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.written += inserted
            self.duplicates += len(chunk) - inserted

    async def _insert(self, rows: list[RequestLogRow]) -> int:
        """Insert rows in one transaction; return how many were new (not already present).

        The rows go in pieces whose sizes are powers of two (a 300-row batch: 256 + 32 + 8 + 4),
        so the multi-row statements take at most ~10 shapes. Every distinct row count is its own
        SQL text, compiled and prepared once and kept in SQLAlchemy's and the driver's statement
        caches: with batch sizes that vary with load, those caches grew the gateway's memory by
        tens of megabytes (measured: +75 MB over 320 batches of random sizes; flat with this).
        """
        inserted = 0
        sqlite = self._sqlite
        async with self._db.engine.begin() as conn:
            if sqlite is not None:
                for start, stop in _pieces(len(rows), sqlite.largest):
                    values = sqlite.values(rows[start:stop], self.store_content)
                    result = await conn.exec_driver_sql(sqlite.text(stop - start), tuple(values))
                    inserted += result.rowcount
            else:
                params = [self._params(r) for r in rows]
                for start, stop in _pieces(len(rows)):
                    result = await conn.execute(self._statement, params[start:stop])
                    inserted += len(result.all())
        return inserted


def _pieces(n: int, largest: int = 512) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` slices of ``range(n)`` whose lengths are powers of two, largest first."""
    start = 0
    while start < n:
        size = min(largest, 1 << ((n - start).bit_length() - 1))
        yield start, start + size
        start += size
