"""AWS credentials from the standard chain, and SigV4 request signing, for the Bedrock adapter.

botocore does the work: its credential chain (environment variables, the shared credentials and
config files with their profiles, SSO, container and instance roles) and its SigV4 signer. It is
an optional dependency (``pip install 'aiwire[bedrock]'``), imported only when an adapter that
signs requests is built, so the other adapters never need it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from aiwire import errors

INSTALL_HINT = "pip install 'aiwire[bedrock]'"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
#: The headers signing adds to a request.
_ADDED = ("x-amz-date", "x-amz-security-token", "authorization")


@dataclass(frozen=True)
class _Botocore:
    auth: ModuleType
    awsrequest: ModuleType
    credentials: ModuleType
    exceptions: ModuleType
    session: ModuleType


@functools.cache
def botocore() -> _Botocore:
    """botocore's modules, or a :class:`ConfigError` saying which extra to install."""
    try:
        return _Botocore(
            *(
                importlib.import_module(f"botocore.{name}")
                for name in ("auth", "awsrequest", "credentials", "exceptions", "session")
            )
        )
    except ImportError:
        raise errors.ConfigError(
            f"provider type bedrock signs requests with botocore, which is not installed: "
            f"{INSTALL_HINT} (or give api_key: env:AWS_BEARER_TOKEN_BEDROCK to use a Bedrock "
            "API key instead)"
        ) from None


@dataclass(frozen=True)
class AwsCredentials:
    """One snapshot of credentials; the secret parts never show in a repr."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_key, self.token) if s)


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    *,
    when: datetime | None = None,
) -> dict[str, str]:
    """The SigV4 headers for one request: ``x-amz-date``, ``x-amz-security-token`` (temporary
    credentials only) and ``authorization``. Every header in ``headers`` is signed, so the
    request must send exactly those (plus these) for the signature to hold. ``url`` is the URL
    as sent, path already percent-encoded: SigV4 encodes it once more for the canonical form."""
    bc = botocore()
    request = bc.awsrequest.AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    creds = bc.credentials.Credentials(
        credentials.access_key, credentials.secret_key, credentials.token
    )
    signer = _signer_class()(creds, service, region)
    signer.sign_at(request, (when or datetime.now(UTC)).strftime(SIGV4_TIMESTAMP))
    return {k.lower(): str(v) for k, v in request.headers.items() if k.lower() in _ADDED}


@functools.cache
def _signer_class() -> Any:
    base = botocore().auth.SigV4Auth

    class QuietSigV4(base):  # type: ignore[misc,valid-type]
        """botocore's SigV4, signed at a given time and without its debug log lines: those
        print the canonical request, which carries the session token."""

        def sign_at(self, request: Any, timestamp: str) -> None:
            request.context["timestamp"] = timestamp
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical), request)
            self._inject_signature_to_request(request, signature)

    return QuietSigV4


NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile "
    "(AWS_PROFILE or options.profile) from ~/.aws/credentials or ~/.aws/config, or run where an "
    "instance or container role is available"
)


class CredentialChain:
    """botocore's default credential chain for one profile.

    Resolved on first use, in a worker thread (it reads files and may ask the instance metadata
    service), then kept; temporary credentials are refreshed, again off the event loop, when
    botocore says they are close to expiry.
    """

    def __init__(self, *, profile: str | None, provider: str) -> None:
        botocore()  # fail at configuration time, naming the extra, when botocore is missing
        self.profile = profile
        self.provider = provider
        self._loaded: tuple[Any, str | None] | None = None

    async def credentials(self) -> AwsCredentials:
        creds = (await self._load())[0]
        refresh_needed = getattr(creds, "refresh_needed", None)
        try:
            if refresh_needed is not None and refresh_needed():
                frozen = await asyncio.to_thread(creds.get_frozen_credentials)
            else:
                frozen = creds.get_frozen_credentials()
        except self._errors() as exc:
            raise self._failed(exc) from None
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    async def config_region(self) -> str | None:
        """The region the profile's config names (``region =`` or AWS_DEFAULT_REGION)."""
        return (await self._load())[1]

    async def _load(self) -> tuple[Any, str | None]:
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(self._load_blocking)
        return self._loaded

    def _load_blocking(self) -> tuple[Any, str | None]:
        bc = botocore()
        try:
            session = bc.session.Session(profile=self.profile)
            creds = session.get_credentials()
            region = session.get_config_variable("region")
        except self._errors() as exc:
            raise self._failed(exc) from None
        if creds is None:
            raise errors.AuthenticationError(
                f"provider {self.provider!r}: {NO_CREDENTIALS}",
                provider=self.provider,
                retryable=False,
            )
        return creds, str(region) if region else None

    def _errors(self) -> tuple[type[Exception], ...]:
        exc = botocore().exceptions
        return (exc.BotoCoreError, exc.ClientError)

    def _failed(self, exc: Exception) -> errors.AuthenticationError:
        return errors.AuthenticationError(
            f"provider {self.provider!r}: could not get AWS credentials: {exc}",
            provider=self.provider,
            retryable=False,
        )
