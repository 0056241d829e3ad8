"""The audit trail of admin actions: append-only and hash-chained.

Each row stores ``prev_hash`` (the previous row's ``hash``, or :data:`GENESIS` for the first) and
``hash = sha256(prev_hash + canonical_json(row))`` where the canonical JSON covers ``ts``,
``actor``, ``action``, ``target``, ``before`` and ``after`` with sorted keys. Editing, deleting or
reordering a row breaks the chain at that row or the next, which :func:`verify` reports.

Appends are serialized so there is one chain, never a fork: on PostgreSQL a transaction-scoped
advisory lock is taken before the last hash is read; on SQLite a no-op write takes the database
write lock first. Either lock is held until the caller's transaction commits, so the next
appender reads the hash this one wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from aiwire.store.db import AUDIT_LOCK_ID
from aiwire.store.models import AuditLog

if TYPE_CHECKING:
    from aiwire.store.db import Database

#: ``prev_hash`` of the first row.
GENESIS = "0" * 64


def normalize(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``value`` as it will read back from a JSON column (datetimes as ISO strings, tuples as
    lists), so the hash is computed over exactly what is stored."""
    if value is None:
        return None
    result: dict[str, Any] = orjson.loads(orjson.dumps(value))
    return result


def canonical(
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> bytes:
    """The bytes a row's hash covers: sorted-key compact JSON, timestamp in UTC ISO 8601."""
    return orjson.dumps(
        {
            "action": action,
            "actor": actor,
            "after": after,
            "before": before,
            "target": target,
            "ts": ts.astimezone(UTC).isoformat(),
        },
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


def _row_hash(row: AuditLog) -> str:
    payload = canonical(row.ts, row.actor, row.action, row.target, row.before, row.after)
    return chain_hash(row.prev_hash, payload)


async def _lock_chain(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": AUDIT_LOCK_ID})
    else:
        # Matches no row, but any UPDATE takes SQLite's write lock for the rest of the
        # transaction: no other connection can append between our read and our insert.
        await session.execute(text("UPDATE audit_log SET id = id WHERE 0 = 1"))


async def append(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> AuditLog:
    """Append one row to the chain inside the caller's transaction (commit is the caller's).

    ``before`` / ``after`` must be JSON-serializable and must never hold a secret.
    """
    ts = (now or datetime.now(UTC)).astimezone(UTC)
    before_json, after_json = normalize(before), normalize(after)
    await _lock_chain(session)
    last = await session.scalar(select(AuditLog.hash).order_by(AuditLog.id.desc()).limit(1))
    prev_hash = last if last is not None else GENESIS
    row = AuditLog(
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        before=before_json,
        after=after_json,
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, canonical(ts, actor, action, target, before_json, after_json)),
    )
    session.add(row)
    await session.flush()
    return row


async def verify(database: Database, *, batch: int = 1000) -> tuple[bool, int | None]:
    """Walk the chain in id order: ``(True, None)`` if intact, else ``(False, id)`` of the first
    row whose ``prev_hash`` or ``hash`` does not match (an edited row, or the row after a
    deleted one)."""
    expected_prev = GENESIS
    async with database.session() as session:
        rows = await session.stream_scalars(
            select(AuditLog).order_by(AuditLog.id).execution_options(yield_per=batch)
        )
        async for row in rows:
            if row.prev_hash != expected_prev or _row_hash(row) != row.hash:
                return False, row.id
            expected_prev = row.hash
    return True, None
