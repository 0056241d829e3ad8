"""What every admin router shares: who is calling, the gateway's stores, input types and errors.

An admin router is an ordinary FastAPI ``APIRouter`` with paths relative to ``/admin``; serving
it is one line, ``gateway.admin.include(router)``. Every route it has then requires the master key
or an admin-scoped key (the app-wide dependency :func:`admin_caller`), answers errors in OpenAI's
shape and appears in ``/admin/openapi.json``. A handler that needs to know who called (for the
audit trail: :func:`actor`) takes ``caller: AdminCaller``; one that needs the stores takes
``ctx: Context``. Raise :func:`bad` (a 400 naming the field) or any :mod:`aiwire.errors` error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainValidator,
    StrictStr,
    WithJsonSchema,
)

from aiwire import errors
from aiwire.server.auth import Authenticator, Principal
from aiwire.server.durations import parse_duration, parse_time
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.keys import KeyStore

#: Where the admin API's routes live; a router's paths are relative to it.
ROOT = "/admin"
#: Who admin actions by the master key are recorded as in the audit trail.
MASTER_ACTOR = "master"
#: The ASGI scope entry holding the caller, set by :class:`~aiwire.server.admin.AdminAPI`.
PRINCIPAL_SCOPE_KEY = "aiwire.admin.principal"

#: Control characters have no place in names, and PostgreSQL refuses NUL in text.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Names, teams and ids: long enough for anything meaningful, short enough to show.
MAX_TEXT = 200


def check_text(value: str) -> str:
    """``value`` stripped, if it is a usable name (ValueError saying why not)."""
    value = value.strip()
    if not value:
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise ValueError(f"must be at most {MAX_TEXT} characters")
    if CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


#: A name, team or model: a non-empty string without control characters (surrounding
#: whitespace removed).
Text = Annotated[StrictStr, AfterValidator(check_text)]
#: A duration as :func:`parse_duration` reads it.
Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "examples": ["30d", "12h", "90m"]}, {"type": "number"}],
            "description": "A duration: a number with a unit (s, m, h, d, w) or plain seconds.",
        }
    ),
]
#: A point in time with an explicit offset, normalised to UTC.
Time = Annotated[
    datetime,
    PlainValidator(parse_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
#: A timestamp in a response: ISO 8601 with an offset, as the stores render them.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Input(BaseModel):
    """A request body: unknown fields are refused, since a misspelt one ("model", "expires")
    silently ignored would make a key broader or longer-lived than intended."""

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    """A response body: exactly the fields documented (an undocumented one fails loudly)."""

    model_config = ConfigDict(extra="forbid")


# -- errors -------------------------------------------------------------------------------------


class ErrorDetail(Output):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Output):
    """OpenAI's error shape, as every other gateway endpoint answers."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: The error answers any admin route may give, for the OpenAPI spec.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid request: `error.param` names the offending field"),
    401: _error("No key, or an invalid one"),
    403: _error("The key may not use the admin API (or this action)"),
    404: _error("No such route or resource"),
    405: _error("Method not allowed on this route"),
    413: _error("Request body too large"),
    429: _error("Too many failed authentication attempts from this address"),
    500: _error("Internal error (the message never carries details)"),
}


def bad(field: str, message: str) -> errors.BadRequestError:
    """A 400 naming ``field`` in ``param`` and in the message."""
    return errors.BadRequestError(
        f"Invalid value for '{field}': {message}", param=field, code="invalid_value"
    )


# -- who is calling, and with what --------------------------------------------------------------


@dataclass
class AdminContext:
    """The gateway's parts the admin routes work on."""

    keys: KeyStore
    auth: Authenticator
    #: The models clients can ask for (None: any name is accepted).
    model_names: Callable[[], Collection[str]] | None = None
    budgets: BudgetStore | None = None
    on_budget_change: Callable[[], None] | None = None
    #: A budget's spend in its current window.
    spent: Callable[[BudgetRecord], Awaitable[float]] | None = None


def context(request: Request) -> AdminContext:
    return cast(AdminContext, request.app.state.admin)


Context = Annotated[AdminContext, Depends(context)]

#: Declares the bearer scheme in the OpenAPI spec; the check itself is :func:`admin_caller`.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminKey",
    description="The gateway's master key (AIWIRE_MASTER_KEY) or a virtual key created with "
    'scopes ["admin"].',
)


def admin_caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    """The authenticated caller, if it may use the admin API (every admin route depends on
    this). :class:`~aiwire.server.admin.AdminAPI` authenticates before routing, so unknown
    routes are not revealed either; this checks again, so a route can never run without it."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise errors.AuthenticationError(
            "no API key: the admin API needs the master key or an admin-scoped key",
            code="missing_api_key",
        )
    require_admin(principal)
    return principal


AdminCaller = Annotated[Principal, Depends(admin_caller)]


def require_admin(principal: Principal) -> None:
    """403 unless ``principal`` is the master key or an admin-scoped key."""
    if not principal.is_admin:
        raise errors.PermissionDeniedError(
            f"key {principal.name!r} is a virtual key, good for model calls only; the admin "
            "API needs the master key (AIWIRE_MASTER_KEY) or a key created with "
            'scopes ["admin"]: send it as `Authorization: Bearer <key>`',
            code="master_key_required",
        )


def require_master(principal: Principal, action: str) -> None:
    """403 unless the master key is calling: only it mints admin credentials, so a leaked
    admin-scoped key cannot leave successors behind once revoked."""
    if not principal.is_master:
        raise errors.PermissionDeniedError(
            f"only the master key may {action}; key {principal.name!r} is admin-scoped, "
            "which does not include handing out admin rights",
            code="master_key_required",
        )


def actor(principal: Principal) -> str:
    """Who an admin action is recorded as: ``master``, or the admin-scoped key's id."""
    return MASTER_ACTOR if principal.is_master or principal.key_id is None else principal.key_id


__all__ = [
    "CONTROL",
    "ERROR_RESPONSES",
    "MASTER_ACTOR",
    "ROOT",
    "AdminCaller",
    "AdminContext",
    "Context",
    "Duration",
    "ErrorBody",
    "Input",
    "Output",
    "Text",
    "Time",
    "Timestamp",
    "actor",
    "admin_caller",
    "bad",
    "check_text",
    "parse_duration",
    "parse_time",
    "require_admin",
    "require_master",
]
