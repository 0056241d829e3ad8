"""Virtual keys: what applications hold instead of provider keys.

A key is ``aiw-`` followed by 40 URL-safe random characters (240 bits). Only its SHA-256 is
stored, so a leaked database does not leak usable keys; a plain (unsalted, fast) hash is enough
because the secret is random, not a password. The secret is returned once, at creation or
rotation, wrapped in :class:`~aiwire.secrets.Secret` so it cannot slip into a log by accident.

Every admin action (create, revoke, rotate) appends an audit row in the same transaction: the
action and its trail commit together or not at all.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aiwire.errors import AIWireError
from aiwire.secrets import Secret
from aiwire.store import audit
from aiwire.store.db import Database
from aiwire.store.models import ApiKey

SECRET_PREFIX = "aiw-"
#: ``aiw-`` plus this many characters are kept for display.
DISPLAY_CHARS = 8
_SECRET_BYTES = 30  # token_urlsafe(30) is exactly 40 characters


class UnknownKeyError(AIWireError, LookupError):
    """No key has this id."""

    default_status = 404


class KeyStateError(AIWireError):
    """The key cannot undergo this action in its current state (e.g. rotating a revoked key)."""

    default_status = 409


def hash_secret(secret: str) -> str:
    """SHA-256 hex of the full secret: the only form of a key the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (e.g. datetime.now(UTC) + ...)")
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the gateway sees it: everything but the secret (and its hash)."""

    id: str
    name: str
    key_prefix: str
    models: tuple[str, ...]
    endpoints: tuple[str, ...]
    team: str | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_from: str | None = None
    grace_until: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    last_used_at: datetime | None = None
    #: Requests / tokens per minute (None: no limit of this key's own).
    rpm: int | None = None
    tpm: int | None = None
    #: Per-key behaviour: ``cache`` (bool), ``log_content`` (bool), ``retention_days`` (int),
    #: ``pii`` (``off`` / ``mask`` / ``block``) - see :data:`KEY_OPTIONS`.
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """``aiw-ab12cd34…``: enough to recognise a key, useless for using it."""
        return f"{self.key_prefix}…"

    def usable(self, now: datetime | None = None) -> bool:
        """Not expired, not revoked, and (for a rotated key) still within its grace period."""
        now = now or _utcnow()
        return not any(
            limit is not None and now >= limit
            for limit in (self.expires_at, self.revoked_at, self.grace_until)
        )

    def allows_model(self, model: str) -> bool:
        return not self.models or model in self.models

    def allows_endpoint(self, endpoint: str) -> bool:
        return not self.endpoints or endpoint in self.endpoints

    def public(self) -> dict[str, Any]:
        """JSON-ready view for the admin API and the audit trail (no secret, no hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "key_prefix": self.key_prefix,
            "models": list(self.models),
            "endpoints": list(self.endpoints),
            "team": self.team,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_from": self.rotated_from,
            "grace_until": _iso(self.grace_until),
            "metadata": dict(self.metadata),
            "last_used_at": _iso(self.last_used_at),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "options": dict(self.options),
        }

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyRecord:
        return cls(
            id=row.id,
            name=row.name,
            key_prefix=row.key_prefix,
            models=tuple(row.models),
            endpoints=tuple(row.endpoints),
            team=row.team,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            rotated_from=row.rotated_from,
            grace_until=row.grace_until,
            metadata=dict(row.meta),
            last_used_at=row.last_used_at,
            rpm=row.rpm,
            tpm=row.tpm,
            options=dict(row.options or {}),
        )


#: The per-key options the gateway understands, with their types.
KEY_OPTIONS: dict[str, type] = {
    "cache": bool,
    "log_content": bool,
    "retention_days": int,
    "pii": str,
    #: What else the key may do beyond model calls (``admin``); checked by the admin API.
    "scopes": list,
}


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` validated against :data:`KEY_OPTIONS` (ValueError naming the bad one)."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        kind = KEY_OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"unknown key option {name!r}; known: {', '.join(KEY_OPTIONS)}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"key option {name!r} must be {kind.__name__}, not {value!r}")
        if name == "pii" and value not in ("off", "mask", "block"):
            raise ValueError("key option 'pii' must be off, mask or block")
        out[name] = value
    return out


def _limit(value: int | None, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a whole number of at least 1 (or unset)")
    return value


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def _new_row(
    *,
    name: str,
    models: Iterable[str],
    endpoints: Iterable[str],
    expires_at: datetime | None,
    team: str | None,
    metadata: Mapping[str, Any] | None,
    rotated_from: str | None,
    now: datetime,
    rpm: int | None = None,
    tpm: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[ApiKey, str]:
    if not name.strip():
        raise ValueError("a key needs a non-empty name")
    secret = _new_secret()
    row = ApiKey(
        id="key_" + secrets.token_hex(12),
        name=name,
        key_hash=hash_secret(secret),
        key_prefix=secret[: len(SECRET_PREFIX) + DISPLAY_CHARS],
        models=[str(m) for m in models],
        endpoints=[str(e) for e in endpoints],
        team=team,
        created_at=now,
        expires_at=_aware(expires_at, "expires_at"),
        revoked_at=None,
        rotated_from=rotated_from,
        grace_until=None,
        # Round-trip now, so a non-JSON value fails here with a clear error, not in the driver.
        meta=orjson.loads(orjson.dumps(dict(metadata or {}))),
        last_used_at=None,
        rpm=_limit(rpm, "rpm"),
        tpm=_limit(tpm, "tpm"),
        options=check_options(options),
    )
    return row, secret


class KeyStore:
    """Create, find, list, revoke and rotate virtual keys."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = database
        self._clock = clock

    @property
    def database(self) -> Database:
        return self._db

    async def create(
        self,
        name: str,
        models: Iterable[str] = (),
        endpoints: Iterable[str] = (),
        expires_at: datetime | None = None,
        team: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        actor: str,
        rpm: int | None = None,
        tpm: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[KeyRecord, Secret]:
        """A new key; the secret is returned here and never again (the store cannot recover it).

        ``models`` / ``endpoints`` empty means all. ``actor`` names who did it, for the audit.
        """
        now = self._clock()
        row, secret = _new_row(
            name=name,
            models=models,
            endpoints=endpoints,
            expires_at=expires_at,
            team=team,
            metadata=metadata,
            rotated_from=None,
            now=now,
            rpm=rpm,
            tpm=tpm,
            options=options,
        )
        async with self._db.session() as session:
            session.add(row)
            await session.flush()
            record = KeyRecord.from_row(row)
            await audit.append(session, actor, "key.create", record.id, None, record.public())
        return record, Secret(secret, f"virtual key {record.id}")

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            return None if row is None else KeyRecord.from_row(row)

    async def find_by_secret(self, secret: str | Secret) -> KeyRecord | None:
        """The key whose secret this is, usable or not (check :meth:`KeyRecord.usable`)."""
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if not value.startswith(SECRET_PREFIX):
            return None
        digest = hash_secret(value)
        async with self._db.session() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            # The lookup is by hash already; the constant-time compare keeps it that way should
            # the lookup ever become a prefix or range match.
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                return None
            return KeyRecord.from_row(row)

    async def list(
        self, *, include_unusable: bool = True, team: str | None = None
    ) -> builtins.list[KeyRecord]:
        """All keys, oldest first; ``include_unusable=False`` leaves out expired/revoked ones."""
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if team is not None:
            query = query.where(ApiKey.team == team)
        async with self._db.session() as session:
            records = [KeyRecord.from_row(r) for r in await session.scalars(query)]
        if include_unusable:
            return records
        now = self._clock()
        return [r for r in records if r.usable(now)]

    async def revoke(self, key_id: str, *, actor: str) -> KeyRecord:
        """Revoke now. Revoking a key that is already revoked changes (and audits) nothing."""
        now = self._clock()
        async with self._db.session() as session:
            before = await self._load(session, key_id)
            if before.revoked_at is not None and before.revoked_at <= now:
                return before
            # Conditional update: a concurrent revoke or rotate cannot be overwritten.
            changed = await self._update_if_unrevoked(session, key_id, before, revoked_at=now)
            if not changed:
                return await self._load(session, key_id)
            after = await self._load(session, key_id)
            await audit.append(
                session, actor, "key.revoke", key_id, before.public(), after.public()
            )
            return after

    async def rotate(
        self, key_id: str, grace: timedelta, *, actor: str
    ) -> tuple[KeyRecord, Secret]:
        """Issue a successor with the same name, scopes, team, expiry and metadata.

        The old key keeps working for ``grace`` (so deployed applications can switch over), then
        stops: its ``grace_until`` and ``revoked_at`` are both ``now + grace``.
        """
        if grace < timedelta(0):
            raise ValueError("grace must not be negative")
        now = self._clock()
        async with self._db.session() as session:
            old = await self._load(session, key_id)
            if old.revoked_at is not None:
                raise KeyStateError(
                    f"key {key_id} is revoked or already rotated; rotate its newest successor"
                )
            if not old.usable(now):
                raise KeyStateError(f"key {key_id} has expired; create a new key instead")
            end = now + grace
            if not await self._update_if_unrevoked(
                session, key_id, old, revoked_at=end, grace_until=end
            ):
                raise KeyStateError(f"key {key_id} was revoked or rotated concurrently")
            row, secret = _new_row(
                name=old.name,
                models=old.models,
                endpoints=old.endpoints,
                expires_at=old.expires_at,
                team=old.team,
                metadata=old.metadata,
                rotated_from=old.id,
                now=now,
                rpm=old.rpm,
                tpm=old.tpm,
                options=old.options,
            )
            session.add(row)
            await session.flush()
            new = KeyRecord.from_row(row)
            old_after = await self._load(session, key_id)
            await audit.append(
                session,
                actor,
                "key.rotate",
                key_id,
                old.public(),
                {"old": old_after.public(), "new": new.public()},
            )
        return new, Secret(secret, f"virtual key {new.id}")

    async def update(
        self,
        key_id: str,
        *,
        actor: str,
        changes: Mapping[str, Any],
    ) -> KeyRecord:
        """Change a key's name, team, scopes, limits, options or expiry (audited, before and
        after). ``changes`` holds only what changes: ``name``, ``team``, ``models``,
        ``endpoints``, ``rpm``, ``tpm`` (None removes the limit), ``options`` (replaces them),
        ``expires_at``."""
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("rpm", "tpm"):
                values[name] = _limit(value, name)
            elif name == "options":
                values[name] = check_options(value)
            elif name in ("models", "endpoints"):
                values[name] = [str(v) for v in value]
            elif name == "expires_at":
                values[name] = _aware(value, "expires_at")
            elif name == "name":
                if not str(value).strip():
                    raise ValueError("a key needs a non-empty name")
                values[name] = str(value)
            elif name == "team":
                values[name] = None if value is None else str(value)
            else:
                raise ValueError(f"cannot change {name!r} of a key")
        async with self._db.session() as session:
            before = await self._load(session, key_id)
            if not values:
                return before
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            after = await self._load(session, key_id)
            await audit.append(
                session, actor, "key.update", key_id, before.public(), after.public()
            )
            return after

    async def touch(self, key_id: str, when: datetime | None = None) -> None:
        """Record that the key was used (not audited: it is not an admin action)."""
        async with self._db.session() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when or self._clock())
            )

    # -- helpers --

    @staticmethod
    async def _load(session: AsyncSession, key_id: str) -> KeyRecord:
        row = await session.get(ApiKey, key_id, populate_existing=True)
        if row is None:
            raise UnknownKeyError(f"no key with id {key_id!r}")
        return KeyRecord.from_row(row)

    @staticmethod
    async def _update_if_unrevoked(
        session: AsyncSession, key_id: str, seen: KeyRecord, **values: datetime
    ) -> bool:
        """Update only if the key is still as unrevoked as when we read it (``seen``)."""
        query = update(ApiKey).where(ApiKey.id == key_id)
        if seen.revoked_at is None:
            query = query.where(ApiKey.revoked_at.is_(None))
        else:
            query = query.where(ApiKey.revoked_at == seen.revoked_at)
        result = await session.execute(
            query.values(**values).execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount == 1
