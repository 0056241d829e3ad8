"""OAuth access tokens for Google Cloud (Vertex AI), minted by google-auth.

google-auth is an optional dependency (``pip install 'aiwire[vertex]'``), imported only when a
Vertex adapter is built. Credentials come from a key file named in config (a service account,
or any other google-auth credential file) or from Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, the metadata server). A token is
refreshed :data:`REFRESH_MARGIN` seconds before it expires, by one caller at a time and in a
worker thread (google-auth's refresh is blocking HTTP), so requests never carry a token about
to lapse and a burst of them does not mint a token each.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import importlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from aiwire import errors

INSTALL_HINT = "pip install 'aiwire[vertex]'"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: Seconds before expiry at which a token is replaced.
REFRESH_MARGIN = 300.0
ADC_HINT = (
    "set options.credentials_file (a service-account key file) or GOOGLE_APPLICATION_CREDENTIALS, "
    "or run `gcloud auth application-default login`"
)


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and what came with it; the token itself never shows in a repr."""

    value: str = field(repr=False)
    #: Seconds since the epoch; None when the credentials do not say (never refreshed early).
    expires_at: float | None
    #: The project the credentials belong to, if they name one.
    project: str | None = None
    #: The project to bill quota to (``x-goog-user-project``), if the credentials name one.
    quota_project: str | None = None


class TokenSource(Protocol):
    """Where a Vertex adapter gets its access token; tests inject their own."""

    async def token(self) -> AccessToken: ...


@dataclass(frozen=True)
class _GoogleAuth:
    auth: ModuleType
    exceptions: ModuleType
    transport: ModuleType
    service_account: ModuleType
    user_credentials: ModuleType


@functools.cache
def google_auth() -> _GoogleAuth:
    """google-auth's modules, or a :class:`ConfigError` saying which extra to install."""
    try:
        return _GoogleAuth(
            importlib.import_module("google.auth"),
            importlib.import_module("google.auth.exceptions"),
            importlib.import_module("google.auth.transport"),
            importlib.import_module("google.oauth2.service_account"),
            importlib.import_module("google.oauth2.credentials"),
        )
    except ImportError:
        raise errors.ConfigError(
            f"provider type vertex gets OAuth tokens with google-auth, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None


class GoogleCredentials:
    """A :class:`TokenSource` over google-auth credentials."""

    def __init__(
        self,
        *,
        provider: str,
        credentials_file: str | None = None,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        ga = google_auth()
        self.provider = provider
        self.margin = margin
        self._clock = clock
        self._credentials: Any = None
        self._project: str | None = None
        if credentials_file:  # a named file is read now, so a wrong path fails at start-up
            self._credentials, self._project = _load_file(ga, credentials_file, provider)
        self._current: AccessToken | None = None
        self._lock: asyncio.Lock | None = None

    def _fresh(self, token: AccessToken | None) -> bool:
        if token is None:
            return False
        return token.expires_at is None or token.expires_at - self.margin > self._clock()

    async def token(self) -> AccessToken:
        if self._fresh(self._current):
            assert self._current is not None
            return self._current
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh(self._current):  # another caller may have refreshed meanwhile
                self._current = await asyncio.to_thread(self._refresh)
            assert self._current is not None
            return self._current

    def _refresh(self) -> AccessToken:
        ga = google_auth()
        try:
            if self._credentials is None:
                self._credentials, self._project = ga.auth.default(scopes=list(SCOPES))
            creds = self._credentials
            creds.refresh(_request_class()())
        except ga.exceptions.DefaultCredentialsError as exc:
            raise errors.AuthenticationError(
                f"provider {self.provider!r}: no Google credentials found ({exc}); {ADC_HINT}",
                provider=self.provider,
                retryable=False,
            ) from None
        except ga.exceptions.TransportError as exc:
            raise errors.ConnectionError(
                f"provider {self.provider!r}: could not reach Google's token endpoint ({exc})",
                provider=self.provider,
            ) from None
        except ga.exceptions.GoogleAuthError as exc:
            raise errors.AuthenticationError(
                f"provider {self.provider!r}: could not get a Google access token: {exc}",
                provider=self.provider,
                retryable=bool(getattr(exc, "retryable", False)),
            ) from None
        expiry = getattr(creds, "expiry", None)  # a naive UTC datetime
        return AccessToken(
            value=str(creds.token),
            expires_at=float(calendar.timegm(expiry.utctimetuple())) if expiry else None,
            project=self._project,
            quota_project=getattr(creds, "quota_project_id", None) or None,
        )


def _load_file(ga: _GoogleAuth, path: str, provider: str) -> tuple[Any, str | None]:
    """Credentials from a service-account or authorized-user file, loaded by their own class
    (google-auth's generic loader is deprecated: it would accept any credential type)."""
    where = f"providers.{provider}.options.credentials_file"
    try:
        info = json.loads(Path(path).expanduser().read_text())
    except OSError as exc:
        raise errors.ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise errors.ConfigError(f"{where}: {path} is not a JSON credentials file") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            creds = ga.service_account.Credentials.from_service_account_info(
                info, scopes=list(SCOPES)
            )
            return creds, info.get("project_id") or None
        if kind == "authorized_user":
            creds = ga.user_credentials.Credentials.from_authorized_user_info(
                info, scopes=list(SCOPES)
            )
            return creds, info.get("quota_project_id") or None
    except ValueError as exc:
        raise errors.ConfigError(f"{where}: {path} is not usable: {exc}") from None
    raise errors.ConfigError(
        f"{where}: {path} holds credentials of type {kind!r}; this option takes a service "
        "account or authorized user file. For other types (workload identity federation, "
        "impersonation) point GOOGLE_APPLICATION_CREDENTIALS at the file instead"
    )


@functools.cache
def _request_class() -> Any:
    """google-auth's HTTP interface over urllib: a token refresh is rare and runs in a worker
    thread, so it needs no HTTP library beyond the standard one."""
    transport = google_auth().transport
    transport_error = google_auth().exceptions.TransportError

    class _Response(transport.Response):  # type: ignore[misc,name-defined]
        def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self._status, self._headers, self._data = status, headers, data

        @property
        def status(self) -> int:
            return self._status

        @property
        def headers(self) -> dict[str, str]:
            return self._headers

        @property
        def data(self) -> bytes:
            return self._data

    class UrllibRequest(transport.Request):  # type: ignore[misc,name-defined]
        def __call__(
            self,
            url: str,
            method: str = "GET",
            body: bytes | None = None,
            headers: dict[str, str] | None = None,
            timeout: float | None = None,
            **kwargs: Any,
        ) -> _Response:
            request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
            try:
                with urllib.request.urlopen(request, timeout=timeout or 60) as resp:
                    return _Response(resp.status, dict(resp.headers), resp.read())
            except urllib.error.HTTPError as exc:  # an answer, if not a happy one
                return _Response(exc.code, dict(exc.headers or {}), exc.read())
            except OSError as exc:  # URLError, refused, timed out
                raise transport_error(f"{type(exc).__name__}: {exc}") from exc

    return UrllibRequest
