"""``/admin/keys``: create, list, show, change, revoke and rotate virtual keys.

A key's secret appears in exactly one place: the 201 body of the create (or rotate) call that
made it, sent with ``cache-control: no-store``. It is never logged; the store keeps its hash.

After a change, revoke or rotate this replica's authenticator cache is dropped, so the change
applies here at once; other replicas see it within their cache TTL (see
:mod:`aiwire.server.auth`).

Scopes: a key created with ``scopes: ["admin"]`` may call the admin API. Only the master key
hands out that scope (create, grant, rotate an admin-scoped key): an admin-scoped key that leaks
can then be revoked without leaving successors behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import orjson
from fastapi import APIRouter, Body, Response
from pydantic import Field, StrictInt

from aiwire.server import admin_base as base
from aiwire.server.admin_base import AdminCaller, Context, Duration, Text, Time, Timestamp, bad
from aiwire.server.auth import ADMIN_SCOPE, SCOPES_OPTION, Principal, key_scopes
from aiwire.store.keys import KEY_OPTIONS, KeyRecord, KeyStateError, UnknownKeyError, check_options

log = logging.getLogger("aiwire.admin")

#: The endpoints a key can be scoped to (those the gateway checks with ``Principal.authorize``);
#: ``/v1/batches`` covers ``/v1/files`` too (files exist to feed batches).
Endpoint = Literal[
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/audio/transcriptions",
    "/v1/batches",
]
SCOPED_ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
KeyScope = Literal["admin"]
#: Per-minute limits are stored as 32-bit integers.
Limit = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
#: Ids the key store issues look like this; anything else is unknown without a query.
_KEY_ID = re.compile(r"key_[A-Za-z0-9_-]{1,60}")
_NO_STORE = {"cache-control": "no-store"}
_OPTIONS_HELP = f"per-key behaviour; known options: {', '.join(KEY_OPTIONS)}"

router = APIRouter(tags=["keys"])


# -- shapes -------------------------------------------------------------------------------------


class CreateKey(base.Input):
    name: Text = Field(description="What the key is for, e.g. app1.", examples=["app1"])
    models: list[Text] | None = Field(default=None, description="Models it may use (none: all).")
    endpoints: list[Endpoint] | None = Field(
        default=None, description="Endpoints it may call (none: all)."
    )
    scopes: list[KeyScope] | None = Field(
        default=None, description='["admin"]: the key may use the admin API.'
    )
    expires_in: Duration | None = Field(default=None, description="Lifetime from now.")
    expires_at: Time | None = Field(default=None, description="Or an end time (with offset).")
    team: Text | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form, yours.")
    rpm: Limit | None = Field(default=None, description="Requests per minute (null: no limit).")
    tpm: Limit | None = Field(default=None, description="Tokens per minute (null: no limit).")
    options: dict[str, Any] | None = Field(default=None, description=_OPTIONS_HELP)


class UpdateKey(base.Input):
    """Only the fields given change; ``null`` clears team, limits and expiry, and makes models
    and endpoints "all" again."""

    name: Text | None = None
    models: list[Text] | None = None
    endpoints: list[Endpoint] | None = None
    scopes: list[KeyScope] | None = None
    expires_in: Duration | None = None
    expires_at: Time | None = None
    team: Text | None = None
    rpm: Limit | None = None
    tpm: Limit | None = None
    options: dict[str, Any] | None = Field(default=None, description=_OPTIONS_HELP)


class RotateKey(base.Input):
    grace: Duration = Field(
        default=timedelta(0), description="How long the old key keeps working (default 0)."
    )


class KeyOut(base.Output):
    id: str
    name: str
    key_prefix: str = Field(description="aiw- and the next 8 characters: for recognising it.")
    models: list[str]
    endpoints: list[str]
    scopes: list[str]
    team: str | None
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    rotated_from: str | None
    grace_until: Timestamp | None
    metadata: dict[str, Any]
    last_used_at: Timestamp | None
    rpm: int | None
    tpm: int | None
    options: dict[str, Any]


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown here once, never again.")


class KeyRotated(KeyCreated):
    old_key_valid_until: Timestamp | None


class KeyList(base.Output):
    object: Literal["list"]
    data: list[KeyOut]


# -- routes -------------------------------------------------------------------------------------


@router.get("/keys", response_model=KeyList, summary="List every key (never their secrets)")
async def list_keys(ctx: Context) -> dict[str, Any]:
    records = await ctx.keys.list()
    return {"object": "list", "data": [present(r) for r in records]}


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    summary="Create a key; the answer holds its secret, once",
)
async def create_key(
    body: CreateKey, caller: AdminCaller, ctx: Context, response: Response
) -> dict[str, Any]:
    scopes = body.scopes or []
    if ADMIN_SCOPE in scopes:
        base.require_master(caller, "create admin-scoped keys")
    record, secret = await ctx.keys.create(
        body.name,
        _known_models(ctx, body.models or []),
        body.endpoints or [],
        _expiry(body.expires_in, body.expires_at),
        body.team,
        _json("metadata", body.metadata),
        actor=base.actor(caller),
        rpm=body.rpm,
        tpm=body.tpm,
        options=_with_scopes(_options(body.options), scopes),
    )
    log.info("admin: created key %s (%s) for %s", record.id, record.name, base.actor(caller))
    response.headers.update(_NO_STORE)
    return {"key": secret.reveal(), **present(record)}


@router.get("/keys/{key_id}", response_model=KeyOut, summary="Show one key")
async def get_key(key_id: str, ctx: Context) -> dict[str, Any]:
    return present(await _existing(ctx, key_id))


@router.patch("/keys/{key_id}", response_model=KeyOut, summary="Change a key (audited)")
async def update_key(
    key_id: str, body: UpdateKey, caller: AdminCaller, ctx: Context
) -> dict[str, Any]:
    record = await _existing(ctx, key_id)
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in given:
        if body.name is None:
            raise bad("name", "a key needs a non-empty string 'name'")
        changes["name"] = body.name
    if "models" in given:
        changes["models"] = _known_models(ctx, body.models or [])
    if "endpoints" in given:
        changes["endpoints"] = body.endpoints or []
    for field in ("team", "rpm", "tpm"):
        if field in given:
            changes[field] = getattr(body, field)
    if "options" in given or "scopes" in given:
        changes["options"] = _changed_options(record, body, caller)
    if "expires_in" in given or "expires_at" in given:
        changes["expires_at"] = _expiry(body.expires_in, body.expires_at)
    after = await ctx.keys.update(record.id, actor=base.actor(caller), changes=changes)
    ctx.auth.forget()
    log.info("admin: updated key %s (%s) for %s", after.id, after.name, base.actor(caller))
    return present(after)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key now")
async def revoke_key(key_id: str, caller: AdminCaller, ctx: Context) -> dict[str, Any]:
    record = await _existing(ctx, key_id)
    # The store treats a repeated revoke as a no-op; the API says so, so a script that revokes
    # the wrong id (or an already revoked one) finds out.
    if record.revoked_at is not None and record.revoked_at <= datetime.now(UTC):
        raise KeyStateError(
            f"key {record.id} ({record.name}) was already revoked at "
            f"{record.revoked_at.isoformat()}; nothing to do"
        )
    after = await ctx.keys.revoke(record.id, actor=base.actor(caller))
    ctx.auth.forget()
    log.info("admin: revoked key %s (%s) for %s", after.id, after.name, base.actor(caller))
    return present(after)


@router.post(
    "/keys/{key_id}/rotate",
    status_code=201,
    response_model=KeyRotated,
    summary="Issue a successor with the same settings; the old key works for `grace`",
)
async def rotate_key(
    key_id: str,
    caller: AdminCaller,
    ctx: Context,
    response: Response,
    body: Annotated[RotateKey | None, Body()] = None,
) -> dict[str, Any]:
    grace = body.grace if body is not None else timedelta(0)
    old = await _existing(ctx, key_id)
    if ADMIN_SCOPE in key_scopes(old.options):
        base.require_master(caller, "rotate an admin-scoped key")
    new, secret = await ctx.keys.rotate(old.id, grace, actor=base.actor(caller))
    ctx.auth.forget()
    old_after = await _existing(ctx, old.id)
    log.info("admin: rotated key %s into %s for %s", old.id, new.id, base.actor(caller))
    valid_until = old_after.grace_until or old_after.revoked_at
    response.headers.update(_NO_STORE)
    return {
        "key": secret.reveal(),
        **present(new),
        "old_key_valid_until": None if valid_until is None else valid_until.isoformat(),
    }


# -- helpers ------------------------------------------------------------------------------------


def present(record: KeyRecord) -> dict[str, Any]:
    """A key as the admin API shows it: scopes on their own, not among the options."""
    data = record.public()
    options = dict(data["options"])
    options.pop(SCOPES_OPTION, None)
    return {**data, "options": options, "scopes": list(key_scopes(record.options))}


async def _existing(ctx: base.AdminContext, key_id: str) -> KeyRecord:
    record = await ctx.keys.get(key_id) if _KEY_ID.fullmatch(key_id) else None
    if record is None:
        shown = key_id if len(key_id) <= 64 else key_id[:64] + "…"
        raise UnknownKeyError(
            f"no key with id {shown!r}; list the keys with GET /admin/keys (or: aiwire keys list)"
        )
    return record


def _known_models(ctx: base.AdminContext, models: list[str]) -> list[str]:
    """A key scoped to a model the gateway does not serve could call nothing: a typo."""
    if ctx.model_names is not None:
        known = ctx.model_names()
        for model in models:
            if model not in known:
                raise bad(
                    "models",
                    f"model {model!r} is not configured on this gateway; "
                    f"configured: {', '.join(sorted(known)) or 'none'}",
                )
    return models


def _expiry(expires_in: timedelta | None, expires_at: datetime | None) -> datetime | None:
    if expires_in is not None and expires_at is not None:
        raise bad("expires_in", "give 'expires_in' or 'expires_at', not both")
    now = datetime.now(UTC)
    if expires_in is not None:
        if not expires_in:
            raise bad("expires_in", "must be more than zero; leave it out for a key that lasts")
        return now + expires_in
    if expires_at is not None and expires_at <= now:
        raise bad("expires_at", f"{expires_at.isoformat()} is in the past")
    return expires_at


def _json(field: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` if the store can keep it as JSON (the audit trail serialises it)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise bad(
            field, "must be plain JSON: integers within 64 bits, at most 255 levels deep"
        ) from None
    return value


def _options(value: dict[str, Any] | None) -> dict[str, Any]:
    if not value:
        return {}
    if SCOPES_OPTION in value:
        raise bad("options", "scopes are a field of their own: give 'scopes', not options.scopes")
    try:
        return check_options(_json("options", value))
    except ValueError as exc:
        raise bad("options", str(exc)) from None


def _with_scopes(options: dict[str, Any], scopes: Collection[str]) -> dict[str, Any]:
    return {**options, SCOPES_OPTION: sorted(set(scopes))} if scopes else options


def _changed_options(record: KeyRecord, body: UpdateKey, caller: Principal) -> dict[str, Any]:
    """The key's options after a change to its options, its scopes or both (each replaces
    its part; the store keeps them together)."""
    before = key_scopes(record.options)
    scopes: Collection[str] = before if "scopes" not in body.model_fields_set else body.scopes or []
    if ADMIN_SCOPE in scopes and ADMIN_SCOPE not in before:
        base.require_master(caller, "grant the admin scope")
    if "options" in body.model_fields_set:
        options = _options(body.options)
    else:
        options = {k: v for k, v in record.options.items() if k != SCOPES_OPTION}
    return _with_scopes(options, scopes)


__all__ = ["SCOPED_ENDPOINTS", "KeyOut", "present", "router"]
