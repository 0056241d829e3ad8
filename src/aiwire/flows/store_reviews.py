"""The review rows of the flow store: held records, decisions (audited) and their counts.

A mixin of :class:`aiwire.flows.store.FlowStore` (kept apart to keep each module small); the
decision logic — who may edit what, time-outs — is :class:`aiwire.flows.review.ReviewQueue`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from aiwire.flows.rows import TERMINAL, jsonable, new_id, now
from aiwire.store import audit
from aiwire.store.db import Database
from aiwire.store.models import FlowRecord, FlowReview


class ReviewRows:
    db: Database

    async def open_review(
        self,
        flow: str,
        key: str,
        *,
        step: str,
        queue: str,
        draft: dict[str, Any],
        source: dict[str, Any],
        editable: list[str],
        instructions: str | None,
        due_at: datetime | None,
        position: int,
        data: dict[str, Any],
    ) -> str:
        """Hold a record for review: the review row and the record's ``waiting_review`` state
        (with its data as of the review step) in one transaction. A pending review for the same
        record and step (a resumed run) is kept; an expired one (its record was dead-lettered
        and is being replayed) is opened again with the new draft."""
        t = now()
        async with self.db.session() as s:
            existing = await s.scalar(
                select(FlowReview).where(
                    FlowReview.flow == flow, FlowReview.key == key, FlowReview.step == step
                )
            )
            review_id = existing.id if existing is not None else new_id("rev")
            if existing is not None and existing.status == "expired":
                existing.status, existing.draft = "pending", jsonable(draft)
                existing.created_at, existing.due_at = t, due_at
                existing.decided_at = existing.reviewer = existing.reason = None
            if existing is None:
                s.add(
                    FlowReview(
                        id=review_id,
                        flow=flow,
                        key=key,
                        step=step,
                        queue=queue,
                        status="pending",
                        draft=jsonable(draft),
                        source=jsonable(source),
                        editable=list(editable),
                        instructions=instructions,
                        created_at=t,
                        due_at=due_at,
                    )
                )
            await s.execute(
                update(FlowRecord)
                .where(FlowRecord.flow == flow, FlowRecord.key == key)
                .values(
                    state="waiting_review",
                    data=jsonable(data),
                    position=position,
                    owner=None,
                    lease_until=None,
                    updated_at=t,
                )
            )
        return review_id

    async def auto_review(
        self,
        flow: str,
        key: str,
        *,
        step: str,
        queue: str,
        draft: dict[str, Any],
        source: dict[str, Any],
        policy: str,
    ) -> str:
        """Record (and audit) an auto-approval, so acceptance reports count it."""
        t = now()
        async with self.db.session() as s:
            existing = await s.scalar(
                select(FlowReview.id).where(
                    FlowReview.flow == flow, FlowReview.key == key, FlowReview.step == step
                )
            )
            if existing is not None:
                return existing
            review_id = new_id("rev")
            s.add(
                FlowReview(
                    id=review_id,
                    flow=flow,
                    key=key,
                    step=step,
                    queue=queue,
                    status="auto_approved",
                    draft=jsonable(draft),
                    source=jsonable(source),
                    editable=[],
                    reviewer="system:auto_approve",
                    reason=f"auto_approve: {policy}",
                    created_at=t,
                    decided_at=t,
                )
            )
            await audit.append(
                s,
                "system",
                "flow.review.auto_approved",
                f"flow:{flow}/record:{key}/review:{review_id}",
                after={"status": "auto_approved", "policy": policy},
            )
        return review_id

    async def review(self, review_id: str) -> FlowReview | None:
        async with self.db.session() as s:
            return await s.get(FlowReview, review_id)

    async def reviews(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[FlowReview], int]:
        conditions = []
        if flow:
            conditions.append(FlowReview.flow == flow)
        if status:
            conditions.append(FlowReview.status == status)
        if queue:
            conditions.append(FlowReview.queue == queue)
        async with self.db.session() as s:
            total = int(
                await s.scalar(select(func.count()).select_from(FlowReview).where(*conditions)) or 0
            )
            rows = (
                await s.scalars(
                    select(FlowReview)
                    .where(*conditions)
                    .order_by(FlowReview.created_at, FlowReview.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return list(rows), total

    async def due_reviews(self, flow: str) -> list[FlowReview]:
        async with self.db.session() as s:
            return list(
                (
                    await s.scalars(
                        select(FlowReview).where(
                            FlowReview.flow == flow,
                            FlowReview.status == "pending",
                            FlowReview.due_at.is_not(None),
                            FlowReview.due_at < now(),
                        )
                    )
                ).all()
            )

    async def decide(
        self,
        review_id: str,
        *,
        status: str,
        actor: str,
        reviewer: str | None,
        reason: str | None,
        edits: dict[str, Any] | None,
        record_state: str,
        record_data: dict[str, Any] | None,
        position: int | None,
    ) -> FlowReview | None:
        """Record a decision (once: a review already decided is left alone and None returned),
        move the record on, and append the decision to the audit trail, in one transaction."""
        t = now()
        async with self.db.session() as s:
            result = await s.execute(
                update(FlowReview)
                .where(FlowReview.id == review_id, FlowReview.status == "pending")
                .values(status=status, reviewer=reviewer, reason=reason, edits=edits, decided_at=t)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return None
            review = await s.get(FlowReview, review_id)
            assert review is not None
            values: dict[str, Any] = {"state": record_state, "updated_at": t}
            if record_data is not None:
                values["data"] = jsonable(record_data)
            if position is not None:
                values["position"] = position
            if record_state in TERMINAL:
                values["finished_at"] = t
            await s.execute(
                update(FlowRecord)
                .where(FlowRecord.flow == review.flow, FlowRecord.key == review.key)
                .values(**values)
            )
            await audit.append(
                s,
                actor,
                f"flow.review.{status}",
                f"flow:{review.flow}/record:{review.key}/review:{review_id}",
                before={"status": "pending", "draft": review.draft},
                after={
                    "status": status,
                    "reviewer": reviewer,
                    "reason": reason,
                    "edits": edits,
                },
            )
            return review

    async def review_stats(self, flow: str | None = None) -> dict[str, dict[str, int]]:
        """Reviews by flow and status."""
        async with self.db.session() as s:
            q = select(FlowReview.flow, FlowReview.status, func.count()).group_by(
                FlowReview.flow, FlowReview.status
            )
            if flow is not None:
                q = q.where(FlowReview.flow == flow)
            out: dict[str, dict[str, int]] = {}
            for name, status, n in (await s.execute(q)).all():
                out.setdefault(name, {})[status] = int(n)
            return out
