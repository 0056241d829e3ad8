"""Durable flow state on the aiwire store (SQLite by default, PostgreSQL by URL).

Everything the runner must not forget lives here, keyed by flow name and record key:

- ``flow_records``: each source record once (the unique key makes re-ingesting a no-op), its
  state, the data after its last completed step and the index of the next step;
- ``flow_steps``: a checkpoint per completed step (written in the same transaction that moves
  the record forward, so a crash resumes exactly after it);
- ``flow_deliveries``: ``pending`` before a sink write, ``delivered`` after (see the runner for
  how a ``pending`` one is reconciled with the destination);
- ``flow_dead_letters``, ``flow_runs``, ``flow_reviews``, ``flow_events``, ``flow_cursors``.

A record is worked on by one process at a time: claiming it is one conditional ``UPDATE``
(pending, or running with an expired lease or a dead owner on this host), which works the same
on both databases.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from aiwire.flows.rows import TERMINAL, jsonable, new_id, now
from aiwire.flows.store_reviews import ReviewRows
from aiwire.store.db import Database
from aiwire.store.models import (
    FlowCursor,
    FlowDeadLetter,
    FlowDefinition,
    FlowDelivery,
    FlowEvent,
    FlowRecord,
    FlowRun,
    FlowStep,
)

#: Longest record key stored as given; longer ones are stored as their SHA-256.
MAX_KEY = 200
#: Records per ingest transaction (and per ``IN (...)`` list, well under SQLite's limit).
INGEST_BATCH = 500


def owner_id() -> str:
    """``host:pid:token``: who holds a claim (the token tells two runners in one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_local_owner(owner: str | None) -> bool:
    """Whether ``owner`` is a process on this host that no longer exists (killed mid-run)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class ClaimedRecord:
    flow: str
    key: str
    state: str
    source: dict[str, Any]
    data: dict[str, Any]
    position: int
    attempts: int


@dataclass(frozen=True)
class StepMetrics:
    ms: float = 0.0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    confidence: float | None = None


class FlowStore(ReviewRows):
    """The flow tables, over one :class:`~aiwire.store.Database`."""

    def __init__(self, database: Database, *, lease: float = 300.0) -> None:
        self.db = database
        self.lease = timedelta(seconds=lease)

    # -- definitions -------------------------------------------------------------------------

    async def register(self, name: str, path: str | None, digest: str) -> None:
        async with self.db.session() as s:
            row = await s.get(FlowDefinition, name)
            if row is None:
                s.add(FlowDefinition(name=name, path=path, digest=digest, updated_at=now()))
            elif row.path != path or row.digest != digest:
                row.path, row.digest, row.updated_at = path, digest, now()

    async def definition_path(self, name: str) -> str | None:
        async with self.db.session() as s:
            row = await s.get(FlowDefinition, name)
            return None if row is None else row.path

    # -- ingestion ---------------------------------------------------------------------------

    async def ingest(self, flow: str, records: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store records not seen before (by key) as ``pending``; returns how many were new."""
        if not records:
            return 0
        unique: dict[str, dict[str, Any]] = {}
        for key, source in records:
            unique.setdefault(key, source)
        if len(unique) > INGEST_BATCH:
            items = list(unique.items())
            added = 0
            for i in range(0, len(items), INGEST_BATCH):
                added += await self.ingest(flow, items[i : i + INGEST_BATCH])
            return added
        async with self.db.session() as s:
            existing = set(
                (
                    await s.scalars(
                        select(FlowRecord.key).where(
                            FlowRecord.flow == flow, FlowRecord.key.in_(list(unique))
                        )
                    )
                ).all()
            )
        fresh = [(k, v) for k, v in unique.items() if k not in existing]
        if not fresh:
            return 0
        try:
            async with self.db.session() as s:
                t = now()
                s.add_all([_new_record(flow, key, source, t) for key, source in fresh])
        except IntegrityError:
            # Another process ingested some of them meanwhile: one by one, skipping those.
            return await self._ingest_one_by_one(flow, fresh)
        return len(fresh)

    async def _ingest_one_by_one(self, flow: str, records: list[tuple[str, dict[str, Any]]]) -> int:
        added = 0
        for key, source in records:
            try:
                async with self.db.session() as s:
                    s.add(_new_record(flow, key, source, now()))
                added += 1
            except IntegrityError:
                continue
        return added

    async def ingest_event(
        self, flow: str, event_id: str, key: str, source: dict[str, Any]
    ) -> bool:
        """A webhook event: its id and its record in one transaction. False for a duplicate
        event id or record key (nothing is stored then)."""
        try:
            async with self.db.session() as s:
                s.add(FlowEvent(flow=flow, event_id=event_id, key=key, received_at=now()))
                s.add(_new_record(flow, key, source, now()))
        except IntegrityError:
            return False
        return True

    async def claim_schedule(self, flow: str, due: datetime) -> bool:
        """Whether this process runs the flow's schedule at ``due``: the first to record it does
        (several gateway workers or replicas run the same schedules; one run per due time)."""
        try:
            async with self.db.session() as s:
                s.add(
                    FlowEvent(
                        flow=flow,
                        event_id=f"schedule:{due.astimezone(UTC).isoformat()}",
                        key="",
                        received_at=now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def count_events(self, flow: str) -> int:
        async with self.db.session() as s:
            return int(await s.scalar(select(func.count()).where(FlowEvent.flow == flow)) or 0)

    # -- claiming and checkpoints ------------------------------------------------------------

    async def runnable_keys(self, flow: str, limit: int = 100_000) -> list[str]:
        """Keys of records that can be worked on now: pending, or running with an expired
        lease or a dead owner on this host."""
        t = now()
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(
                        FlowRecord.key, FlowRecord.state, FlowRecord.owner, FlowRecord.lease_until
                    )
                    .where(FlowRecord.flow == flow, FlowRecord.state.in_(("pending", "running")))
                    .order_by(FlowRecord.id)
                    .limit(limit)
                )
            ).all()
        out = []
        for key, state, owner, lease in rows:
            if state == "pending" or (lease is not None and lease < t) or _dead_local_owner(owner):
                out.append(key)
        return out

    async def claim(self, flow: str, key: str, owner: str, run_id: str) -> ClaimedRecord | None:
        t = now()
        values = {
            "state": "running",
            "owner": owner,
            "lease_until": t + self.lease,
            "run_id": run_id,
            "updated_at": t,
            "attempts": FlowRecord.attempts + 1,
        }
        base = and_(FlowRecord.flow == flow, FlowRecord.key == key)
        async with self.db.session() as s:
            result = await s.execute(
                update(FlowRecord)
                .where(
                    base,
                    or_(
                        FlowRecord.state == "pending",
                        and_(FlowRecord.state == "running", FlowRecord.lease_until < t),
                    ),
                )
                .values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                row = await s.scalar(select(FlowRecord).where(base))
                if row is None or row.state != "running" or not _dead_local_owner(row.owner):
                    return None
                result = await s.execute(
                    update(FlowRecord)
                    .where(base, FlowRecord.state == "running", FlowRecord.owner == row.owner)
                    .values(**values)
                )
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    return None
            row = await s.scalar(select(FlowRecord).where(base))
            assert row is not None
            return ClaimedRecord(
                flow, key, row.state, row.source, row.data, row.position, row.attempts
            )

    async def checkpoint(
        self,
        flow: str,
        key: str,
        owner: str,
        *,
        step: str,
        status: str,
        position: int,
        data: dict[str, Any],
        run_id: str | None,
        metrics: StepMetrics = StepMetrics(),
        output: dict[str, Any] | None = None,
    ) -> None:
        """A step finished: its checkpoint and the record's new data and position, atomically."""
        t = now()
        async with self.db.session() as s:
            await s.execute(
                delete(FlowStep).where(
                    FlowStep.flow == flow, FlowStep.key == key, FlowStep.step == step
                )
            )
            s.add(
                FlowStep(
                    flow=flow,
                    key=key,
                    step=step,
                    run_id=run_id,
                    status=status,
                    ms=metrics.ms,
                    calls=metrics.calls,
                    input_tokens=metrics.input_tokens,
                    output_tokens=metrics.output_tokens,
                    cost_usd=metrics.cost_usd,
                    confidence=metrics.confidence,
                    output=None if output is None else jsonable(output),
                    finished_at=t,
                )
            )
            await s.execute(
                update(FlowRecord)
                .where(FlowRecord.flow == flow, FlowRecord.key == key)
                .values(
                    data=jsonable(data),
                    position=position,
                    lease_until=t + self.lease,
                    updated_at=t,
                )
            )

    async def finish(
        self,
        flow: str,
        key: str,
        state: str,
        *,
        data: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "owner": None,
            "lease_until": None,
            "error": error,
            "updated_at": now(),
            "finished_at": now() if state in TERMINAL else None,
        }
        if data is not None:
            values["data"] = jsonable(data)
        async with self.db.session() as s:
            await s.execute(
                update(FlowRecord)
                .where(FlowRecord.flow == flow, FlowRecord.key == key)
                .values(**values)
            )

    async def release(self, flow: str, key: str) -> None:
        """Give a claimed record back as pending (a run stopped before finishing it)."""
        async with self.db.session() as s:
            await s.execute(
                update(FlowRecord)
                .where(
                    FlowRecord.flow == flow, FlowRecord.key == key, FlowRecord.state == "running"
                )
                .values(state="pending", owner=None, lease_until=None, updated_at=now())
            )

    async def record(self, flow: str, key: str) -> FlowRecord | None:
        async with self.db.session() as s:
            return await s.scalar(
                select(FlowRecord).where(FlowRecord.flow == flow, FlowRecord.key == key)
            )

    async def records(self, flow: str, state: str | None = None) -> list[FlowRecord]:
        async with self.db.session() as s:
            q = select(FlowRecord).where(FlowRecord.flow == flow)
            if state is not None:
                q = q.where(FlowRecord.state == state)
            return list((await s.scalars(q.order_by(FlowRecord.id))).all())

    async def state_counts(self, flow: str) -> dict[str, int]:
        async with self.db.session() as s:
            rows = await s.execute(
                select(FlowRecord.state, func.count())
                .where(FlowRecord.flow == flow)
                .group_by(FlowRecord.state)
            )
            return {state: int(n) for state, n in rows.all()}

    async def steps_of(self, flow: str, key: str) -> list[FlowStep]:
        async with self.db.session() as s:
            return list(
                (
                    await s.scalars(
                        select(FlowStep)
                        .where(FlowStep.flow == flow, FlowStep.key == key)
                        .order_by(FlowStep.id)
                    )
                ).all()
            )

    # -- deliveries --------------------------------------------------------------------------

    async def delivery(self, flow: str, key: str, sink: str) -> FlowDelivery | None:
        async with self.db.session() as s:
            return await s.scalar(
                select(FlowDelivery).where(
                    FlowDelivery.flow == flow, FlowDelivery.key == key, FlowDelivery.sink == sink
                )
            )

    async def delivery_pending(
        self, flow: str, key: str, sink: str, idempotency_key: str, fingerprint: str
    ) -> None:
        async with self.db.session() as s:
            row = await s.scalar(
                select(FlowDelivery).where(
                    FlowDelivery.flow == flow, FlowDelivery.key == key, FlowDelivery.sink == sink
                )
            )
            if row is None:
                s.add(
                    FlowDelivery(
                        flow=flow,
                        key=key,
                        sink=sink,
                        status="pending",
                        idempotency_key=idempotency_key,
                        fingerprint=fingerprint,
                        attempts=1,
                        created_at=now(),
                    )
                )
            else:
                row.status, row.fingerprint = "pending", fingerprint
                row.attempts += 1

    async def delivered(self, flow: str, key: str, sink: str, status: int | None) -> None:
        async with self.db.session() as s:
            await s.execute(
                update(FlowDelivery)
                .where(
                    FlowDelivery.flow == flow, FlowDelivery.key == key, FlowDelivery.sink == sink
                )
                .values(status="delivered", response_status=status, delivered_at=now())
            )

    async def deliveries(self, flow: str) -> list[FlowDelivery]:
        async with self.db.session() as s:
            return list(
                (
                    await s.scalars(
                        select(FlowDelivery)
                        .where(FlowDelivery.flow == flow)
                        .order_by(FlowDelivery.id)
                    )
                ).all()
            )

    # -- dead letters ------------------------------------------------------------------------

    async def dead_letter(
        self,
        flow: str,
        key: str,
        *,
        stage: str,
        error_class: str,
        error: str,
        record: dict[str, Any],
        attempts: int,
        run_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """Park a record in the dead-letter queue (and mark it ``dead``) in one transaction."""
        dlq_id = new_id("dlq")
        t = now()
        async with self.db.session() as s:
            s.add(
                FlowDeadLetter(
                    id=dlq_id,
                    flow=flow,
                    key=key,
                    stage=stage,
                    error_class=error_class,
                    error=error,
                    details=None if details is None else jsonable(details),
                    record=jsonable(record),
                    attempts=attempts,
                    status="open",
                    run_id=run_id,
                    created_at=t,
                )
            )
            await s.execute(
                update(FlowRecord)
                .where(FlowRecord.flow == flow, FlowRecord.key == key)
                .values(
                    state="dead",
                    error=error,
                    owner=None,
                    lease_until=None,
                    updated_at=t,
                    finished_at=t,
                )
            )
        return dlq_id

    async def dead_letters(
        self, flow: str | None = None, status: str | None = "open"
    ) -> list[FlowDeadLetter]:
        async with self.db.session() as s:
            q = select(FlowDeadLetter)
            if flow is not None:
                q = q.where(FlowDeadLetter.flow == flow)
            if status is not None:
                q = q.where(FlowDeadLetter.status == status)
            return list((await s.scalars(q.order_by(FlowDeadLetter.created_at))).all())

    async def open_dead_letters(self, flow: str) -> int:
        async with self.db.session() as s:
            return int(
                await s.scalar(
                    select(func.count()).where(
                        FlowDeadLetter.flow == flow, FlowDeadLetter.status == "open"
                    )
                )
                or 0
            )

    async def requeue_dead_letters(self, flow: str, ids: Sequence[str] | None = None) -> list[str]:
        """Mark open dead letters ``replayed`` and their records ``pending`` again (keeping
        their checkpoints, so completed steps are not repeated). Returns the record keys."""
        t = now()
        async with self.db.session() as s:
            q = select(FlowDeadLetter).where(
                FlowDeadLetter.flow == flow, FlowDeadLetter.status == "open"
            )
            if ids:
                q = q.where(FlowDeadLetter.id.in_(list(ids)))
            rows = list((await s.scalars(q)).all())
            keys = []
            for row in rows:
                row.status, row.resolved_at = "replayed", t
                keys.append(row.key)
            if keys:
                await s.execute(
                    update(FlowRecord)
                    .where(
                        FlowRecord.flow == flow,
                        FlowRecord.key.in_(keys),
                        FlowRecord.state == "dead",
                    )
                    .values(state="pending", error=None, finished_at=None, updated_at=t)
                )
            return keys

    async def discard_dead_letter(self, dlq_id: str) -> bool:
        async with self.db.session() as s:
            result = await s.execute(
                update(FlowDeadLetter)
                .where(FlowDeadLetter.id == dlq_id, FlowDeadLetter.status == "open")
                .values(status="discarded", resolved_at=now())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- runs --------------------------------------------------------------------------------

    async def start_run(self, flow: str, trigger: str, owner: str, digest: str | None) -> str:
        run_id = new_id("run")
        async with self.db.session() as s:
            stale = (
                await s.scalars(
                    select(FlowRun).where(FlowRun.flow == flow, FlowRun.status == "running")
                )
            ).all()
            for run in stale:
                if _dead_local_owner(run.owner):
                    run.status, run.finished_at = "interrupted", now()
                    run.error = "the process running it stopped before the run finished"
            s.add(
                FlowRun(
                    id=run_id,
                    flow=flow,
                    trigger=trigger,
                    status="running",
                    owner=owner,
                    digest=digest,
                    counts={},
                    steps={},
                    input_tokens=0,
                    output_tokens=0,
                    cost_usd=0.0,
                    started_at=now(),
                )
            )
        return run_id

    async def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        counts: dict[str, int],
        steps: dict[str, Any],
        error: str | None = None,
    ) -> None:
        tokens_in = sum(int(s.get("input_tokens", 0)) for s in steps.values())
        tokens_out = sum(int(s.get("output_tokens", 0)) for s in steps.values())
        cost = sum(float(s.get("cost_usd", 0.0)) for s in steps.values())
        async with self.db.session() as s:
            await s.execute(
                update(FlowRun)
                .where(FlowRun.id == run_id)
                .values(
                    status=status,
                    counts=counts,
                    steps=jsonable(steps),
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    cost_usd=cost,
                    error=error,
                    finished_at=now(),
                )
            )

    async def runs(self, flow: str, limit: int = 20) -> list[FlowRun]:
        async with self.db.session() as s:
            return list(
                (
                    await s.scalars(
                        select(FlowRun)
                        .where(FlowRun.flow == flow)
                        .order_by(FlowRun.started_at.desc())
                        .limit(limit)
                    )
                ).all()
            )

    async def run(self, run_id: str) -> FlowRun | None:
        async with self.db.session() as s:
            return await s.get(FlowRun, run_id)

    # -- cursors -----------------------------------------------------------------------------

    async def cursor(self, flow: str, name: str) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = await s.get(FlowCursor, (flow, name))
            return None if row is None else row.value

    async def set_cursor(self, flow: str, name: str, value: dict[str, Any]) -> None:
        async with self.db.session() as s:
            row = await s.get(FlowCursor, (flow, name))
            if row is None:
                s.add(FlowCursor(flow=flow, name=name, value=jsonable(value), updated_at=now()))
            else:
                row.value, row.updated_at = jsonable(value), now()


def _new_record(flow: str, key: str, source: dict[str, Any], t: datetime) -> FlowRecord:
    data = jsonable(source)
    return FlowRecord(
        flow=flow,
        key=key,
        state="pending",
        source=data,
        data=data,
        position=0,
        attempts=0,
        created_at=t,
        updated_at=t,
    )


__all__ = [
    "TERMINAL",
    "ClaimedRecord",
    "FlowStore",
    "StepMetrics",
    "jsonable",
    "new_id",
    "now",
    "owner_id",
]
