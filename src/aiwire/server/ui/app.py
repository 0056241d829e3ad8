"""``/ui``: the web console's page, its static files and its session route.

The console is static files shipped in this package (hand-written ES modules, CSS and inline SVG
charts: no CDN, no build step); everything it shows comes from the admin API, the review queue
and the batch API, the same routes ``curl`` would use. Every answer here carries a strict
Content-Security-Policy (scripts, styles and fetches from this origin only, no inline script,
no framing), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and ``nosniff``.

``/ui/session``:

- ``POST`` with ``Authorization: Bearer <master key or admin-scoped key>`` signs in (the key is
  checked by the gateway's auth guard like anywhere else): 201, a session cookie and the
  session's CSRF token in the body;
- ``GET`` (cookie): who is signed in, and the CSRF token again (a reloaded page needs it; no
  other site can read it: the gateway never allows credentialed CORS);
- ``DELETE`` (cookie + CSRF token): signs out; the session ends server-side, everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import orjson

from aiwire import errors
from aiwire.server import openai_wire
from aiwire.server.asgi import Receive, Scope, Send, header, respond
from aiwire.server.auth import Principal, presented_secret
from aiwire.server.ui.sessions import (
    COOKIE,
    SECURE_COOKIE,
    ConsoleSessions,
    cookie_value,
    csrf_token,
)

PREFIX = "/ui"
SESSION_PATH = f"{PREFIX}/session"
STATIC_PREFIX = f"{PREFIX}/static/"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
_NO_STORE = ("cache-control", "no-store")

Authenticate = Callable[[Scope], Awaitable[Principal]]


class _Asset:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def load_assets() -> dict[str, _Asset]:
    """The console's files, read once from the package: name (``app.js``, ``pages/keys.js``)
    -> contents. Only these names are ever served (no path from a URL reaches the disk)."""
    found: dict[str, _Asset] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1]
            if suffix in _TYPES:
                found[name] = _Asset(child.read_bytes(), _TYPES[suffix])

    walk(resources.files("aiwire.server.ui").joinpath("static"), "")
    return found


class ConsoleApp:
    """The ASGI app the gateway mounts at ``/ui``."""

    def __init__(self, sessions: ConsoleSessions, authenticate: Authenticate) -> None:
        """``authenticate``: the gateway's (keys through its auth guard)."""
        self.sessions = sessions
        self.authenticate = authenticate
        self.assets = load_assets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == SESSION_PATH:
                await self._session(scope, method, send)
            elif method not in ("GET", "HEAD"):
                raise errors.NotFoundError(
                    f"{method} is not allowed on {path}", status=405, code="method_not_allowed"
                )
            elif path == PREFIX:
                await _send(send, 308, b"", extra=[("location", PREFIX + "/")])
            elif path == PREFIX + "/":
                await self._asset(scope, send, "index.html")
            elif path.startswith(STATIC_PREFIX):
                await self._asset(scope, send, path[len(STATIC_PREFIX) :])
            else:
                raise errors.NotFoundError(f"no console page {path[:200]}", code="unknown_route")
        except errors.AIWireError as exc:
            status, body, headers = openai_wire.error_body(exc)
            await _send(send, status, body, extra=[*headers.items(), _NO_STORE])

    async def _asset(self, scope: Scope, send: Send, name: str) -> None:
        asset = self.assets.get(name)
        if asset is None:
            raise errors.NotFoundError(f"no console file {name[:200]!r}", code="unknown_route")
        extra = [("etag", asset.etag), ("cache-control", "no-cache")]
        if header(scope, b"if-none-match") == asset.etag:
            await _send(send, 304, b"", extra=extra)
            return
        body = b"" if scope["method"] == "HEAD" else asset.body
        await _send(send, 200, body, content_type=asset.content_type, extra=extra)

    # -- /ui/session ------------------------------------------------------------------------

    async def _session(self, scope: Scope, method: str, send: Send) -> None:
        if method == "POST":
            await self._sign_in(scope, send)
        elif method == "GET":
            principal = await self.sessions.principal(scope)
            session_id = cookie_value(scope)
            if principal is None or session_id is None:
                raise errors.AuthenticationError(
                    "not signed in: POST /ui/session with the master key or an admin-scoped "
                    "key as `Authorization: Bearer <key>`",
                    code="no_session",
                )
            await _json(send, 200, _describe(principal, csrf_token(session_id)))
        elif method == "DELETE":
            session_id = cookie_value(scope)
            if session_id is None:
                raise errors.AuthenticationError("not signed in", code="no_session")
            self.sessions.check_csrf(scope, session_id)  # a forged sign-out changes nothing
            ended = await self.sessions.sign_out(session_id)
            await _json(send, 200, {"signed_out": ended}, cookies=_clear_cookies())
        else:
            raise errors.NotFoundError(
                f"{method} is not allowed on {SESSION_PATH}; use POST, GET or DELETE",
                status=405,
                code="method_not_allowed",
            )

    async def _sign_in(self, scope: Scope, send: Send) -> None:
        # A sign-in form posted by another site (login CSRF) is refused like any forgery.
        self.sessions.check_origin(scope)
        if presented_secret(scope["headers"]) is None:
            raise errors.AuthenticationError(
                "sign in with the master key or an admin-scoped key, sent as "
                "`Authorization: Bearer <key>`",
                code="missing_api_key",
            )
        principal = await self.authenticate(scope)
        new = await self.sessions.sign_in(principal)
        https = self.sessions.is_https(scope)
        name = SECURE_COOKIE if https else COOKIE
        cookie = (
            f"{name}={new.session_id}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={int(self.sessions.settings.absolute)}"
        )
        if https:
            cookie += "; Secure"
        body = _describe(principal, new.csrf_token)
        body["expires_at"] = new.expires_at.isoformat()
        await _json(send, 201, body, cookies=[cookie])


def _describe(principal: Principal, token: str) -> dict[str, Any]:
    return {
        "name": principal.name,
        "key_id": principal.key_id,
        "is_master": principal.is_master,
        "csrf_token": token,
    }


def _clear_cookies() -> list[str]:
    return [
        f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        f"{SECURE_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
    ]


async def _json(send: Send, status: int, data: Any, *, cookies: list[str] | None = None) -> None:
    extra = [_NO_STORE, *(("set-cookie", c) for c in cookies or ())]
    await _send(send, status, orjson.dumps(data), extra=extra)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    extra: list[tuple[str, str]] | None = None,
) -> None:
    await respond(
        send, status, body, content_type=content_type, headers=[*SECURITY_HEADERS, *(extra or ())]
    )


__all__ = ["CSP", "PREFIX", "SECURITY_HEADERS", "ConsoleApp", "load_assets"]
