"""Reading the audit trail for ``aiwire audit``: verify its hash chain, list its rows.

The chain itself (append, hashing, the walk) is :mod:`aiwire.store.audit`; this module opens
the store, names the first bad row with what it claims to be, and shapes rows for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from aiwire.store import audit
from aiwire.store.db import Database
from aiwire.store.models import AuditLog


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    #: Rows found intact (all of them when ``ok``; those before the bad one otherwise).
    rows: int
    #: The first row that does not match, as :func:`public` shows it.
    bad: dict[str, Any] | None = None


def public(row: AuditLog) -> dict[str, Any]:
    """A row for display: what changed between ``before`` and ``after`` (top-level fields)."""
    before, after = row.before or {}, row.after or {}
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {
        "id": row.id,
        "ts": row.ts.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "changed": changed,
        "before": row.before,
        "after": row.after,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


async def verify_chain(url: str) -> ChainCheck:
    database = Database(url)
    try:
        ok, bad_id = await audit.verify(database)
        async with database.session() as session:
            if ok:
                total = await session.scalar(select(func.count()).select_from(AuditLog))
                return ChainCheck(True, int(total or 0))
            row = await session.get(AuditLog, bad_id)
            before = await session.scalar(
                select(func.count()).select_from(AuditLog).where(AuditLog.id < bad_id)
            )
            bad = public(row) if row is not None else {"id": bad_id}
            return ChainCheck(False, int(before or 0), bad)
    finally:
        await database.aclose()


async def list_rows(
    url: str, *, limit: int = 50, action: str | None = None, target: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows (optionally of actions starting with ``action``, or about
    ``target``), newest first."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if action:
        query = query.where(AuditLog.action.startswith(action, autoescape=True))
    if target:
        query = query.where(AuditLog.target == target)
    database = Database(url)
    try:
        async with database.session() as session:
            return [public(r) for r in await session.scalars(query)]
    finally:
        await database.aclose()
