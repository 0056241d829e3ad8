"""Budgets: spending limits per key, per team or for everything, per period (audited).

A budget is ``(scope, scope_id, period)`` with a hard ``limit_usd`` and an optional soft
``soft_usd`` where an alert fires. Setting one for the same scope and period replaces it. What
has been spent in a window is the sum of ``request_log.cost_usd`` since the window began, which
is where the limit counters start from when they have no count of their own yet.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import delete, func, select

from aiwire.errors import AIWireError
from aiwire.limits.windows import PERIODS, Period
from aiwire.store import audit
from aiwire.store.db import Database
from aiwire.store.models import Budget, RequestLog

Scope = Literal["global", "team", "key"]
SCOPES: tuple[Scope, ...] = get_args(Scope)


class UnknownBudgetError(AIWireError, LookupError):
    default_status = 404


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    id: str
    scope: Scope
    scope_id: str
    period: Period
    limit_usd: float
    soft_usd: float | None
    created_at: datetime
    updated_at: datetime

    @property
    def label(self) -> str:
        """``key key_ab12 monthly`` / ``team sales daily`` / ``global total``: for messages."""
        who = "global" if self.scope == "global" else f"{self.scope} {self.scope_id}"
        return f"{who} {self.period}"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "scope_id": self.scope_id,
            "period": self.period,
            "limit_usd": self.limit_usd,
            "soft_usd": self.soft_usd,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_row(cls, row: Budget) -> BudgetRecord:
        return cls(
            id=row.id,
            scope=row.scope,  # type: ignore[arg-type]
            scope_id=row.scope_id,
            period=row.period,  # type: ignore[arg-type]
            limit_usd=row.limit_usd,
            soft_usd=row.soft_usd,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def check_budget(
    scope: str, scope_id: str, period: str, limit_usd: float, soft: float | None
) -> None:
    """ValueError naming what is wrong with a budget definition."""
    if scope not in SCOPES:
        raise ValueError(f"budget scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if (scope == "global") != (not scope_id):
        raise ValueError("a global budget has no scope id; a key or team budget needs one")
    if period not in PERIODS:
        raise ValueError(f"budget period must be one of {', '.join(PERIODS)}, not {period!r}")
    if not limit_usd >= 0:
        raise ValueError("limit_usd must be a number of dollars, 0 or more")
    if soft is not None and not 0 <= soft <= limit_usd:
        raise ValueError("soft_usd must be between 0 and limit_usd")


class BudgetStore:
    def __init__(self, database: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = database
        self._clock = clock

    async def set(
        self,
        scope: Scope,
        scope_id: str,
        period: Period,
        limit_usd: float,
        soft_usd: float | None = None,
        *,
        actor: str,
    ) -> BudgetRecord:
        """Create the budget of this scope and period, or replace its amounts (audited)."""
        scope_id = "" if scope == "global" else scope_id
        check_budget(scope, scope_id, period, limit_usd, soft_usd)
        now = self._clock()
        async with self._db.session() as session:
            row = await session.scalar(
                select(Budget).where(
                    Budget.scope == scope, Budget.scope_id == scope_id, Budget.period == period
                )
            )
            before = None if row is None else BudgetRecord.from_row(row).public()
            if row is None:
                row = Budget(
                    id="bud_" + secrets.token_hex(10),
                    scope=scope,
                    scope_id=scope_id,
                    period=period,
                    limit_usd=float(limit_usd),
                    soft_usd=None if soft_usd is None else float(soft_usd),
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            else:
                row.limit_usd = float(limit_usd)
                row.soft_usd = None if soft_usd is None else float(soft_usd)
                row.updated_at = now
            await session.flush()
            record = BudgetRecord.from_row(row)
            await audit.append(session, actor, "budget.set", record.id, before, record.public())
        return record

    async def delete(self, budget_id: str, *, actor: str) -> BudgetRecord:
        async with self._db.session() as session:
            row = await session.get(Budget, budget_id)
            if row is None:
                raise UnknownBudgetError(f"no budget with id {budget_id!r}")
            record = BudgetRecord.from_row(row)
            await session.execute(delete(Budget).where(Budget.id == budget_id))
            await audit.append(session, actor, "budget.delete", budget_id, record.public(), None)
        return record

    async def list(self) -> builtins.list[BudgetRecord]:
        async with self._db.session() as session:
            rows = await session.scalars(select(Budget).order_by(Budget.created_at, Budget.id))
            return [BudgetRecord.from_row(r) for r in rows]

    async def spent(self, budget: BudgetRecord, since: datetime) -> float:
        """What the request log says this budget's scope has spent since ``since``."""
        query = select(func.coalesce(func.sum(RequestLog.cost_usd), 0.0)).where(
            RequestLog.ts >= since
        )
        if budget.scope == "key":
            query = query.where(RequestLog.key_id == budget.scope_id)
        elif budget.scope == "team":
            query = query.where(RequestLog.team == budget.scope_id)
        async with self._db.session() as session:
            return float(await session.scalar(query) or 0.0)
