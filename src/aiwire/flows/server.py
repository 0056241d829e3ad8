"""The flows' HTTP face, mounted on the gateway (or served alone by ``aiwire flow serve``).

- ``POST /flows/{name}/events``: a webhook event for a flow with ``source: {kind: webhook}``
  (signature checks in :mod:`aiwire.flows.webhook`); 202 when stored, 200 for a duplicate event
  id, 401 for a bad or stale signature (nothing stored);
- the review queue, master key only (the web console is built on these)::

    GET  /admin/review?flow=&status=pending|approved|edited|rejected|expired|auto_approved|all
                      &queue=&limit=50&offset=0          -> {"data": [...], "total": n}
    GET  /admin/review/stats?flow=                      -> {"data": {flow: acceptance stats}}
    GET  /admin/review/{id}                             -> the review, its source record, data
    POST /admin/review/{id}/approve  {"reviewer"}
    POST /admin/review/{id}/edit     {"edits": {"path": value}, "reviewer"}
    POST /admin/review/{id}/reject   {"reason", "reviewer"}

Errors use the gateway's OpenAI-shaped error body.

On a gateway the admin API also gets the flows' own routes (:data:`admin_router`, FastAPI, so
they are typed and in ``/admin/openapi.json``)::

    GET  /admin/flows                                  -> each flow, its records, DLQ, last run
    GET  /admin/flows/{name}/runs?limit=&before=       -> runs with per-step counts and timings
    GET  /admin/flows/{name}/runs/{run_id}             -> a run and its step checkpoints
    GET  /admin/flows/{name}/dead-letters?status=&limit=
    POST /admin/flows/{name}/replay  {"ids": [...]}    -> requeue (all open, or these) and run
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from aiwire import errors
from aiwire.flows import webhook
from aiwire.flows.loader import Flow, load_flow
from aiwire.flows.review import ReviewError, ReviewQueue
from aiwire.flows.runner import FlowRunner
from aiwire.flows.service import FlowService
from aiwire.flows.store import FlowStore
from aiwire.server import admin_base as base
from aiwire.server import openai_wire
from aiwire.server.admin_base import Timestamp
from aiwire.server.asgi import BodyTooLarge, ClientGone, Receive, Scope, Send, read_body, respond
from aiwire.server.auth import ScopeAuth
from aiwire.store import flow_views
from aiwire.store.models import FlowDeadLetter, FlowRun, FlowStep

if TYPE_CHECKING:
    from aiwire.server.app import Gateway

log = logging.getLogger("aiwire.flows")

EVENTS_PREFIX = "/flows"
REVIEW_PREFIX = "/admin/review"
#: Flow files served by ``aiwire serve``: paths (files or directories) separated by ``:``.
ENV_FLOWS = "AIWIRE_FLOWS"
MAX_ADMIN_BODY = 256 * 1024
_STATUSES = ("pending", "approved", "edited", "rejected", "expired", "auto_approved")


class FlowsApp:
    """Raw-ASGI handler for ``/flows/...`` and ``/admin/review/...``."""

    def __init__(self, service: FlowService, authenticate: ScopeAuth) -> None:
        self.service = service
        self.authenticate = authenticate
        self.queue = ReviewQueue(service.store, service.flows)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        try:
            if path.startswith(REVIEW_PREFIX):
                await self._require_admin(scope)
                await self._review(scope, receive, send, path[len(REVIEW_PREFIX) :].strip("/"))
            else:
                await self._events(scope, receive, send, path[len(EVENTS_PREFIX) :].strip("/"))
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await _fail(
                send, errors.BadRequestError(str(exc), status=413, code="request_too_large")
            )
        except errors.AIWireError as exc:
            await _fail(send, exc)
        except Exception:  # never the exception's text in an answer
            log.exception("flows %s %s failed", scope["method"], path)
            status, body, headers = openai_wire.internal_error_body()
            await respond(send, status, body, headers=headers.items())

    async def _require_admin(self, scope: Scope) -> None:
        try:
            principal = await self.authenticate(scope)
        except errors.AuthenticationError as exc:
            raise errors.AuthenticationError(
                "the review API accepts the gateway's master key or a key with the admin scope, "
                "sent as `Authorization: Bearer <key>`",
                code=exc.code,
            ) from None
        if not principal.is_admin:
            raise errors.PermissionDeniedError(
                f"key {principal.name!r} lacks the admin scope the review API needs "
                '(created with scopes ["admin"])',
                code="master_key_required",
            )

    # -- webhooks ----------------------------------------------------------------------------

    async def _events(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        name, _, tail = rest.partition("/")
        flow = self.service.flows.get(name)
        if tail != "events" or flow is None:
            raise errors.NotFoundError(f"no flow {name!r} takes events here", code="unknown_flow")
        if scope["method"] != "POST":
            raise errors.BadRequestError("send events with POST", status=405)
        body = await read_body(scope, receive, 20 * 1024 * 1024)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            accepted = await webhook.receive(flow, self.service.store, headers, body)
        except webhook.WebhookRefused as exc:
            await respond(
                send,
                exc.status,
                orjson.dumps({"error": {"message": exc.message, "type": "webhook_refused"}}),
            )
            return
        answer = {
            "status": "duplicate" if accepted.duplicate else "accepted",
            "event_id": accepted.event_id,
            "record": accepted.key,
        }
        await respond(send, 200 if accepted.duplicate else 202, orjson.dumps(answer))
        if not accepted.duplicate:
            self.service.kick(flow.name)

    # -- review queue ------------------------------------------------------------------------

    async def _review(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        method = scope["method"]
        parts = [p for p in rest.split("/") if p]
        if not parts and method == "GET":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            status = query.get("status", "pending")
            if status not in (*_STATUSES, "all"):
                raise errors.BadRequestError(
                    f"status must be one of {', '.join(_STATUSES)} or all", param="status"
                )
            data, total = await self.queue.list(
                flow=query.get("flow") or None,
                status=None if status == "all" else status,
                queue=query.get("queue") or None,
                limit=_int(query.get("limit"), 50, "limit", 1, 500),
                offset=_int(query.get("offset"), 0, "offset", 0, 10**9),
            )
            await _json(send, 200, {"data": data, "total": total})
        elif parts == ["stats"] and method == "GET":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            await _json(send, 200, {"data": await self.queue.stats(query.get("flow") or None)})
        elif len(parts) == 1 and method == "GET":
            await _json(send, 200, await self.queue.get(parts[0]))
        elif len(parts) == 2 and method == "POST" and parts[1] in ("approve", "edit", "reject"):
            body = await _body(scope, receive)
            reviewer = str(body.get("reviewer") or "admin")
            review_id, action = parts
            if action == "approve":
                result = await self.queue.approve(review_id, reviewer=reviewer)
            elif action == "edit":
                edits = body.get("edits")
                if not isinstance(edits, dict):
                    raise errors.BadRequestError(
                        'edit needs {"edits": {"field.path": "new value"}}', param="edits"
                    )
                result = await self.queue.edit(review_id, edits, reviewer=reviewer)
            else:
                result = await self.queue.reject(
                    review_id, reason=str(body.get("reason") or ""), reviewer=reviewer
                )
            self.service.kick(result["flow"])
            await _json(send, 200, result)
        else:
            raise errors.NotFoundError(f"no route {method} {REVIEW_PREFIX}/{rest}")


async def _body(scope: Scope, receive: Receive) -> dict[str, Any]:
    raw = await read_body(scope, receive, MAX_ADMIN_BODY)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.BadRequestError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise errors.BadRequestError("the body must be a JSON object")
    return data


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise errors.BadRequestError(
            f"{name} must be a whole number from {low} to {high}", param=name
        )
    return int(value)


async def _json(send: Send, status: int, data: Any) -> None:
    await respond(send, status, orjson.dumps(data, default=str))


async def _fail(send: Send, exc: errors.AIWireError) -> None:
    if isinstance(exc, ReviewError):
        exc = errors.BadRequestError(exc.message, status=exc.status, code=exc.code)
    status, body, headers = openai_wire.error_body(exc)
    await respond(send, status, body, headers=headers.items())


def discover(spec: str | None = None) -> list[Path]:
    """Flow files named by ``spec`` (or ``$AIWIRE_FLOWS``; default ``./flows``): files, or
    directories whose ``*.yaml``/``*.yml`` files are flows."""
    spec = spec if spec is not None else os.environ.get(ENV_FLOWS, "")
    entries = [Path(p) for p in spec.split(os.pathsep) if p] or [Path("flows")]
    found: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            found += sorted([*entry.glob("*.yaml"), *entry.glob("*.yml")])
        elif entry.is_file():
            found.append(entry)
    return found


def load_all(files: list[Path]) -> dict[str, Flow]:
    flows: dict[str, Flow] = {}
    for path in files:
        flow = load_flow(path)
        if flow.name in flows:
            raise errors.ConfigError(
                f"two flow files are named {flow.name!r}: {flows[flow.name].path} and {path}"
            )
        flows[flow.name] = flow
    return flows


def mount_flows(gateway: Gateway) -> FlowService | None:
    """Serve flows inside the gateway: webhook events under ``/flows``, the review queue under
    ``/admin/review``, and scheduled runs. The flow files come from ``$AIWIRE_FLOWS`` (paths or
    directories, ``:``-separated; default ``./flows``); the store, router and alerts are the
    gateway's. Without a store (a bare test gateway) nothing is mounted."""
    if gateway.database is None:
        return None
    flows = load_all(discover())
    store = FlowStore(gateway.database)
    runner = FlowRunner(store, gateway.router, alerts=gateway.alerts)
    service = FlowService(store, runner, flows)
    app = FlowsApp(service, gateway.principal)
    gateway.mount(EVENTS_PREFIX, app, on_startup=service.start, on_shutdown=service.stop)
    gateway.mount(REVIEW_PREFIX, app)
    if gateway.admin is not None:
        gateway.admin.app.state.flows = service
        gateway.admin.include(admin_router)
    return service


# -- /admin/flows: runs, per-step timings, dead letters, replay (typed, in the OpenAPI spec) ---

admin_router = APIRouter(tags=["flows"])


def _service(request: Request) -> FlowService:
    return cast(FlowService, request.app.state.flows)


Service = Annotated[FlowService, Depends(_service)]


class StepTotals(base.Output):
    done: int
    skipped: int
    failed: int
    ms: float = Field(description="Time spent in the step over the run's records.")
    avg_ms: float | None = Field(description="Per record that ran the step.")
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class RunOut(base.Output):
    id: str
    flow: str
    trigger: str
    status: str
    counts: dict[str, int]
    steps: dict[str, StepTotals]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: str | None
    started_at: Timestamp
    finished_at: Timestamp | None
    duration_ms: float | None


class RunList(base.Output):
    object: Literal["list"]
    data: list[RunOut]


class StepRow(base.Output):
    record: str
    step: str
    status: str
    ms: float
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    confidence: float | None
    finished_at: Timestamp


class RunDetail(RunOut):
    records: list[StepRow] = Field(description="The step checkpoints the run wrote, in order.")
    truncated: bool = Field(description="More than the rows shown were written.")


class FlowSummary(base.Output):
    name: str
    description: str
    path: str | None
    source: str
    schedule: str | None
    steps: list[str]
    sinks: list[str]
    records: dict[str, int] = Field(description="Records by state.")
    open_dead_letters: int
    pending_reviews: int
    last_run: RunOut | None


class FlowList(base.Output):
    object: Literal["list"]
    data: list[FlowSummary]


class DeadLetterOut(base.Output):
    id: str
    flow: str
    record: str
    stage: str = Field(description="The step or sink that failed.")
    error_class: str
    error: str
    details: dict[str, Any] | None
    data: dict[str, Any] = Field(description="The record as it was when it failed.")
    attempts: int
    status: str
    run_id: str | None
    created_at: Timestamp
    resolved_at: Timestamp | None


class DeadLetterList(base.Output):
    object: Literal["list"]
    data: list[DeadLetterOut]


class Replay(base.Input):
    ids: list[base.Text] | None = Field(
        default=None, description="Dead-letter ids to replay (none: every open one)."
    )


class Replayed(base.Output):
    flow: str
    requeued: list[str] = Field(description="The record keys put back in the queue.")


@admin_router.get("/flows", response_model=FlowList, summary="Every flow, with its state")
async def list_flows(service: Service) -> dict[str, Any]:
    store = service.store
    names = sorted(service.flows)
    extra = await flow_views.open_counts(store.db, names)
    data = []
    for name in names:
        flow = service.flows[name]
        last = await flow_views.runs(store.db, name, 1)
        data.append(
            {
                "name": name,
                "description": flow.spec.description,
                "path": str(flow.path) if flow.path is not None else None,
                "source": flow.spec.source.kind,
                "schedule": flow.spec.schedule,
                "steps": flow.spec.step_ids(),
                "sinks": flow.spec.sink_ids(),
                "records": await store.state_counts(name),
                "open_dead_letters": extra[name]["dead_letters"],
                "pending_reviews": extra[name]["pending_reviews"],
                "last_run": _run(last[0]) if last else None,
            }
        )
    return {"object": "list", "data": data}


@admin_router.get("/flows/{name}/runs", response_model=RunList, summary="A flow's runs")
async def list_runs(
    name: str,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[str | None, Query(max_length=64, description="A run id.")] = None,
) -> dict[str, Any]:
    _flow(service, name)
    if before is not None and base.CONTROL.search(before):
        raise base.bad("before", "must not contain control characters")
    runs = await flow_views.runs(service.store.db, name, limit, before)
    return {"object": "list", "data": [_run(r) for r in runs]}


@admin_router.get(
    "/flows/{name}/runs/{run_id}", response_model=RunDetail, summary="A run and its steps"
)
async def get_run(name: str, run_id: str, service: Service) -> dict[str, Any]:
    _flow(service, name)
    run = None if base.CONTROL.search(run_id) else await service.store.run(run_id[:64])
    if run is None or run.flow != name:
        raise errors.NotFoundError(f"flow {name} has no run {run_id[:64]!r}", code="unknown_run")
    steps, truncated = await flow_views.run_steps(service.store.db, run.id)
    return {**_run(run), "records": [_step(s) for s in steps], "truncated": truncated}


@admin_router.get(
    "/flows/{name}/dead-letters", response_model=DeadLetterList, summary="A flow's dead letters"
)
async def list_dead_letters(
    name: str,
    service: Service,
    status: Annotated[
        Literal["open", "replayed", "discarded", "all"], Query(description="Default: open.")
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    _flow(service, name)
    rows = await flow_views.dead_letters(
        service.store.db, name, None if status == "all" else status, limit
    )
    return {"object": "list", "data": [_dead_letter(d) for d in rows]}


@admin_router.post(
    "/flows/{name}/replay",
    response_model=Replayed,
    summary="Replay dead letters: their records run again from the step that failed",
)
async def replay(name: str, service: Service, body: Replay | None = None) -> dict[str, Any]:
    _flow(service, name)
    ids = body.ids if body is not None else None
    keys = await service.store.requeue_dead_letters(name, ids)
    if keys:
        service.kick(name)  # completed steps and deliveries are not repeated
    return {"flow": name, "requeued": keys}


def _flow(service: FlowService, name: str) -> Flow:
    flow = service.flows.get(name)
    if flow is None:
        known = ", ".join(sorted(service.flows)) or "none"
        raise errors.NotFoundError(
            f"no flow {name[:64]!r} on this gateway (flows: {known})", code="unknown_flow"
        )
    return flow


def _run(run: FlowRun) -> dict[str, Any]:
    finished = run.finished_at
    duration = (finished - run.started_at).total_seconds() * 1000 if finished else None
    return {
        "id": run.id,
        "flow": run.flow,
        "trigger": run.trigger,
        "status": run.status,
        "counts": {str(k): int(v) for k, v in (run.counts or {}).items()},
        "steps": {str(k): _totals(v) for k, v in (run.steps or {}).items()},
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": round(float(run.cost_usd), 10),
        "error": run.error,
        "started_at": run.started_at.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        "duration_ms": round(duration, 3) if duration is not None else None,
    }


def _totals(value: Any) -> dict[str, Any]:
    data = value if isinstance(value, dict) else {}
    ran = int(data.get("done", 0)) + int(data.get("failed", 0))
    ms = float(data.get("ms", 0.0))
    return {
        "done": int(data.get("done", 0)),
        "skipped": int(data.get("skipped", 0)),
        "failed": int(data.get("failed", 0)),
        "ms": round(ms, 3),
        "avg_ms": round(ms / ran, 3) if ran else None,
        "calls": int(data.get("calls", 0)),
        "input_tokens": int(data.get("input_tokens", 0)),
        "output_tokens": int(data.get("output_tokens", 0)),
        "cost_usd": round(float(data.get("cost_usd", 0.0)), 10),
    }


def _step(step: FlowStep) -> dict[str, Any]:
    return {
        "record": step.key,
        "step": step.step,
        "status": step.status,
        "ms": round(step.ms, 3),
        "calls": step.calls,
        "input_tokens": step.input_tokens,
        "output_tokens": step.output_tokens,
        "cost_usd": round(step.cost_usd, 10),
        "confidence": step.confidence,
        "finished_at": step.finished_at.isoformat(),
    }


def _dead_letter(row: FlowDeadLetter) -> dict[str, Any]:
    return {
        "id": row.id,
        "flow": row.flow,
        "record": row.key,
        "stage": row.stage,
        "error_class": row.error_class,
        "error": row.error,
        "details": row.details,
        "data": row.record,
        "attempts": row.attempts,
        "status": row.status,
        "run_id": row.run_id,
        "created_at": row.created_at.isoformat(),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
    }
