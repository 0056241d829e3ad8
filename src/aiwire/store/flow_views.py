"""Bounded reads of the flow tables for the admin API: a run's step rows, a page of dead
letters, each flow's last run. (The flow runner's own reads and writes are
:class:`aiwire.flows.store.FlowStore`; these only serve screens, so each is capped.)"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from aiwire.store.db import Database
from aiwire.store.models import FlowDeadLetter, FlowReview, FlowRun, FlowStep

#: The most step rows one run's detail returns (a run over many records has many).
MAX_STEP_ROWS = 500


async def run_steps(
    database: Database, run_id: str, limit: int = MAX_STEP_ROWS
) -> tuple[list[FlowStep], bool]:
    """The step checkpoints a run wrote, in order (``ix_flow_steps_run_id``), and whether
    there were more than ``limit``."""
    async with database.session() as s:
        rows = list(
            (
                await s.scalars(
                    select(FlowStep)
                    .where(FlowStep.run_id == run_id)
                    .order_by(FlowStep.id)
                    .limit(limit + 1)
                )
            ).all()
        )
    return rows[:limit], len(rows) > limit


async def dead_letters(
    database: Database, flow: str, status: str | None, limit: int
) -> list[FlowDeadLetter]:
    """A flow's dead letters, newest first (``ix_flow_dead_letters_flow_status``)."""
    query = select(FlowDeadLetter).where(FlowDeadLetter.flow == flow)
    if status is not None:
        query = query.where(FlowDeadLetter.status == status)
    query = query.order_by(FlowDeadLetter.created_at.desc(), FlowDeadLetter.id).limit(limit)
    async with database.session() as s:
        return list((await s.scalars(query)).all())


async def runs(
    database: Database, flow: str, limit: int, before: str | None = None
) -> list[FlowRun]:
    """A flow's runs, newest first (``ix_flow_runs_flow_started_at``), after run ``before``."""
    query = select(FlowRun).where(FlowRun.flow == flow)
    async with database.session() as s:
        if before is not None:
            anchor = await s.get(FlowRun, before)
            if anchor is not None and anchor.flow == flow:
                query = query.where(FlowRun.started_at < anchor.started_at)
        query = query.order_by(FlowRun.started_at.desc()).limit(limit)
        return list((await s.scalars(query)).all())


async def open_counts(database: Database, flows: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per flow: open dead letters and pending reviews (two GROUP BY queries)."""
    out: dict[str, dict[str, int]] = {f: {"dead_letters": 0, "pending_reviews": 0} for f in flows}
    if not flows:
        return out
    async with database.session() as s:
        dlq = await s.execute(
            select(FlowDeadLetter.flow, func.count())
            .where(FlowDeadLetter.flow.in_(list(flows)), FlowDeadLetter.status == "open")
            .group_by(FlowDeadLetter.flow)
        )
        for flow, n in dlq.all():
            out[flow]["dead_letters"] = int(n)
        reviews = await s.execute(
            select(FlowReview.flow, func.count())
            .where(FlowReview.flow.in_(list(flows)), FlowReview.status == "pending")
            .group_by(FlowReview.flow)
        )
        for flow, n in reviews.all():
            out[flow]["pending_reviews"] = int(n)
    return out


__all__ = ["MAX_STEP_ROWS", "dead_letters", "open_counts", "run_steps", "runs"]
