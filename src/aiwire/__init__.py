"""aiwire: one request format for every AI model API, with retries, fallbacks and limits.

The SDK: :class:`Client` (blocking) and :class:`AsyncClient`; typed errors in
:mod:`aiwire.errors`; canonical request/response types in :mod:`aiwire.types`.
"""

from aiwire import errors
from aiwire.client import AsyncClient, Client
from aiwire.config import Config
from aiwire.router import Router
from aiwire.secrets import Secret
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Client",
    "Config",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Message",
    "Router",
    "Secret",
    "Usage",
    "__version__",
    "errors",
]
