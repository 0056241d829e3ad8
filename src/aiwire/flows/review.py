"""The review queue: people approve, edit or reject what a flow is about to send.

A ``review`` step holds a record (``waiting_review``) with a *draft*: the fields it shows, as the
model proposed them. A decision:

- **approve**: the record continues unchanged;
- **edit**: the reviewer's values replace the draft's — only fields the step lists as
  ``editable``, and a model's answer stays valid against its schema (an edit that breaks it is
  refused, nothing is saved); the record continues with the edited values;
- **reject** with a reason: the record ends as ``rejected`` (no sink write), or continues with
  the decision visible to sinks when the step says ``on_reject: continue``.

Each decision is written once (a second decision on the same review is refused), together with
the record's new state and an entry in the hash-chained audit trail (actor: the reviewer). The
step's ``timeout`` applies ``on_timeout`` (approve, reject, or the dead-letter queue), audited as
the ``system`` actor. :meth:`ReviewQueue.stats` reports per flow how often people accepted the
model's draft, the number a team watches before letting a flow send on its own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from aiwire.errors import AIWireError
from aiwire.flows import paths
from aiwire.flows.definition import ModelStep, ReviewStep
from aiwire.flows.llm import with_confidence
from aiwire.flows.loader import Flow, load_flow
from aiwire.flows.store import FlowStore
from aiwire.store.models import FlowReview


class ReviewError(AIWireError):
    """A decision that cannot be taken; ``status`` is the HTTP status the admin API answers."""


def public(review: FlowReview) -> dict[str, Any]:
    """A review as the CLI and the admin API show it."""
    return {
        "id": review.id,
        "flow": review.flow,
        "record": review.key,
        "step": review.step,
        "queue": review.queue,
        "status": review.status,
        "draft": review.draft,
        "editable": list(review.editable),
        "instructions": review.instructions,
        "reviewer": review.reviewer,
        "reason": review.reason,
        "edits": review.edits,
        "created_at": review.created_at.isoformat(),
        "due_at": review.due_at.isoformat() if review.due_at else None,
        "decided_at": review.decided_at.isoformat() if review.decided_at else None,
    }


class ReviewQueue:
    """Decisions over the store. ``flows``: flows already loaded by name; any other is loaded
    from the path its last run registered."""

    def __init__(self, store: FlowStore, flows: Mapping[str, Flow] | None = None) -> None:
        self.store = store
        self._flows: dict[str, Flow] = dict(flows or {})

    async def flow(self, name: str) -> Flow:
        found = self._flows.get(name)
        if found is not None:
            return found
        path = await self.store.definition_path(name)
        if path is None or not _exists(path):
            raise ReviewError(
                f"cannot find the file of flow {name!r}: run it once (aiwire flow run FILE) so "
                "its path is registered",
                status=404,
            )
        found = self._flows[name] = load_flow(path)
        return found

    # -- reading -----------------------------------------------------------------------------

    async def list(
        self,
        *,
        flow: str | None = None,
        status: str | None = "pending",
        queue: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.store.reviews(
            flow=flow, status=status, queue=queue, limit=limit, offset=offset
        )
        return [public(r) for r in rows], total

    async def get(self, review_id: str) -> dict[str, Any]:
        """One review with its source record and the record as it stands."""
        review = await self._review(review_id)
        record = await self.store.record(review.flow, review.key)
        out = public(review)
        out["source"] = review.source
        out["record_state"] = record.state if record is not None else None
        out["data"] = record.data if record is not None else None
        return out

    async def _review(self, review_id: str) -> FlowReview:
        review = await self.store.review(review_id)
        if review is None:
            raise ReviewError(f"no review {review_id!r}", status=404, code="unknown_review")
        return review

    # -- deciding ----------------------------------------------------------------------------

    async def approve(self, review_id: str, *, reviewer: str) -> dict[str, Any]:
        return await self._decide(review_id, "approved", reviewer=reviewer)

    async def edit(self, review_id: str, edits: dict[str, Any], *, reviewer: str) -> dict[str, Any]:
        if not edits:
            raise ReviewError("edit: give at least one field and its new value", status=400)
        return await self._decide(review_id, "edited", reviewer=reviewer, edits=edits)

    async def reject(self, review_id: str, *, reason: str, reviewer: str) -> dict[str, Any]:
        if not reason.strip():
            raise ReviewError("reject: give a reason (it is kept with the decision)", status=400)
        return await self._decide(review_id, "rejected", reviewer=reviewer, reason=reason.strip())

    async def expire(self, review_id: str) -> bool:
        """Apply the step's ``on_timeout`` to an overdue review (False if already decided)."""
        review = await self._review(review_id)
        if review.status != "pending":
            return False
        flow = await self.flow(review.flow)
        step = self._step(flow, review.step)
        if step.on_timeout == "approve":
            await self._decide(review_id, "approved", reviewer="system:timeout", actor="system")
            return True
        if step.on_timeout == "reject":
            await self._decide(
                review_id,
                "rejected",
                reviewer="system:timeout",
                actor="system",
                reason="no decision before the review timed out",
            )
            return True
        record = await self.store.record(review.flow, review.key)
        decided = await self.store.decide(
            review_id,
            status="expired",
            actor="system",
            reviewer="system:timeout",
            reason="no decision before the review timed out",
            edits=None,
            record_state="dead",
            record_data=None,
            position=None,
        )
        if decided is None:
            return False
        await self.store.dead_letter(
            review.flow,
            review.key,
            stage=review.step,
            error_class="review_timeout",
            error="the review timed out without a decision",
            record={"data": record.data if record else {}, "source": review.source},
            attempts=1,
            run_id=None,
            details={"review": review_id},
        )
        return True

    async def _decide(
        self,
        review_id: str,
        status: str,
        *,
        reviewer: str,
        reason: str | None = None,
        edits: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        review = await self._review(review_id)
        if review.status != "pending":
            raise ReviewError(
                f"review {review_id} is already {review.status}", status=409, code="already_decided"
            )
        flow = await self.flow(review.flow)
        step = self._step(flow, review.step)
        record = await self.store.record(review.flow, review.key)
        if record is None or record.state != "waiting_review":
            raise ReviewError(f"the record of review {review_id} is not waiting for it", status=409)
        data = copy.deepcopy(record.data)
        if edits:
            self._apply_edits(flow, review, data, edits)
        data["_review"] = {
            "decision": status,
            "reviewer": reviewer,
            "reason": reason,
            "edited": sorted(edits) if edits else [],
            "auto": False,
        }
        stop = status == "rejected" and step.on_reject == "stop"
        decided = await self.store.decide(
            review_id,
            status=status,
            actor=actor or reviewer,
            reviewer=reviewer,
            reason=reason,
            edits=edits,
            record_state="rejected" if stop else "pending",
            record_data=data,
            position=record.position + 1,
        )
        if decided is None:
            raise ReviewError(f"review {review_id} was decided meanwhile", status=409)
        return await self.get(review_id)

    @staticmethod
    def _step(flow: Flow, step_id: str) -> ReviewStep:
        for sid, step in flow.steps():
            if sid == step_id and isinstance(step, ReviewStep):
                return step
        raise ReviewError(
            f"flow {flow.name} has no review step {step_id!r} any more (the file changed?)",
            status=409,
        )

    def _apply_edits(
        self, flow: Flow, review: FlowReview, data: dict[str, Any], edits: dict[str, Any]
    ) -> None:
        for path, value in edits.items():
            if path not in review.editable:
                allowed = ", ".join(review.editable) or "none"
                raise ReviewError(
                    f"{path!r} is not editable in this review (editable: {allowed})", status=400
                )
            paths.set_(data, path, value)
        # A model's answer must still match its schema after the edit.
        for sid, step in flow.steps():
            if not isinstance(step, ModelStep):
                continue
            into = step.into or sid
            if not any(
                p == into or p.startswith(into + ".") or p.startswith(into + "[") for p in edits
            ):
                continue
            schema = flow.schemas.get(sid)
            if schema is not None and step.confidence:
                schema = with_confidence(schema)  # the answer carries its confidence too
            answer = paths.get(data, into)
            if schema is None or answer is paths.MISSING:
                continue
            problem = _invalid(schema, answer)
            if problem:
                raise ReviewError(f"the edit makes {into} invalid: {problem}", status=422)

    # -- reporting ---------------------------------------------------------------------------

    async def stats(self, flow: str | None = None) -> dict[str, dict[str, Any]]:
        """Per flow: decisions by kind, and how often people accepted the draft.

        ``acceptance_rate`` = (approved + edited) / human decisions; ``approved_as_is_rate`` =
        approved / human decisions (the model's draft went out unchanged). Timeouts and
        auto-approvals are counted but are not human decisions."""
        out: dict[str, dict[str, Any]] = {}
        for name, counts in (await self.store.review_stats(flow)).items():
            approved, edited = counts.get("approved", 0), counts.get("edited", 0)
            rejected = counts.get("rejected", 0)
            human = approved + edited + rejected
            out[name] = {
                "pending": counts.get("pending", 0),
                "approved": approved,
                "edited": edited,
                "rejected": rejected,
                "expired": counts.get("expired", 0),
                "auto_approved": counts.get("auto_approved", 0),
                "human_decisions": human,
                "acceptance_rate": round((approved + edited) / human, 4) if human else None,
                "approved_as_is_rate": round(approved / human, 4) if human else None,
            }
        return out


def _exists(path: str) -> bool:
    return Path(path).exists()


def _invalid(schema: dict[str, Any] | type[BaseModel], value: Any) -> str | None:
    if isinstance(schema, dict):
        found = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
        )
        if found:
            return "; ".join(
                f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in found
            )
        return None
    try:
        schema.model_validate(value)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
    return None
