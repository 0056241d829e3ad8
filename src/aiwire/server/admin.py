"""The admin API under ``/admin/``: virtual keys (create, list, show, change, revoke, rotate)
and budgets.

Only the master key may call it: a virtual key is a credential for model calls, and letting one
mint or revoke others would turn any leaked application key into a way to keep access. Errors use
OpenAI's error shape, like the rest of the gateway, so the SDKs and ``aiwire keys`` read them the
same way; a 400 always names the offending field in ``param`` and in the message.

A key's secret appears in exactly one place: the 201 body of the create (or rotate) call that
made it, sent with ``cache-control: no-store``. It is never logged; the store keeps its hash.

After a revoke or rotate this replica's authenticator cache is dropped, so the change applies
here at once; other replicas see it within their cache TTL (see :mod:`aiwire.server.auth`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson

from aiwire import errors
from aiwire.server import openai_wire
from aiwire.server.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    respond,
)
from aiwire.server.auth import Authenticator, Principal, presented_secret
from aiwire.store import usage
from aiwire.store.budgets import BudgetRecord, BudgetStore, UnknownBudgetError
from aiwire.store.keys import KeyRecord, KeyStateError, KeyStore, UnknownKeyError, check_options

log = logging.getLogger("aiwire.admin")

PREFIX = "/admin/"
#: Who admin actions are recorded as in the audit trail: only the master key gets this far.
ACTOR = "master"
#: The endpoints a key can be scoped to (those the gateway checks with ``Principal.authorize``).
SCOPED_ENDPOINTS = ("/v1/chat/completions", "/v1/messages", "/v1/embeddings")
#: Admin bodies are a few hundred bytes; anything near this is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024

_CREATE_FIELDS = (
    "name",
    "models",
    "endpoints",
    "expires_in",
    "expires_at",
    "team",
    "metadata",
    "rpm",
    "tpm",
    "options",
)
_UPDATE_FIELDS = (
    "name",
    "models",
    "endpoints",
    "expires_in",
    "expires_at",
    "team",
    "rpm",
    "tpm",
    "options",
)
_BUDGET_FIELDS = ("scope", "scope_id", "period", "limit_usd", "soft_usd")
_ROTATE_FIELDS = ("grace",)
_USAGE_PARAMS = ("by", "since", "until", "format", *usage.FILTERS)
#: The report's range when ``since`` is not given.
_USAGE_SINCE = "7d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
#: Far enough for any real key lifetime; keeps ``now + duration`` from overflowing datetime.
_MAX_DURATION = timedelta(days=365 * 100)

_NO_STORE = [("cache-control", "no-store")]
_DURATION_HELP = "use a number with a unit: s, m, h, d or w (e.g. 90m, 12h, 30d), or plain seconds"

Handler = Callable[[Scope, Receive, Send, str | None], Awaitable[None]]


def parse_duration(value: str | float) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or plain seconds (``3600``, ``"3600"``).

    Shared by the admin API and the CLI so both accept exactly the same spellings. Raises
    ValueError saying what is accepted.
    """
    if isinstance(value, bool):  # bool is an int; ``true`` is certainly not a duration
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if seconds != seconds:  # NaN
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; durations count forward from now")
    if seconds > _MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than 100 years; leave the expiry out instead")
    return timedelta(seconds=seconds)


class AdminAPI:
    """Raw-ASGI handler for every path under :data:`PREFIX`."""

    def __init__(
        self,
        keys: KeyStore,
        auth: Authenticator,
        *,
        model_names: Callable[[], Collection[str]] | None = None,
        budgets: BudgetStore | None = None,
        on_budget_change: Callable[[], None] | None = None,
        spent: Callable[[BudgetRecord], Awaitable[float]] | None = None,
    ) -> None:
        """``model_names``, when given, lists the models clients can ask for: a key scoped to any
        other name is refused, since a typo there would make a key that can call nothing.
        ``budgets`` enables /admin/budgets; ``spent`` reports a budget's current spend."""
        self.keys = keys
        self.auth = auth
        self.model_names = model_names
        self.budgets = budgets
        self.on_budget_change = on_budget_change
        self.spent = spent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._require_master(scope)
            handler, key_id = self._route(scope["method"], scope["path"])
            await handler(scope, receive, send, key_id)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await _fail(
                send,
                errors.BadRequestError(
                    f"request body is larger than {exc.limit} bytes",
                    status=413,
                    code="request_too_large",
                ),
            )
        except UnknownKeyError as exc:
            await _fail(send, errors.NotFoundError(exc.message, code="unknown_key"))
        except KeyStateError as exc:
            await _fail(send, errors.BadRequestError(exc.message, status=409, code="key_state"))
        except errors.AIWireError as exc:
            await _fail(send, exc)
        except Exception:
            # Never the exception text in the answer; the log gets the type and traceback only
            # (no request body: it may hold metadata the caller did not mean to have logged).
            log.exception("admin %s %s failed", scope["method"], scope["path"])
            status, body, headers = openai_wire.internal_error_body()
            await respond(send, status, body, headers=headers.items())

    # -- routing ------------------------------------------------------------------------------

    async def _require_master(self, scope: Scope) -> Principal:
        """The caller, if it holds the master key; 401 or 403 (saying what to send) if not."""
        secret = presented_secret(scope["headers"])
        try:
            principal = await self.auth.authenticate(secret)
        except errors.AuthenticationError as exc:
            # The authenticator's wording is for model calls ("ask an admin for a key"); here
            # the caller *is* the admin, and what they need is the master key.
            what = "no API key" if exc.code == "missing_api_key" else "invalid master key"
            raise errors.AuthenticationError(
                f"{what}: the admin API accepts only the gateway's master key (the value of "
                "AIWIRE_MASTER_KEY where the gateway runs), sent as "
                "`Authorization: Bearer <master key>`",
                code=exc.code,
            ) from None
        if not principal.is_master:
            raise errors.PermissionDeniedError(
                f"key {principal.name!r} is a virtual key, good for model calls only; the admin "
                "API needs the master key (AIWIRE_MASTER_KEY): send it as "
                "`Authorization: Bearer <master key>`",
                code="master_key_required",
            )
        return principal

    def _route(self, method: str, path: str) -> tuple[Handler, str | None]:
        parts = path[len(PREFIX) :].strip("/").split("/") if path.startswith(PREFIX) else []
        routes: dict[str, Handler]
        key_id: str | None = None
        if parts == ["keys"]:
            routes = {"GET": self._list, "POST": self._create}
        elif len(parts) == 2 and parts[0] == "keys" and parts[1]:
            routes, key_id = {"GET": self._get, "PATCH": self._update}, parts[1]
        elif len(parts) == 3 and parts[0] == "keys" and parts[1] and parts[2] == "revoke":
            routes, key_id = {"POST": self._revoke}, parts[1]
        elif len(parts) == 3 and parts[0] == "keys" and parts[1] and parts[2] == "rotate":
            routes, key_id = {"POST": self._rotate}, parts[1]
        elif parts == ["budgets"] and self.budgets is not None:
            routes = {"GET": self._budget_list, "POST": self._budget_set}
        elif len(parts) == 2 and parts[0] == "budgets" and parts[1] and self.budgets is not None:
            routes, key_id = {"DELETE": self._budget_delete}, parts[1]
        elif parts == ["usage"]:
            routes = {"GET": self._usage}
        else:
            raise errors.NotFoundError(
                f"no admin route {path}; the admin API serves: GET/POST /admin/keys, "
                "GET/PATCH /admin/keys/{id}, POST /admin/keys/{id}/revoke, "
                "POST /admin/keys/{id}/rotate, GET/POST /admin/budgets, "
                "DELETE /admin/budgets/{id}, GET /admin/usage",
                code="unknown_route",
            )
        handler = routes.get(method)
        if handler is None:
            raise errors.NotFoundError(
                f"{method} is not allowed on {path}; use {' or '.join(routes)}",
                status=405,
                code="method_not_allowed",
            )
        return handler, key_id

    # -- handlers -----------------------------------------------------------------------------

    async def _create(self, scope: Scope, receive: Receive, send: Send, _: str | None) -> None:
        data = await _body(scope, receive, _CREATE_FIELDS)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("name", "a key needs a non-empty string 'name', e.g. \"app1\"")
        models = self._models(data)
        endpoints = _endpoints(data)
        team = data.get("team")
        if team is not None and not isinstance(team, str):
            raise _bad("team", "'team' must be a string")
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _bad("metadata", "'metadata' must be a JSON object")
        record, secret = await self.keys.create(
            name.strip(),
            models,
            endpoints,
            _expiry(data),
            team,
            metadata,
            actor=ACTOR,
            rpm=_limit(data, "rpm"),
            tpm=_limit(data, "tpm"),
            options=_options(data),
        )
        log.info("admin: created key %s (%s) for %s", record.id, record.name, ACTOR)
        body = {"key": secret.reveal(), **record.public()}
        await respond(send, 201, orjson.dumps(body), headers=_NO_STORE)

    def _models(self, data: dict[str, Any]) -> list[str]:
        models = _names(data, "models", 'model names from the config, e.g. ["gpt-4o-mini"]')
        if self.model_names is not None:
            known = self.model_names()
            for model in models:
                if model not in known:
                    raise _bad(
                        "models",
                        f"model {model!r} is not configured on this gateway; "
                        f"configured: {', '.join(sorted(known)) or 'none'}",
                    )
        return models

    async def _update(self, scope: Scope, receive: Receive, send: Send, key_id: str | None) -> None:
        data = await _body(scope, receive, _UPDATE_FIELDS)
        record = await self._existing(key_id)
        changes: dict[str, Any] = {}
        if "name" in data:
            name = data["name"]
            if not isinstance(name, str) or not name.strip():
                raise _bad("name", "a key needs a non-empty string 'name'")
            changes["name"] = name.strip()
        if "models" in data:
            changes["models"] = self._models(data)
        if "endpoints" in data:
            changes["endpoints"] = _endpoints(data)
        if "team" in data:
            team = data["team"]
            if team is not None and not isinstance(team, str):
                raise _bad("team", "'team' must be a string or null")
            changes["team"] = team
        for field in ("rpm", "tpm"):
            if field in data:
                changes[field] = _limit(data, field)
        if "options" in data:
            changes["options"] = _options(data)
        if "expires_in" in data or "expires_at" in data:
            changes["expires_at"] = _expiry(data)
        after = await self.keys.update(record.id, actor=ACTOR, changes=changes)
        self.auth.forget()
        log.info("admin: updated key %s (%s) for %s", after.id, after.name, ACTOR)
        await respond(send, 200, orjson.dumps(after.public()))

    # -- budgets --

    async def _budget_list(self, scope: Scope, receive: Receive, send: Send, _: str | None) -> None:
        assert self.budgets is not None
        data = []
        for b in await self.budgets.list():
            item = b.public()
            item["spent_usd"] = None if self.spent is None else await self.spent(b)
            data.append(item)
        await respond(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _budget_set(self, scope: Scope, receive: Receive, send: Send, _: str | None) -> None:
        assert self.budgets is not None
        data = await _body(scope, receive, _BUDGET_FIELDS)
        scope_name = data.get("scope", "global")
        scope_id = data.get("scope_id") or ""
        if not isinstance(scope_id, str):
            raise _bad("scope_id", "'scope_id' must be a key id or team name")
        if scope_name == "key" and await self.keys.get(scope_id) is None:
            raise _bad("scope_id", f"no key with id {scope_id!r} (aiwire keys list)")
        limit = data.get("limit_usd")
        soft = data.get("soft_usd")
        for field, value in (("limit_usd", limit), ("soft_usd", soft)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise _bad(field, f"'{field}' must be a number of dollars")
        if limit is None:
            raise _bad("limit_usd", "a budget needs 'limit_usd', e.g. 100")
        try:
            record = await self.budgets.set(
                scope_name, scope_id, data.get("period", "month"), limit, soft, actor=ACTOR
            )
        except ValueError as exc:
            field = next((f for f in _BUDGET_FIELDS if f in str(exc)), "scope")
            raise _bad(field, str(exc)) from None
        if self.on_budget_change is not None:
            self.on_budget_change()
        log.info("admin: set budget %s (%s) for %s", record.id, record.label, ACTOR)
        await respond(send, 200, orjson.dumps(record.public()))

    async def _budget_delete(
        self, scope: Scope, receive: Receive, send: Send, budget_id: str | None
    ) -> None:
        assert self.budgets is not None and budget_id is not None
        try:
            record = await self.budgets.delete(budget_id, actor=ACTOR)
        except UnknownBudgetError as exc:
            raise errors.NotFoundError(exc.message, code="unknown_budget") from None
        if self.on_budget_change is not None:
            self.on_budget_change()
        await respond(send, 200, orjson.dumps({"deleted": True, **record.public()}))

    async def _list(self, scope: Scope, receive: Receive, send: Send, _: str | None) -> None:
        records = await self.keys.list()
        body = {"object": "list", "data": [r.public() for r in records]}
        await respond(send, 200, orjson.dumps(body))

    async def _get(self, scope: Scope, receive: Receive, send: Send, key_id: str | None) -> None:
        record = await self._existing(key_id)
        await respond(send, 200, orjson.dumps(record.public()))

    async def _revoke(self, scope: Scope, receive: Receive, send: Send, key_id: str | None) -> None:
        record = await self._existing(key_id)
        # The store treats a repeated revoke as a no-op; the API says so, so a script that
        # revokes the wrong id (or an already revoked one) finds out.
        if record.revoked_at is not None and record.revoked_at <= datetime.now(UTC):
            raise KeyStateError(
                f"key {record.id} ({record.name}) was already revoked at "
                f"{record.revoked_at.isoformat()}; nothing to do"
            )
        after = await self.keys.revoke(record.id, actor=ACTOR)
        self.auth.forget()
        log.info("admin: revoked key %s (%s) for %s", after.id, after.name, ACTOR)
        await respond(send, 200, orjson.dumps(after.public()))

    async def _rotate(self, scope: Scope, receive: Receive, send: Send, key_id: str | None) -> None:
        data = await _body(scope, receive, _ROTATE_FIELDS, empty_ok=True)
        grace = _duration(data.get("grace", 0), "grace")
        old = await self._existing(key_id)
        new, secret = await self.keys.rotate(old.id, grace, actor=ACTOR)
        self.auth.forget()
        old_after = await self._existing(old.id)
        log.info("admin: rotated key %s into %s for %s", old.id, new.id, ACTOR)
        valid_until = old_after.grace_until or old_after.revoked_at
        body = {
            "key": secret.reveal(),
            **new.public(),
            "old_key_valid_until": None if valid_until is None else valid_until.isoformat(),
        }
        await respond(send, 201, orjson.dumps(body), headers=_NO_STORE)

    # -- usage --

    async def _usage(self, scope: Scope, receive: Receive, send: Send, _: str | None) -> None:
        """``GET /admin/usage?by=key,day&since=7d&until=...&key=...&format=json|csv``: the
        request log's requests, errors, tokens, cost and latency per group (one GROUP BY query,
        plus one for the totals; see :mod:`aiwire.store.usage`)."""
        params = _query_params(scope, _USAGE_PARAMS, repeatable=("by",))
        now = datetime.now(UTC)
        since = _usage_time(params.get("since", _USAGE_SINCE), "since", now)
        until = _usage_time(params["until"], "until", now) if "until" in params else now
        fmt = params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise _bad("format", f"format must be json or csv, not {fmt!r}")
        filters = {name: params[name] for name in usage.FILTERS if name in params}
        # The key store's database is the gateway's one store; reports only read it.
        database = self.keys.database
        try:
            by = usage.check_by(v.strip() for v in params.get("by", "key").split(",") if v.strip())
            if not by:
                raise usage.UsageQueryError("by", "name at least one grouping")
            rows = await usage.usage_report(database, by, since, until, filters)
            (total,) = await usage.usage_report(database, [], since, until, filters)
        except usage.UsageQueryError as exc:
            example = "; e.g. by=key or by=team,day" if exc.param == "by" else ""
            raise _bad(exc.param, f"{exc}{example}") from None
        records = [row.public() for row in rows]
        if fmt == "csv":
            text = usage.to_csv(records, usage.columns(by))
            await respond(send, 200, text.encode(), content_type=b"text/csv; charset=utf-8")
            return
        body = {
            "object": "list",
            "by": by,
            "since": since.astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(),
            "filters": filters,
            "data": records,
            "totals": total.public(),
        }
        await respond(send, 200, orjson.dumps(body))

    async def _existing(self, key_id: str | None) -> KeyRecord:
        record = None if key_id is None else await self.keys.get(key_id)
        if record is None:
            raise UnknownKeyError(
                f"no key with id {key_id!r}; list the keys with GET /admin/keys "
                "(or: aiwire keys list)"
            )
        return record


# -- request parsing --------------------------------------------------------------------------


async def _body(
    scope: Scope, receive: Receive, allowed: tuple[str, ...], *, empty_ok: bool = False
) -> dict[str, Any]:
    raw = await read_body(scope, receive, MAX_BODY_BYTES)
    if empty_ok and not raw.strip():
        return {}
    data = openai_wire.load_object(raw)
    for field in data:
        if field not in allowed:
            # A misspelt field ("model", "expires") silently ignored would make a key broader or
            # longer-lived than intended: refuse it.
            raise _bad(field, f"unknown field {field!r}; allowed: {', '.join(allowed)}")
    return data


def _bad(field: str, message: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"Invalid value for '{field}': {message}", param=field, code="invalid_value"
    )


def _names(data: dict[str, Any], field: str, example: str) -> list[str]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad(field, f"'{field}' must be a list of non-empty strings ({example})")
    return [v.strip() for v in value]


def _endpoints(data: dict[str, Any]) -> list[str]:
    endpoints = _names(data, "endpoints", f"some of {', '.join(SCOPED_ENDPOINTS)}")
    for endpoint in endpoints:
        if endpoint not in SCOPED_ENDPOINTS:
            raise _bad(
                "endpoints",
                f"unknown endpoint {endpoint!r}; a key can be scoped to "
                f"{', '.join(SCOPED_ENDPOINTS)}",
            )
    return endpoints


def _limit(data: dict[str, Any], field: str) -> int | None:
    value = data.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _bad(field, f"'{field}' must be a whole number of at least 1, or null for no limit")
    return value


def _options(data: dict[str, Any]) -> dict[str, Any]:
    value = data.get("options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("options", "'options' must be a JSON object")
    try:
        return check_options(value)
    except ValueError as exc:
        raise _bad("options", str(exc)) from None


def _duration(value: Any, field: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _bad(field, str(exc)) from None


def _expiry(data: dict[str, Any]) -> datetime | None:
    expires_in, expires_at = data.get("expires_in"), data.get("expires_at")
    if expires_in is not None and expires_at is not None:
        raise _bad("expires_in", "give 'expires_in' or 'expires_at', not both")
    if expires_in is not None:
        duration = _duration(expires_in, "expires_in")
        if not duration:
            raise _bad("expires_in", "must be more than zero; leave it out for a key that lasts")
        return datetime.now(UTC) + duration
    if expires_at is None:
        return None
    try:
        when = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None
    except ValueError:
        when = None
    if when is None or when.utcoffset() is None:
        raise _bad(
            "expires_at",
            f"{expires_at!r} is not an ISO 8601 time with a time zone, e.g. 2030-01-31T12:00:00Z",
        )
    if when <= datetime.now(UTC):
        raise _bad("expires_at", f"{expires_at} is in the past")
    return when


def _query_params(
    scope: Scope, allowed: tuple[str, ...], *, repeatable: tuple[str, ...] = ()
) -> dict[str, str]:
    """The query string as a dict; an unknown or repeated parameter is a 400 naming it (a
    misspelt filter silently ignored would report more than was asked for). A ``repeatable``
    parameter given several times is joined with commas."""
    params: dict[str, str] = {}
    raw = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name not in allowed:
            raise _bad(name, f"unknown parameter {name!r}; allowed: {', '.join(allowed)}")
        if name in params:
            if name not in repeatable:
                raise _bad(name, f"{name!r} is given more than once")
            value = f"{params[name]},{value}"
        params[name] = value
    return params


def _usage_time(value: str, field: str, now: datetime) -> datetime:
    """A report bound: a duration back from now (``7d``, ``12h``; as :func:`parse_duration`)
    or an ISO 8601 date or time; a date is its midnight, and a time without an offset is UTC,
    like the report's days."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.strip())
        # A time without an offset is UTC; normalising here also catches the unrepresentable.
        return (when if when.utcoffset() is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        hint = " (in a URL, write + as %2B)" if " " in value.strip() else ""
        raise _bad(
            field,
            f"{value!r} is neither a duration back from now (e.g. 7d, 12h, 90m) nor an ISO "
            f"date or time (e.g. 2030-01-31 or 2030-01-31T12:00:00Z){hint}",
        ) from None


async def _fail(send: Send, exc: errors.AIWireError) -> None:
    status, body, headers = openai_wire.error_body(exc)
    await respond(send, status, body, headers=headers.items())


__all__ = ["ACTOR", "PREFIX", "SCOPED_ENDPOINTS", "AdminAPI", "parse_duration"]
