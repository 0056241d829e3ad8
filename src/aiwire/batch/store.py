"""The batch store: files, batches and every line's durable state, on SQLite or PostgreSQL.

What makes a batch resumable and safe to share between workers:

* a line is **claimed** (``pending`` → ``in_flight``, ``attempts + 1``, owner and lease) and that
  is committed *before* its upstream call. On PostgreSQL the claim is one
  ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, so any number of workers on
  any number of machines take disjoint lines without waiting for each other; SQLite, a single
  writer, runs the same statement (``FOR UPDATE`` renders as nothing there);
* its **outcome** (state, status code, response body, tokens, cost) and its ``request_log`` row
  are written in *one* transaction, guarded by ``owner = me AND state = 'in_flight'``: a line
  whose call completed is never run again, and the log gets exactly one row per recorded call;
* a worker that dies leaves its lines ``in_flight`` until their lease runs out
  (:meth:`BatchStore.requeue_expired`), then another worker re-dispatches them: at-least-once
  for the lines in flight at the crash, exactly-once for all others.

Batch transitions are conditional updates (``WHERE status IN (...)``), so each ``*_at``
timestamp is set once, by whichever worker won the transition.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aiwire.batch import lines as batch_lines
from aiwire.batch.lines import LineError, LineSpec
from aiwire.batch.records import (
    ACTIVE,
    TERMINAL,
    BatchRecord,
    Claimed,
    Counts,
    FileRecord,
    LineResult,
)
from aiwire.errors import AIWireError
from aiwire.store.db import Database
from aiwire.store.models import Batch, BatchFile, BatchLine, RequestLog
from aiwire.store.writer import RequestLogRow

#: Lines inserted per statement when a batch is created.
INSERT_CHUNK = 1000
_LOG_FIELDS = tuple(f.name for f in fields(RequestLogRow))


class BatchNotFound(AIWireError, LookupError):
    default_status = 404
    openai_type = "invalid_request_error"


class _Lost(Exception):
    """A race another worker won."""


class BatchStateError(AIWireError):
    """The batch cannot do this in its current status (e.g. cancel a completed batch)."""

    default_status = 400
    openai_type = "invalid_request_error"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


@dataclass(slots=True)
class Draft:
    """Everything a new batch is created from (its lines are passed alongside)."""

    endpoint: str
    input_file_id: str
    completion_window: str
    window_seconds: float
    key_id: str | None = None
    team: str | None = None
    mode: str = "emulate"
    model: str | None = None
    metadata: dict[str, Any] | None = None
    max_attempts: int = 5
    estimate_usd: float = 0.0
    run_key: str | None = None


class BatchStore:
    def __init__(self, database: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.db = database
        self._clock = clock
        self._log_insert = (pg_insert if database.dialect == "postgresql" else sqlite_insert)(
            RequestLog
        ).on_conflict_do_nothing(index_elements=["request_id"])
        # SQLite has one writer at a time; queueing writers here is cheaper than letting
        # them sleep in its busy handler.
        self._write_lock = asyncio.Lock() if database.dialect == "sqlite" else None

    def now(self) -> datetime:
        return self._clock()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.db.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.db.engine.begin() as conn:
            yield conn

    # -- files ---------------------------------------------------------------------------------

    async def add_file(
        self, *, key_id: str | None, purpose: str, filename: str, content: bytes
    ) -> FileRecord:
        record = FileRecord(new_file_id(), key_id, purpose, filename, len(content), self.now())
        row = {
            "id": record.id,
            "key_id": key_id,
            "purpose": purpose,
            "filename": filename,
            "bytes": record.size,
            "content": content,
            "created_at": record.created_at,
        }
        async with self._tx() as conn:
            await conn.execute(insert(BatchFile), [row])
        return record

    async def file(self, file_id: str) -> FileRecord | None:
        query = select(
            BatchFile.id,
            BatchFile.key_id,
            BatchFile.purpose,
            BatchFile.filename,
            BatchFile.size,
            BatchFile.created_at,
        ).where(BatchFile.id == file_id)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _file(row)

    async def file_content(self, file_id: str) -> bytes | None:
        async with self.db.engine.connect() as conn:
            value = await conn.scalar(select(BatchFile.content).where(BatchFile.id == file_id))
        return None if value is None else bytes(value)

    async def files(
        self, *, key_id: str | None, everyone: bool, purpose: str | None, limit: int
    ) -> builtins.list[FileRecord]:
        query = select(
            BatchFile.id,
            BatchFile.key_id,
            BatchFile.purpose,
            BatchFile.filename,
            BatchFile.size,
            BatchFile.created_at,
        ).order_by(BatchFile.created_at.desc(), BatchFile.id.desc())
        if not everyone:
            query = query.where(BatchFile.key_id == key_id)
        if purpose:
            query = query.where(BatchFile.purpose == purpose)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_file(r) for r in rows]

    # -- batches -------------------------------------------------------------------------------

    async def create(
        self, draft: Draft, specs: Sequence[LineSpec], errors: Sequence[LineError] = ()
    ) -> BatchRecord:
        """Store a new batch: ``in_progress`` with its lines, or, when ``errors`` is not empty,
        ``failed`` (validation) with those errors and no lines."""
        now = self.now()
        failed = bool(errors)
        row = Batch(
            id=new_batch_id(),
            key_id=draft.key_id,
            team=draft.team,
            endpoint=draft.endpoint,
            input_file_id=draft.input_file_id,
            completion_window=draft.completion_window,
            status="failed" if failed else "in_progress",
            mode=draft.mode,
            model=draft.model,
            meta=draft.metadata,
            errors={"object": "list", "data": [e.public() for e in errors]} if failed else None,
            total=0 if failed else len(specs),
            max_attempts=draft.max_attempts,
            estimate_usd=draft.estimate_usd,
            run_key=draft.run_key,
            created_at=now,
            expires_at=now + timedelta(seconds=draft.window_seconds),
            in_progress_at=None if failed else now,
            failed_at=now if failed else None,
        )
        values = {a.columns[0].key: getattr(row, a.key) for a in Batch.__mapper__.column_attrs}
        async with self._tx() as conn:
            await conn.execute(insert(Batch), [values])
            if not failed:
                for start in range(0, len(specs), INSERT_CHUNK):
                    chunk = specs[start : start + INSERT_CHUNK]
                    rows = [_line_row(row.id, spec, now) for spec in chunk]
                    await conn.execute(insert(BatchLine), rows)
        record = BatchRecord.from_row(row)
        record.counts = Counts(pending=record.total)
        return record

    async def get(self, batch_id: str, *, counts: bool = True) -> BatchRecord:
        async with self.db.session() as session:
            row = await session.get(Batch, batch_id)
            if row is None:
                raise BatchNotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
            record = BatchRecord.from_row(row)
            if counts:
                record.counts = await _counts(session, batch_id)
        return record

    async def find_run(self, run_key: str) -> BatchRecord | None:
        async with self.db.session() as session:
            row = await session.scalar(select(Batch).where(Batch.run_key == run_key))
            if row is None:
                return None
            record = BatchRecord.from_row(row)
            record.counts = await _counts(session, record.id)
        return record

    async def list(
        self, *, key_id: str | None, everyone: bool, after: str | None, limit: int
    ) -> tuple[builtins.list[BatchRecord], bool]:
        """Newest first; ``after`` is the id of the last batch of the previous page."""
        query = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc())
        if not everyone:
            query = query.where(Batch.key_id == key_id)
        async with self.db.session() as session:
            if after:
                cursor = await session.scalar(select(Batch.created_at).where(Batch.id == after))
                if cursor is None:
                    raise BatchNotFound(f"No batch found with id '{after}'.", param="after")
                query = query.where(
                    or_(
                        Batch.created_at < cursor,
                        and_(Batch.created_at == cursor, Batch.id < after),
                    )
                )
            rows = list(await session.scalars(query.limit(limit + 1)))
            records = [BatchRecord.from_row(r) for r in rows[:limit]]
            for record in records:
                record.counts = await _counts(session, record.id)
        return records, len(rows) > limit

    async def active(self) -> builtins.list[BatchRecord]:
        """Batches a worker has work for (without counts)."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(Batch).where(Batch.status.in_(ACTIVE)).order_by(Batch.created_at)
            )
            return [BatchRecord.from_row(r) for r in rows]

    async def counts(self, batch_id: str) -> Counts:
        async with self.db.engine.connect() as conn:
            return await _counts(conn, batch_id)

    async def transition(
        self, batch_id: str, to: str, *, from_: Iterable[str], **extra: Any
    ) -> bool:
        """Move a batch to ``to`` (stamping ``<to>_at``) if it is in one of ``from_``."""
        values: dict[str, Any] = {"status": to, **extra}
        stamp = f"{to}_at"
        if hasattr(Batch, stamp):
            values[stamp] = self.now()
        async with self._tx() as conn:
            result = await conn.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.status.in_(list(from_)))
                .values(**values)
            )
        return _rowcount(result) == 1

    async def cancel(self, batch_id: str) -> BatchRecord:
        """Ask a batch to stop: ``cancelling`` now, ``cancelled`` once its in-flight lines end."""
        record = await self.get(batch_id, counts=False)
        if record.status in ("cancelling", "cancelled"):
            return await self.get(batch_id)
        if not await self.transition(batch_id, "cancelling", from_=("validating", "in_progress")):
            current = await self.get(batch_id, counts=False)
            if current.status != "cancelling":
                raise BatchStateError(
                    f"Cannot cancel a batch with status '{current.status}'.", code="invalid_state"
                )
        return await self.get(batch_id)

    async def set_native(self, batch_id: str, native: dict[str, Any]) -> None:
        async with self._tx() as conn:
            await conn.execute(update(Batch).where(Batch.id == batch_id).values(native=native))

    async def lease_batch(self, batch_id: str, owner: str, seconds: float) -> bool:
        """Take (or keep) the batch-level lease native mode works under."""
        now = self.now()
        async with self._tx() as conn:
            result = await conn.execute(
                update(Batch)
                .where(
                    Batch.id == batch_id,
                    or_(Batch.owner.is_(None), Batch.owner == owner, Batch.lease_until < now),
                )
                .values(owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
        return _rowcount(result) == 1

    # -- lines ---------------------------------------------------------------------------------

    async def claim(
        self, batch_ids: Sequence[str], owner: str, n: int, lease: float
    ) -> builtins.list[Claimed]:
        """Take up to ``n`` runnable lines of these batches (batch by batch, in line order):
        ``in_flight`` under ``owner`` until ``lease`` seconds from now, attempts + 1.
        Committed before it returns, i.e. before any upstream call."""
        if n <= 0 or not batch_ids:
            return []
        now = self.now()
        runnable = (
            select(BatchLine.id)
            .where(
                BatchLine.batch_id.in_(list(batch_ids)),
                BatchLine.state == "pending",
                or_(BatchLine.not_before.is_(None), BatchLine.not_before <= now),
            )
            .order_by(BatchLine.batch_id, BatchLine.idx)
            .limit(n)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(BatchLine)
            .where(BatchLine.id.in_(runnable.scalar_subquery()))
            .values(
                state="in_flight",
                owner=owner,
                lease_until=now + timedelta(seconds=lease),
                attempts=BatchLine.attempts + 1,
                updated_at=now,
            )
            .returning(
                BatchLine.id,
                BatchLine.batch_id,
                BatchLine.idx,
                BatchLine.custom_id,
                BatchLine.model,
                BatchLine.body,
                BatchLine.attempts,
            )
        )
        async with self._tx() as conn:
            rows = (await conn.execute(statement)).all()
        claimed = [Claimed(r[0], r[1], r[2], r[3], r[4], r[5].encode(), r[6]) for r in rows]
        claimed.sort(key=lambda c: (c.batch_id, c.idx))
        return claimed

    async def renew(self, owner: str, lease: float) -> None:
        """Extend the lease of every line and batch this worker holds (its heartbeat)."""
        until = self.now() + timedelta(seconds=lease)
        async with self._tx() as conn:
            await conn.execute(
                update(BatchLine)
                .where(BatchLine.owner == owner, BatchLine.state == "in_flight")
                .where(BatchLine.lease_until.is_not(None))
                .values(lease_until=until)
            )
            await conn.execute(
                update(Batch)
                .where(Batch.owner == owner, Batch.status.in_(ACTIVE))
                .values(lease_until=until)
            )

    async def requeue_expired(self, batch_ids: Sequence[str]) -> int:
        """Lines whose worker stopped renewing its lease go back to ``pending``."""
        if not batch_ids:
            return 0
        now = self.now()
        async with self._tx() as conn:
            result = await conn.execute(
                update(BatchLine)
                .where(
                    BatchLine.batch_id.in_(list(batch_ids)),
                    BatchLine.state == "in_flight",
                    BatchLine.lease_until < now,
                )
                .values(state="pending", owner=None, lease_until=None, updated_at=now)
            )
        return _rowcount(result)

    async def release(self, *, batch_id: str | None = None, owner: str | None = None) -> int:
        """Put ``in_flight`` lines back to ``pending`` at once: a batch's (a local run starting
        again: nobody else runs it) or a worker's (stopping after its grace period)."""
        conditions = [BatchLine.state == "in_flight", BatchLine.lease_until.is_not(None)]
        if batch_id is not None:
            conditions.append(BatchLine.batch_id == batch_id)
        if owner is not None:
            conditions.append(BatchLine.owner == owner)
        async with self._tx() as conn:
            result = await conn.execute(
                update(BatchLine)
                .where(*conditions)
                .values(state="pending", owner=None, lease_until=None, updated_at=self.now())
            )
        return _rowcount(result)

    async def finish(
        self, line: Claimed, owner: str, result: LineResult, log: RequestLogRow | None
    ) -> bool:
        """Record a claimed line's outcome and its request-log row in one transaction. False
        when the line is no longer this worker's (its lease ran out and another took it): the
        log row is written regardless, since the call was made and billed."""
        values = _result_values(result, self.now())
        if result.state == "pending":
            values.update(owner=None, lease_until=None)
        async with self._tx() as conn:
            written = await conn.execute(
                update(BatchLine)
                .where(
                    BatchLine.id == line.id,
                    BatchLine.owner == owner,
                    BatchLine.state == "in_flight",
                )
                .values(**values)
            )
            if log is not None:
                await conn.execute(self._log_insert, [_log_params(log)])
        return _rowcount(written) == 1

    async def settle_many(
        self, results: Sequence[tuple[int, LineResult]], logs: Sequence[RequestLogRow]
    ) -> None:
        """Native mode: many lines' outcomes and log rows at once (one transaction)."""
        now = self.now()
        async with self._tx() as conn:
            for line_id, result in results:
                await conn.execute(
                    update(BatchLine)
                    .where(BatchLine.id == line_id, BatchLine.state.in_(("pending", "in_flight")))
                    .values(**_result_values(result, now), owner=None, lease_until=None)
                )
            if logs:
                await conn.execute(self._log_insert, [_log_params(r) for r in logs])

    async def close_open_lines(
        self, batch_id: str, state: str, error: dict[str, Any], *, in_flight: bool = False
    ) -> int:
        """End every ``pending`` line (and ``in_flight`` ones too if asked) as ``state``
        (``expired`` / ``cancelled``) with ``error`` as their output."""
        states = ("pending", "in_flight") if in_flight else ("pending",)
        now = self.now()
        async with self._tx() as conn:
            result = await conn.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == batch_id, BatchLine.state.in_(states))
                .values(state=state, error=error, owner=None, lease_until=None, updated_at=now)
            )
        return _rowcount(result)

    async def lines(self, batch_id: str, states: Sequence[str]) -> builtins.list[Claimed]:
        """A batch's lines in these states, in order (native mode submits them)."""
        query = (
            select(
                BatchLine.id,
                BatchLine.batch_id,
                BatchLine.idx,
                BatchLine.custom_id,
                BatchLine.model,
                BatchLine.body,
                BatchLine.attempts,
            )
            .where(BatchLine.batch_id == batch_id, BatchLine.state.in_(list(states)))
            .order_by(BatchLine.idx)
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Claimed(r[0], r[1], r[2], r[3], r[4], r[5].encode(), r[6]) for r in rows]

    async def dispatch_all(self, batch_id: str, owner: str) -> int:
        """Native mode: every pending line goes ``in_flight`` (attempts + 1) as one provider
        batch, with no lease: the provider holds them until its batch ends."""
        now = self.now()
        async with self._tx() as conn:
            result = await conn.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == batch_id, BatchLine.state == "pending")
                .values(
                    state="in_flight",
                    owner=owner,
                    lease_until=None,
                    attempts=BatchLine.attempts + 1,
                    updated_at=now,
                )
            )
        return _rowcount(result)

    # -- the end of a batch --------------------------------------------------------------------

    async def finalize(self, batch_id: str, status: str) -> BatchRecord | None:
        """Write the output and error files from the lines' outcomes and move the batch to
        ``status`` (``completed``, ``expired`` or ``cancelled``). Safe to race: exactly one
        caller's files and timestamps are kept. None if the batch was already final."""
        record = await self.get(batch_id, counts=False)
        if record.terminal:
            return None
        output, failures = await self._render(batch_id)
        now = self.now()
        files = []
        values: dict[str, Any] = {"status": status, f"{status}_at": now}
        for column, content, name in (
            ("output_file_id", output, "output"),
            ("error_file_id", failures, "error"),
        ):
            if content:
                file_id = new_file_id()
                files.append(
                    {
                        "id": file_id,
                        "key_id": record.key_id,
                        "purpose": "batch_output",
                        "filename": f"{batch_id}_{name}.jsonl",
                        "bytes": len(content),
                        "content": content,
                        "created_at": now,
                    }
                )
                values[column] = file_id
        try:
            async with self._tx() as conn:
                result = await conn.execute(
                    update(Batch)
                    .where(Batch.id == batch_id, Batch.status.in_(ACTIVE))
                    .values(**values)
                )
                if _rowcount(result) != 1:
                    raise _Lost  # another worker finalized it first: roll our files back
                if files:
                    await conn.execute(insert(BatchFile), files)
        except _Lost:
            return None
        return await self.get(batch_id)

    async def _render(self, batch_id: str) -> tuple[bytes, bytes]:
        query = (
            select(
                BatchLine.idx,
                BatchLine.custom_id,
                BatchLine.state,
                BatchLine.status_code,
                BatchLine.request_id,
                BatchLine.response,
                BatchLine.error,
            )
            .where(BatchLine.batch_id == batch_id)
            .order_by(BatchLine.idx)
        )
        output: list[bytes] = []
        failures: list[bytes] = []
        async with self.db.engine.connect() as conn:
            result = await conn.stream(query)
            async for idx, custom_id, state, status, request_id, response, error in result:
                line = batch_lines.output_line(
                    batch_id,
                    idx,
                    custom_id,
                    status_code=status,
                    request_id=request_id,
                    response=response.encode() if response is not None else None,
                    error=error,
                )
                (output if state == "succeeded" else failures).append(line)
        return b"".join(output), b"".join(failures)


# --- helpers ----------------------------------------------------------------------------------


def _file(row: Any) -> FileRecord:
    return FileRecord(row[0], row[1], row[2], row[3], int(row[4]), row[5])


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def _line_row(batch_id: str, spec: LineSpec, now: datetime) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "idx": spec.idx,
        "custom_id": spec.custom_id,
        "model": spec.model,
        "body": spec.body.decode(),
        "state": "pending",
        "attempts": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "updated_at": now,
    }


def _result_values(result: LineResult, now: datetime) -> dict[str, Any]:
    return {
        "state": result.state,
        "status_code": result.status_code,
        "request_id": result.request_id,
        "response": result.response.decode() if result.response is not None else None,
        "error": result.error,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cost_usd": result.cost_usd,
        "not_before": result.not_before,
        "updated_at": now,
    }


def _log_params(row: RequestLogRow) -> dict[str, Any]:
    params = {name: getattr(row, name) for name in _LOG_FIELDS}
    params["prompt"] = params["completion"] = None  # batch content stays in the batch tables
    return params


async def _counts(conn: AsyncConnection | AsyncSession, batch_id: str) -> Counts:
    query = (
        select(
            BatchLine.state,
            func.count(),
            func.coalesce(func.sum(BatchLine.cost_usd), 0.0),
            func.coalesce(func.sum(BatchLine.input_tokens), 0),
            func.coalesce(func.sum(BatchLine.output_tokens), 0),
        )
        .where(BatchLine.batch_id == batch_id)
        .group_by(BatchLine.state)
    )
    counts = Counts()
    for state, n, cost, tokens_in, tokens_out in (await conn.execute(query)).all():
        if state in ("pending", "in_flight", "succeeded", "errored", "cancelled", "expired"):
            setattr(counts, state, int(n))
        counts.cost_usd += float(cost)
        counts.input_tokens += int(tokens_in)
        counts.output_tokens += int(tokens_out)
    return counts


__all__ = [
    "TERMINAL",
    "BatchNotFound",
    "BatchStateError",
    "BatchStore",
    "Draft",
    "new_batch_id",
    "new_file_id",
]
