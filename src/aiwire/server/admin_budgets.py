"""``/admin/budgets``: spending limits per key, per team or for everything (audited).

Setting a budget for a scope and period that has one replaces its amounts. Each change is
applied to this replica's admission book at once (``on_budget_change``); the listing reports
every budget's spend in its current window.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field, StrictStr

from aiwire import errors
from aiwire.limits.windows import Period
from aiwire.server import admin_base as base
from aiwire.server.admin_base import AdminCaller, Context, Timestamp, bad
from aiwire.store.budgets import (
    BudgetRecord,
    BudgetStore,
    Scope,
    UnknownBudgetError,
    check_budget,
)

log = logging.getLogger("aiwire.admin")

Dollars = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
_BUDGET_ID = re.compile(r"bud_[A-Za-z0-9_-]{1,60}")
#: check_budget's messages name the field they are about; the first found is the param.
_FIELDS = ("soft_usd", "limit_usd", "period", "scope_id", "scope")

router = APIRouter(tags=["budgets"])


class SetBudget(base.Input):
    scope: Scope = Field(default="global", description="global, team or key.")
    scope_id: StrictStr | None = Field(
        default=None, description="The key id or team name (none for global)."
    )
    period: Period = Field(default="month", description="The window spend is counted over.")
    limit_usd: Dollars = Field(description="Requests are refused beyond this.", examples=[100])
    soft_usd: Dollars | None = Field(default=None, description="An alert fires past this.")


class BudgetOut(base.Output):
    id: str
    scope: str
    scope_id: str
    period: str
    limit_usd: float
    soft_usd: float | None
    created_at: Timestamp
    updated_at: Timestamp


class BudgetSpent(BudgetOut):
    spent_usd: float | None = Field(description="Spent in the current window (null: unknown).")


class BudgetDeleted(BudgetOut):
    deleted: Literal[True]


class BudgetList(base.Output):
    object: Literal["list"]
    data: list[BudgetSpent]


def _store(ctx: base.AdminContext) -> BudgetStore:
    # The router is only included when the gateway has a budget store.
    assert ctx.budgets is not None
    return ctx.budgets


@router.get("/budgets", response_model=BudgetList, summary="List budgets with their spend")
async def list_budgets(ctx: Context) -> dict[str, Any]:
    data = []
    for budget in await _store(ctx).list():
        item = budget.public()
        item["spent_usd"] = None if ctx.spent is None else await ctx.spent(budget)
        data.append(item)
    return {"object": "list", "data": data}


@router.post("/budgets", response_model=BudgetOut, summary="Set (or replace) a budget")
async def set_budget(body: SetBudget, caller: AdminCaller, ctx: Context) -> dict[str, Any]:
    scope_id = "" if body.scope == "global" else (body.scope_id or "").strip()
    if scope_id:
        try:
            scope_id = base.check_text(scope_id)
        except ValueError as exc:
            raise bad("scope_id", str(exc)) from None
    if body.scope != "global" and not scope_id:
        what = "key id" if body.scope == "key" else "team name"
        raise bad("scope_id", f"a {body.scope} budget needs 'scope_id': the {what}")
    if body.scope == "key" and await ctx.keys.get(scope_id) is None:
        raise bad("scope_id", f"no key with id {scope_id!r} (aiwire keys list)")
    try:
        check_budget(body.scope, scope_id, body.period, body.limit_usd, body.soft_usd)
        record: BudgetRecord = await _store(ctx).set(
            body.scope,
            scope_id,
            body.period,
            body.limit_usd,
            body.soft_usd,
            actor=base.actor(caller),
        )
    except ValueError as exc:
        raise bad(next((f for f in _FIELDS if f in str(exc)), "scope_id"), str(exc)) from None
    if ctx.on_budget_change is not None:
        ctx.on_budget_change()
    log.info("admin: set budget %s (%s) for %s", record.id, record.label, base.actor(caller))
    return record.public()


@router.delete("/budgets/{budget_id}", response_model=BudgetDeleted, summary="Delete a budget")
async def delete_budget(budget_id: str, caller: AdminCaller, ctx: Context) -> dict[str, Any]:
    try:
        if not _BUDGET_ID.fullmatch(budget_id):
            raise UnknownBudgetError(f"no budget with id {budget_id[:64]!r}")
        record = await _store(ctx).delete(budget_id, actor=base.actor(caller))
    except UnknownBudgetError as exc:
        raise errors.NotFoundError(
            f"{exc.message}; list them with GET /admin/budgets", code="unknown_budget"
        ) from None
    if ctx.on_budget_change is not None:
        ctx.on_budget_change()
    log.info("admin: deleted budget %s for %s", record.id, base.actor(caller))
    return {"deleted": True, **record.public()}


__all__ = ["router"]
