"""CORS, for browser applications calling the gateway directly: off unless configured.

With ``server.cors_origins`` empty (the default) the gateway sends no CORS headers, so browsers
keep every other site's pages from reading its answers. Listed origins may call the model
endpoints and the admin API: preflights are answered, and answers carry
``access-control-allow-origin`` plus the headers clients need to read (request id, rate limits,
retry-after). Credentials travel as ``Authorization`` headers, never cookies, so no
``allow-credentials``. Starlette's middleware does the work; it wraps the gateway's HTTP
handling only when installed, so the default costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.middleware.cors import CORSMiddleware

from aiwire.cache import HEADER as CACHE_HEADER

if TYPE_CHECKING:
    from aiwire.server.app import Gateway

#: Response headers a browser client may read.
EXPOSED_HEADERS = (
    "x-request-id",
    "request-id",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    CACHE_HEADER,
)
METHODS = ("GET", "POST", "PATCH", "DELETE")


def install_cors(gateway: Gateway, origins: Sequence[str]) -> None:
    """Allow ``origins`` (``server.cors_origins``) to call ``gateway``; nothing if empty."""
    if not origins:
        return
    gateway.cors = CORSMiddleware(
        gateway.serve_http,
        allow_origins=list(origins),
        allow_methods=METHODS,
        # The SDKs send their own headers (x-stainless-*, anthropic-version, ...): any may come.
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )


__all__ = ["EXPOSED_HEADERS", "install_cors"]
