"""One error hierarchy for every provider and every face of aiwire.

::

    AIWireError
    ├── ConfigError                      bad configuration (never retried)
    └── ProviderError                    anything an upstream call can end in
        ├── AuthenticationError          401: key missing, wrong, expired or revoked
        ├── PermissionDeniedError        403
        ├── NotFoundError                404: unknown model or resource
        ├── BadRequestError              400/413/422: the request itself is wrong
        │   ├── ContextWindowExceededError
        │   └── ContentFilteredError
        ├── RateLimitError               429 (retryable unless it is a quota/billing refusal)
        ├── TimeoutError                 connect / first byte / idle gap / total time ran out
        ├── OverloadedError              529, 503: capacity, not your limit
        ├── ServerError                  other 5xx
        └── ConnectionError              network failure, or a stream cut before its end

Each error carries ``status``, ``provider``, ``model``, the provider's ``request_id``,
``retryable`` and ``retry_after`` (seconds, when the provider named a delay). Messages never
contain credentials: adapters build them from the provider's error text, which does not echo keys,
and :func:`scrub` removes anything that looks like a key as a second line of defence.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

_KEY_PATTERNS = re.compile(
    r"(sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{8,}|aiw-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|AKIA[0-9A-Z]{16}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove known secret values and anything shaped like an API key from ``text``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[REDACTED]")
    return _KEY_PATTERNS.sub("[REDACTED]", text)


class AIWireError(Exception):
    """Base of every aiwire error."""

    default_status: ClassVar[int | None] = None
    default_retryable: ClassVar[bool] = False
    #: The OpenAI-style ``type`` used when this error is rendered in an OpenAI error body.
    openai_type: ClassVar[str] = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
        body: Any = None,
    ) -> None:
        self.message = scrub(message)
        super().__init__(self.message)
        self.status = status if status is not None else self.default_status
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.code = code
        self.param = param
        self.body = body
        #: How many attempts the router made before giving up with this error.
        self.attempts = 1

    def __str__(self) -> str:
        where = "/".join(x for x in (self.provider, self.model) if x)
        prefix = f"[{where}] " if where else ""
        status = f" (status {self.status})" if self.status else ""
        return f"{prefix}{self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"provider={self.provider!r}, model={self.model!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r})"
        )


class ConfigError(AIWireError):
    """The configuration is invalid; the message says which field and how to fix it."""


class OutputValidationError(AIWireError):
    """A model's structured answer still failed validation after every re-ask."""

    def __init__(self, message: str, *, errors: list[str], last_output: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = errors
        self.last_output = last_output


class ProviderError(AIWireError):
    """An upstream call failed."""


class AuthenticationError(ProviderError):
    default_status = 401
    openai_type = "authentication_error"


class PermissionDeniedError(ProviderError):
    default_status = 403
    openai_type = "permission_error"


class NotFoundError(ProviderError):
    default_status = 404
    openai_type = "invalid_request_error"


class BadRequestError(ProviderError):
    default_status = 400
    openai_type = "invalid_request_error"


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus requested output) does not fit the model's context window."""


class ContentFilteredError(BadRequestError):
    """The provider refused the input or output under its content policy."""


class RateLimitError(ProviderError):
    default_status = 429
    default_retryable = True
    openai_type = "rate_limit_error"


class TimeoutError(ProviderError):
    default_status = 408
    default_retryable = True
    openai_type = "timeout_error"


class OverloadedError(ProviderError):
    default_status = 529
    default_retryable = True
    openai_type = "overloaded_error"


class ServerError(ProviderError):
    default_status = 500
    default_retryable = True


class ConnectionError(ProviderError):
    default_retryable = True
    openai_type = "connection_error"


class IncompleteStreamError(ConnectionError):
    """The stream ended without the provider's terminal event: the answer is not complete."""


def error_for_status(status: int) -> type[ProviderError]:
    """The error class for an HTTP status, before any provider-specific refinement."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 408:
        return TimeoutError
    if status == 409:  # conflicting concurrent update: both SDKs retry it
        return ServerError
    if status == 429:
        return RateLimitError
    if status in (503, 529):
        return OverloadedError
    if status == 504:
        return TimeoutError
    if status >= 500:
        return ServerError
    return BadRequestError


__all__ = [
    "AIWireError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConnectionError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "IncompleteStreamError",
    "NotFoundError",
    "OutputValidationError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "TimeoutError",
    "error_for_status",
    "scrub",
]
