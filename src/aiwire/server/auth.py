"""Who is calling: the master key or a virtual key, checked without a database hit per request.

A virtual key is looked up by the SHA-256 of its secret (so the dictionary lookup leaks nothing
about the secret through timing) and cached for ``ttl`` seconds, misses included, so a revoked
key stops working within ``ttl`` (default 2 s; the documented bound is 5 s). From half the ``ttl``
on, the key is re-read in the background while requests go on (:mod:`aiwire.fresh`). The master
key is compared in constant time.

Scopes widen what a virtual key may do beyond model calls. The only one so far is ``admin``: the
key may call the admin API (as the web console does). They are kept in the key's ``options``
(``options["scopes"]``), so a rotation carries them to the successor and the audit trail records
them with every other change to a key, without a schema change.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiwire import errors
from aiwire.fresh import Fresh
from aiwire.secrets import Secret
from aiwire.store.keys import KeyRecord

KEY_PREFIX = "aiw-"
#: The scope that lets a virtual key call the admin API.
ADMIN_SCOPE = "admin"
#: Every scope a key can hold.
SCOPES = (ADMIN_SCOPE,)
#: The key option scopes are kept under (a list in :data:`KEY_OPTIONS`).
SCOPES_OPTION = "scopes"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    key_id: str | None  # None for the master key
    name: str
    is_master: bool = False
    record: KeyRecord | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The key's scopes (:data:`SCOPES`); the master key needs none."""
        if self.record is None:
            return ()
        return key_scopes(self.record.options)

    @property
    def is_admin(self) -> bool:
        """Whether this caller may use the admin API: the master key or an admin-scoped key."""
        return self.is_master or ADMIN_SCOPE in self.scopes

    def authorize(self, model: str, endpoint: str) -> None:
        """Raise 403 unless this caller may use ``model`` on ``endpoint``."""
        self.authorize_endpoint(endpoint)
        if self.record is not None and not self.record.allows_model(model):
            raise errors.PermissionDeniedError(
                f"key {self.name!r} may not use model {model!r}; allowed: "
                f"{', '.join(self.record.models)}. Ask an admin to widen its scope.",
                model=model,
                param="model",
                code="model_not_allowed",
            )

    def authorize_endpoint(self, endpoint: str) -> None:
        """Raise 403 unless this caller may call ``endpoint``."""
        if self.record is not None and not self.record.allows_endpoint(endpoint):
            raise errors.PermissionDeniedError(
                f"key {self.name!r} may not call {endpoint}; allowed: "
                f"{', '.join(self.record.endpoints)}. Ask an admin to widen its scope.",
                code="endpoint_not_allowed",
            )


def key_scopes(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The scopes kept in a key's ``options`` (unknown values are ignored, never honoured)."""
    value = options.get(SCOPES_OPTION)
    if not isinstance(value, list):
        return ()
    return tuple(s for s in SCOPES if s in value)


_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})


def presented_secret(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The secret a request presents (see :func:`bearer`), from its raw ASGI headers in one
    pass (the first of a repeated header counts)."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in _CREDENTIAL_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    if not found:
        return None
    return bearer(found.get(b"authorization"), found.get(b"x-api-key"), found.get(b"api-key"))


def bearer(authorization: str | None, x_api_key: str | None, api_key: str | None) -> str | None:
    """The presented secret: ``Authorization: Bearer`` (OpenAI), ``x-api-key`` (Anthropic) or
    ``api-key`` (Azure)."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key or api_key or None


#: Authenticates the request an ASGI scope describes (``Gateway.principal``: via the auth guard).
ScopeAuth = Callable[[MutableMapping[str, Any]], Awaitable["Principal"]]


def scope_auth(auth: Authenticator) -> ScopeAuth:
    """A :data:`ScopeAuth` that asks ``auth`` directly (no auth guard): for apps served alone."""

    async def authenticate(scope: MutableMapping[str, Any]) -> Principal:
        return await auth.authenticate(presented_secret(scope["headers"]))

    return authenticate


class Authenticator:
    def __init__(
        self,
        *,
        master_key: Secret | None,
        lookup: Callable[[str], Awaitable[KeyRecord | None]] | None,
        ttl: float = 2.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._master = hashlib.sha256(master_key.reveal().encode()).digest() if master_key else None
        self._lookup = lookup
        self.ttl = ttl
        # Keyed by the secret's digest: no secret is kept in memory beyond the request.
        self._cache: Fresh[bytes, KeyRecord | None] = Fresh(
            ttl, what="an API key", max_entries=max_entries, clock=clock
        )

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise errors.AuthenticationError(
                "no API key: send your aiwire key as `Authorization: Bearer aiw-...` "
                "(or `x-api-key` for Anthropic clients)",
                code="missing_api_key",
            )
        digest = hashlib.sha256(secret.encode()).digest()
        if self._master is not None and hmac.compare_digest(digest, self._master):
            return Principal(key_id=None, name="master", is_master=True)
        if not secret.startswith(KEY_PREFIX) or self._lookup is None:
            raise errors.AuthenticationError(
                "invalid API key: aiwire keys start with `aiw-`; provider keys are not accepted "
                "here (they stay on the server). Ask an admin for a key: aiwire keys create",
                code="invalid_api_key",
            )
        record = await self._cached(digest, secret)
        if record is None:
            raise errors.AuthenticationError(
                "invalid API key: unknown key; check it was copied whole (it is shown once, "
                "at creation)",
                code="invalid_api_key",
            )
        if not record.usable():
            raise errors.AuthenticationError(
                f"API key {record.display} ({record.name}) is revoked or expired; "
                "ask an admin for a new one",
                code="key_revoked_or_expired",
            )
        return Principal(key_id=record.id, name=record.name, record=record)

    async def _cached(self, digest: bytes, secret: str) -> KeyRecord | None:
        """The key's record (None: unknown), read from the store at most every ``ttl`` seconds
        and re-read in the background from half of it: a revocation on another replica is
        seen within ``ttl``, and requests do not wait for the store while it is re-read."""
        lookup = self._lookup
        assert lookup is not None
        return await self._cache.get(digest, lambda: lookup(secret))

    def forget(self) -> None:
        """Drop every cached key (after an admin change on this replica)."""
        self._cache.forget()
