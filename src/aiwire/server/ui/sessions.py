"""Console sessions: the web console signs in once and then calls the admin API with a cookie.

Design, in short:

- **Sign-in** (``POST /ui/session`` with ``Authorization: Bearer <master or admin-scoped key>``,
  checked by the gateway's auth guard like any key) creates a random 256-bit session id. The
  browser gets it in an ``HttpOnly; SameSite=Strict; Path=/`` cookie (``Secure`` and the
  ``__Host-`` name when the request came over HTTPS); the store keeps only its SHA-256, so the
  table signs nobody in. Replicas and workers sharing the store share the sessions.
- **Where a cookie counts**: only on :data:`COOKIE_PATHS` (admin API, review queue, batches,
  files, metrics, the console's own session route), and only when no key is presented. The
  model-call routes never look at it: a cookie cannot make a model call.
- **CSRF**: a request that changes state (not GET/HEAD/OPTIONS) authenticated by the cookie
  must carry ``x-csrf-token``, an HMAC of the session id (compared in constant time), and come
  from the gateway's own origin: ``Sec-Fetch-Site: same-origin`` and/or an ``Origin`` whose host
  is the request's host; a request with neither header is refused. Bearer requests are
  unaffected (a browser never attaches those on its own).
- **Expiry**: idle (``session_idle``, renewed at most once a minute) and absolute
  (``session_max``). Sign-out deletes the row. A session is re-checked against the store, and
  its key against the key store (revoked, expired, admin scope removed), every ``ttl`` seconds
  (the authenticator's cache bound), so a revocation reaches every replica within it. A master
  key session is bound to the master key by an HMAC: a new master key ends them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update

from aiwire import errors
from aiwire.secrets import Secret
from aiwire.server.asgi import Scope, header
from aiwire.server.auth import Principal
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore
from aiwire.store.models import ConsoleSession

#: The cookie over plain HTTP, and over HTTPS (``__Host-``: Secure, Path=/, no Domain).
COOKIE = "aiwire_session"
SECURE_COOKIE = "__Host-aiwire_session"
CSRF_HEADER = b"x-csrf-token"
#: Paths on which a console session stands in for a key (prefixes; ``/`` ends a segment).
COOKIE_PATHS = ("/admin", "/v1/batches", "/v1/files", "/metrics", "/ui")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``seen_at`` is written at most this often per session (idle expiry is coarse by design).
TOUCH_SECONDS = 60.0
_CSRF_CONTEXT = b"aiwire console csrf v1"
_BINDING_CONTEXT = b"aiwire console master binding v1"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    idle: float = 3600.0
    absolute: float = 43200.0
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class NewSession:
    """What sign-in hands the browser: the cookie's value and the CSRF token."""

    session_id: str
    csrf_token: str
    expires_at: datetime
    principal: Principal


@dataclass(slots=True)
class _Cached:
    until: float  # monotonic: when to ask the store again
    row: ConsoleSession
    principal: Principal


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: derived from the id (nothing more to store), useless without
    it, and the id never reaches script (HttpOnly)."""
    mac = hmac.new(session_id.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def cookie_value(scope: Scope) -> str | None:
    """The session id the request's cookies carry (the ``__Host-`` one first)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key in (COOKIE, SECURE_COOKIE) and key not in found and val:
                found[key] = val.strip('"')
    return found.get(SECURE_COOKIE) or found.get(COOKIE)


def takes_cookie(path: str) -> bool:
    """Whether a console session may authenticate a request to ``path``."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in COOKIE_PATHS)


class ConsoleSessions:
    """Console sessions over the store; :meth:`principal` is the gateway's hook."""

    def __init__(
        self,
        database: Database,
        keys: KeyStore,
        *,
        master_key: Secret | None,
        settings: SessionSettings | None = None,
        ttl: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        self.keys = keys
        self.settings = settings or SessionSettings()
        self.ttl = ttl
        self._master = hashlib.sha256(master_key.reveal().encode()).digest() if master_key else None
        self._proxies = _networks(self.settings.trusted_proxies)
        self._max = max_entries
        self._clock = clock
        self._now = now
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    # -- the gateway's hook ---------------------------------------------------------------

    async def principal(self, scope: Scope) -> Principal | None:
        """The console user behind the request's session cookie; None when the request has no
        cookie or goes to a path where cookies do not count. Raises 401 for a session that is
        unknown, expired or signed out (or whose key no longer may), 403 for a state change
        without the CSRF token or from another origin."""
        if not takes_cookie(scope["path"]):
            return None
        session_id = cookie_value(scope)
        if session_id is None:
            return None
        if scope["method"] not in SAFE_METHODS:
            self.check_csrf(scope, session_id)
        return await self._resolve(_digest(session_id))

    def check_csrf(self, scope: Scope, session_id: str) -> None:
        self.check_origin(scope)
        presented = header(scope, CSRF_HEADER) or ""
        if not hmac.compare_digest(presented.encode(), csrf_token(session_id).encode()):
            raise errors.PermissionDeniedError(
                "this request changes state and is authenticated by a console session: it "
                "needs the session's x-csrf-token header (the console sends it)",
                code="csrf_failed",
            )

    # -- sign-in and sign-out -------------------------------------------------------------

    async def sign_in(self, principal: Principal) -> NewSession:
        """A new session for an admin caller (the master key or an admin-scoped key)."""
        if not principal.is_admin:
            raise errors.PermissionDeniedError(
                f"key {principal.name!r} lacks the admin scope the console needs: sign in with "
                'the master key or a key created with scopes ["admin"]',
                code="master_key_required",
            )
        session_id = secrets.token_urlsafe(32)
        digest = _digest(session_id)
        now = self._now()
        expires = now + timedelta(seconds=self.settings.absolute)
        async with self.database.session() as s:
            await s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            s.add(
                ConsoleSession(
                    id=digest,
                    key_id=None if principal.is_master else principal.key_id,
                    binding=self._binding(digest) if principal.is_master else None,
                    created_at=now,
                    seen_at=now,
                    expires_at=expires,
                )
            )
        return NewSession(session_id, csrf_token(session_id), expires, principal)

    async def sign_out(self, session_id: str) -> bool:
        """End the session everywhere (its row is deleted); False if it had already ended."""
        digest = _digest(session_id)
        self._cache.pop(digest, None)
        async with self.database.session() as s:
            result = await s.execute(delete(ConsoleSession).where(ConsoleSession.id == digest))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def check_origin(self, scope: Scope) -> None:
        """403 unless the request says it comes from a page of this gateway: ``Sec-Fetch-Site``
        (sent by every current browser) must be ``same-origin`` and ``Origin`` must name this
        host (or, from a trusted proxy, its ``x-forwarded-host``); one of them must be there."""
        site = header(scope, b"sec-fetch-site")
        origin = header(scope, b"origin")
        if site is None and origin is None:
            raise _cross_site("it carries neither Origin nor Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            raise _cross_site(f"Sec-Fetch-Site is {site[:32]!r}")
        if origin is None:
            return
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        hosts = {(header(scope, b"host") or "").lower()}
        if self._from_proxy(scope):
            hosts.add((header(scope, b"x-forwarded-host") or "").split(",")[0].strip().lower())
        if not netloc or netloc not in hosts:
            raise _cross_site("its Origin is not this gateway")

    def is_https(self, scope: Scope) -> bool:
        """Whether the browser reached us over HTTPS: the scheme, or ``x-forwarded-proto``
        from a trusted proxy."""
        if scope.get("scheme") == "https":
            return True
        if not self._from_proxy(scope):
            return False
        forwarded = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
        return forwarded == "https"

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self._proxies:
            return False
        try:
            address = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
        except ValueError:
            return False
        return any(address in net for net in self._proxies)

    # -- resolution -----------------------------------------------------------------------

    async def _resolve(self, digest: str) -> Principal:
        mono = self._clock()
        hit = self._cache.get(digest)
        if hit is None or hit.until <= mono:
            hit = await self._load(digest, mono)
        now = self._now()
        row = hit.row
        idle_end = row.seen_at + timedelta(seconds=self.settings.idle)
        if now >= row.expires_at or now >= idle_end:
            self._cache.pop(digest, None)
            raise _ended("expired")
        if (now - row.seen_at).total_seconds() >= min(TOUCH_SECONDS, self.settings.idle / 10):
            row.seen_at = now
            async with self.database.session() as s:
                await s.execute(
                    update(ConsoleSession).where(ConsoleSession.id == digest).values(seen_at=now)
                )
        return hit.principal

    async def _load(self, digest: str, mono: float) -> _Cached:
        async with self.database.session() as s:
            row = await s.scalar(select(ConsoleSession).where(ConsoleSession.id == digest))
        if row is None:
            self._cache.pop(digest, None)
            raise _ended("unknown or signed out")
        principal = await self._principal_of(row)
        entry = _Cached(mono + self.ttl, row, principal)
        if self.ttl > 0:
            self._cache[digest] = entry
            self._cache.move_to_end(digest)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return entry

    async def _principal_of(self, row: ConsoleSession) -> Principal:
        if row.key_id is None:
            expected = self._binding(row.id) if self._master is not None else None
            if expected is None or not hmac.compare_digest(expected, row.binding or ""):
                raise _ended("signed in with a master key this gateway no longer has")
            return Principal(key_id=None, name="master", is_master=True)
        record = await self.keys.get(row.key_id)
        if record is None or not record.usable():
            raise _ended("its key was revoked or expired")
        principal = Principal(key_id=record.id, name=record.name, record=record)
        if not principal.is_admin:
            raise _ended("its key lost the admin scope")
        return principal

    def _binding(self, digest: str) -> str:
        assert self._master is not None
        return hmac.new(self._master, _BINDING_CONTEXT + digest.encode(), "sha256").hexdigest()


def _cross_site(why: str) -> errors.PermissionDeniedError:
    return errors.PermissionDeniedError(
        f"refused a console request from another site ({why}); use the console at /ui",
        code="csrf_failed",
    )


def _ended(why: str) -> errors.AuthenticationError:
    return errors.AuthenticationError(
        f"the console session is no longer valid ({why}); sign in again at /ui",
        code="invalid_session",
    )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


__all__ = [
    "COOKIE",
    "COOKIE_PATHS",
    "CSRF_HEADER",
    "SECURE_COOKIE",
    "ConsoleSessions",
    "NewSession",
    "SessionSettings",
    "cookie_value",
    "csrf_token",
    "takes_cookie",
]
