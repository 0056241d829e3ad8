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
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from aiwire import errors
from aiwire.flows import webhook
from aiwire.flows.loader import Flow, load_flow
from aiwire.flows.review import ReviewError, ReviewQueue
from aiwire.flows.runner import FlowRunner
from aiwire.flows.service import FlowService
from aiwire.flows.store import FlowStore
from aiwire.server import openai_wire
from aiwire.server.asgi import BodyTooLarge, ClientGone, Receive, Scope, Send, read_body, respond
from aiwire.server.auth import ScopeAuth

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
    return service
