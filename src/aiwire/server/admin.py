"""The admin API under ``/admin``: virtual keys, budgets and usage reports, on FastAPI.

Who may call it: the gateway's master key, or a virtual key created with ``scopes: ["admin"]``
(the web console signs in with one). An ordinary virtual key is a credential for model calls and
gets a 403 saying so: letting it mint or revoke others would turn any leaked application key
into a way to keep access. The caller is authenticated before routing - through the gateway's
auth guard, so failures here are throttled like anywhere else - and so a stranger gets 401 for
every path, not a map of the routes that exist.

Errors use OpenAI's error shape, like the rest of the gateway, so the SDKs and ``aiwire keys``
read them the same way; a 400 always names the offending field in ``param`` and in the message,
FastAPI's own validation errors included.

The OpenAPI spec (``/admin/openapi.json``) and a docs page (``/admin/docs``) need no key: they
describe this version of aiwire, not this gateway's data. The docs page is self-contained:
FastAPI's Swagger UI would load its scripts from a CDN, which an offline gateway cannot reach
(and a careful one should not run).

More routes: ``gateway.admin.include(router)`` (see :mod:`aiwire.server.admin_base`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable
from importlib import resources
from typing import Any, get_args

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.exceptions import HTTPException

import aiwire
from aiwire import errors
from aiwire.server import (
    admin_budgets,
    admin_keys,
    admin_logs,
    admin_stats,
    admin_usage,
    openai_wire,
)
from aiwire.server.admin_base import (
    ERROR_RESPONSES,
    MASTER_ACTOR,
    PRINCIPAL_SCOPE_KEY,
    ROOT,
    AdminContext,
    admin_caller,
    bad,
    parse_duration,
    require_admin,
)
from aiwire.server.admin_keys import SCOPED_ENDPOINTS
from aiwire.server.asgi import (
    BodyTooLarge,
    ClientGone,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    respond,
)
from aiwire.server.auth import Authenticator, Principal, presented_secret
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.keys import KeyStateError, KeyStore, UnknownKeyError

log = logging.getLogger("aiwire.admin")

#: Admin bodies are a few hundred bytes; anything near this is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
#: Every path under this is the admin API's (the gateway dispatches on it).
PREFIX = f"{ROOT}/"
OPENAPI_PATH = f"{ROOT}/openapi.json"
DOCS_PATH = f"{ROOT}/docs"
#: Who admin actions by the master key are recorded as (kept for callers of the old name).
ACTOR = MASTER_ACTOR

_DOCS_FILES = {
    DOCS_PATH: ("admin_docs.html", "text/html"),
    f"{DOCS_PATH}/docs.js": ("admin_docs.js", "text/javascript"),
    f"{DOCS_PATH}/docs.css": ("admin_docs.css", "text/css"),
}
_PUBLIC = frozenset({OPENAPI_PATH, *_DOCS_FILES})
#: The docs page may load its own script and style and fetch the spec: nothing else.
_DOCS_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}
_DESCRIPTION = """\
Virtual keys, budgets and usage reports of an aiwire gateway.

**Authentication**: `Authorization: Bearer <key>` with the gateway's master key
(`AIWIRE_MASTER_KEY`) or a virtual key created with `scopes: ["admin"]`. Only the master key
creates, grants or rotates admin-scoped keys. Repeated authentication failures from one address
are answered 429 for a while.

**Errors** have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`; a 400 names
the offending field in `param`.
"""
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")
_AUTH_PROBLEMS = {
    "missing_api_key": "no API key",
    "key_revoked_or_expired": "this key is revoked or expired",
    "invalid_session": "the console session has ended (sign in again at /ui)",
}

Authenticate = Callable[[Scope], Awaitable[Principal]]


class AdminAPI:
    """The ASGI app the gateway serves every ``/admin/`` path with: authentication and the
    body limit in front of a FastAPI app (:attr:`app`) holding the routes."""

    def __init__(
        self,
        keys: KeyStore,
        auth: Authenticator,
        *,
        model_names: Callable[[], Collection[str]] | None = None,
        budgets: BudgetStore | None = None,
        on_budget_change: Callable[[], None] | None = None,
        spent: Callable[[BudgetRecord], Awaitable[float]] | None = None,
        authenticate: Authenticate | None = None,
    ) -> None:
        """``model_names``, when given, lists the models clients can ask for: a key scoped to any
        other name is refused, since a typo there would make a key that can call nothing.
        ``budgets`` enables /admin/budgets; ``spent`` reports a budget's current spend.
        ``authenticate`` is the gateway's (it applies the auth guard); by default ``auth``."""
        self.context = AdminContext(keys, auth, model_names, budgets, on_budget_change, spent)
        self._authenticate = authenticate or self._plain_authenticate
        self.app = _AdminApp(self.context)
        self.include(admin_keys.router)
        if budgets is not None:
            self.include(admin_budgets.router)
        self.include(admin_usage.router)
        self.include(admin_logs.router)  # the request log, row by row (the console's Logs)
        self.include(admin_stats.router)  # today, this month, time series (its Overview)

    def include(self, router: APIRouter) -> None:
        """Serve ``router``'s routes under ``/admin``, each requiring an admin caller."""
        self.app.include_router(router, prefix=ROOT, responses=ERROR_RESPONSES)
        self.app.openapi_schema = None  # the spec is rebuilt with the new routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in _PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._caller(scope)
            body = await read_body(scope, receive, MAX_BODY_BYTES)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await _send_error(send, _too_large(exc))
            return
        except errors.AIWireError as exc:
            await _send_error(send, exc)
            return
        inner = dict(scope)
        inner[PRINCIPAL_SCOPE_KEY] = principal
        if len(path) > len(PREFIX):
            inner["path"] = path.rstrip("/")  # /admin/keys/ is /admin/keys
        try:
            await self.app(inner, _replay(body, receive), send)
        except Exception:
            # The answer (a generic 500) went out already; the log gets the type and traceback,
            # never the request body (it may hold what the caller did not mean to have logged).
            log.exception("admin %s %s failed", scope["method"], path)

    async def _caller(self, scope: Scope) -> Principal:
        """The caller, if it may use the admin API; 401 or 403 (saying what to send) if not."""
        try:
            principal = await self._authenticate(scope)
        except errors.AuthenticationError as exc:
            # The authenticator's wording is for model calls ("ask an admin for a key"); here
            # the caller *is* the admin, and what they need is an admin credential.
            what = _AUTH_PROBLEMS.get(exc.code or "", "invalid master key or admin key")
            raise errors.AuthenticationError(
                f"{what}: the admin API accepts the gateway's master key (the value of "
                "AIWIRE_MASTER_KEY where the gateway runs) or an admin-scoped key, sent as "
                "`Authorization: Bearer <key>`",
                code=exc.code,
            ) from None
        require_admin(principal)
        return principal

    async def _plain_authenticate(self, scope: Scope) -> Principal:
        return await self.context.auth.authenticate(presented_secret(scope["headers"]))


class _AdminApp(FastAPI):
    """The FastAPI app behind :class:`AdminAPI`: every route depends on :func:`admin_caller`,
    and every error is answered in OpenAI's shape."""

    def __init__(self, context: AdminContext) -> None:
        super().__init__(
            title="aiwire admin API",
            version=aiwire.__version__,
            description=_DESCRIPTION,
            openapi_url=OPENAPI_PATH,
            docs_url=None,
            redoc_url=None,
            dependencies=[Depends(admin_caller)],
            # Clients (aiwire keys, curl -d) send JSON without a content type; CSRF is no
            # concern for a bearer-token API, which a browser never sends on its own.
            strict_content_type=False,
            redirect_slashes=False,
        )
        self.state.admin = context
        self.add_exception_handler(RequestValidationError, _on_validation)
        self.add_exception_handler(HTTPException, _on_http)
        self.add_exception_handler(UnknownKeyError, _on_unknown_key)
        self.add_exception_handler(KeyStateError, _on_key_state)
        self.add_exception_handler(errors.AIWireError, _on_aiwire)
        self.add_exception_handler(Exception, _on_crash)
        for path, (name, media_type) in _DOCS_FILES.items():
            self.add_route(
                path, _static(name, media_type), methods=["GET"], include_in_schema=False
            )

    def openapi(self) -> dict[str, Any]:
        """FastAPI's spec, without the 422 answers it assumes: validation errors are 400s here
        (documented with every other error)."""
        if self.openapi_schema is None:
            schema = get_openapi(
                title=self.title,
                version=self.version,
                description=self.description,
                routes=self.routes,
            )
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            self.openapi_schema = schema
        return self.openapi_schema


def _static(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    content = resources.files("aiwire.server").joinpath("static", name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=_DOCS_HEADERS)

    return serve


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out the already-read body, then waits on the real one."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- errors, all in OpenAI's shape ------------------------------------------------------------


def _response(exc: errors.AIWireError, extra: dict[str, str] | None = None) -> Response:
    status, body, headers = openai_wire.error_body(exc)
    return Response(
        body, status, headers={**headers, **(extra or {})}, media_type="application/json"
    )


async def _send_error(send: Send, exc: errors.AIWireError) -> None:
    status, body, headers = openai_wire.error_body(exc)
    await respond(send, status, body, headers=headers.items())


def _too_large(exc: BodyTooLarge) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"request body is larger than {exc.limit} bytes", status=413, code="request_too_large"
    )


async def _on_aiwire(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.AIWireError)
    return _response(exc)


async def _on_unknown_key(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnknownKeyError)
    return _response(errors.NotFoundError(exc.message, code="unknown_key"))


async def _on_key_state(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyStateError)
    return _response(errors.BadRequestError(exc.message, status=409, code="key_state"))


async def _on_crash(request: Request, exc: Exception) -> Response:
    """Never the exception's text in the answer (:class:`AdminAPI` logs it)."""
    status, body, headers = openai_wire.internal_error_body()
    return Response(body, status, headers=headers, media_type="application/json")


async def _on_http(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, and a body FastAPI could not decode."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    shown = path if len(path) <= 200 else path[:200] + "…"
    if exc.status_code == 404:
        return _response(
            errors.NotFoundError(
                f"no admin route {shown}; the admin API serves: {_route_list(request.app)}",
                code="unknown_route",
            )
        )
    if exc.status_code == 405:
        allowed = _allowed_methods(request.app, path)
        return _response(
            errors.NotFoundError(
                f"{request.method} is not allowed on {shown}; use {' or '.join(allowed)}",
                status=405,
                code="method_not_allowed",
            ),
            {"allow": ", ".join(allowed)},
        )
    if exc.status_code == 400:
        return _response(
            errors.BadRequestError(
                "We could not parse the JSON body of your request", code="invalid_json"
            )
        )
    return _response(errors.BadRequestError(str(exc.detail), status=exc.status_code))


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _response(_validation_error(request, exc))


def _validation_error(request: Request, exc: RequestValidationError) -> errors.BadRequestError:
    """FastAPI's first validation error as the 400 the rest of the gateway would give."""
    first = exc.errors()[0]
    kind, loc = first["type"], tuple(first["loc"])
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return errors.BadRequestError(
            f"We could not parse the JSON body of your request: {reason} (at character {loc[-1]})",
            code="invalid_json",
        )
    if len(loc) < 2:  # the body as a whole
        what = "needs a JSON body" if kind == "missing" else "body must be a JSON object"
        return errors.BadRequestError(f"This request {what}", code="invalid_json")
    field = str(loc[1])
    if kind == "extra_forbidden":
        return bad(field, f"unknown field {field!r}; allowed: {_body_fields(request)}")
    if kind == "missing":
        return bad(field, f"'{field}' is required")
    cause = first.get("ctx", {}).get("error")
    return bad(field, str(cause) if isinstance(cause, ValueError) else first["msg"])


def _body_fields(request: Request) -> str:
    """The fields the route's body model accepts, for the "unknown field" message."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for kind in (annotation, *get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return ", ".join(kind.model_fields)
    return "see /admin/docs"


def _operations(app: FastAPI) -> dict[str, list[str]]:
    """Path template -> its methods, from the spec (so routers included later count too)."""
    paths = app.openapi().get("paths", {})
    return {path: _sorted_methods(m.upper() for m in ops) for path, ops in paths.items()}


def _sorted_methods(methods: Iterable[str]) -> list[str]:
    found = set(methods) - {"HEAD"}
    return [m for m in _METHOD_ORDER if m in found] + sorted(found - set(_METHOD_ORDER))


def _route_list(app: FastAPI) -> str:
    return ", ".join(f"{'/'.join(m)} {p}" for p, m in _operations(app).items())


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: list[str] = []
    for template, allowed in _operations(app).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods += allowed
    return _sorted_methods(methods)


__all__ = [
    "ACTOR",
    "MAX_BODY_BYTES",
    "PREFIX",
    "SCOPED_ENDPOINTS",
    "AdminAPI",
    "parse_duration",
]
