"""What the wire tests share: a recording handler for the SDKs' mock transport, and canonical
chunk streams produced by the real provider adapters from their upstream fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import httpx2

from aiwire.providers.anthropic import AnthropicProvider
from aiwire.providers.base import Provider, Timeouts
from aiwire.providers.gemini import GeminiProvider
from aiwire.providers.openai import OpenAIProvider
from aiwire.secrets import Secret
from aiwire.types import ChatChunk, ChatRequest

FIXTURES = Path(__file__).parent.parent / "fixtures"
_T = Timeouts(first_byte=5, idle=5, total=10)
_ADAPTERS: dict[str, tuple[type[Provider], str]] = {
    "openai": (OpenAIProvider, "https://api.openai.test/v1"),
    "anthropic": (AnthropicProvider, "https://api.anthropic.test"),
    "gemini": (GeminiProvider, "https://gemini.test"),
}


class Recorder:
    """An httpx2 mock-transport handler answering every request with fixed bytes, recording
    what it was sent. ``bodies`` may hold several answers, used in turn (the last repeats)."""

    def __init__(
        self,
        body: bytes | list[tuple[int, bytes, dict[str, str]]],
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        answers = body if isinstance(body, list) else [(status, body, headers or {})]
        self.answers = answers
        self.content_type = content_type
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        status, body, headers = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return httpx2.Response(
            status, content=body, headers={"content-type": self.content_type, **headers}
        )


def sse_recorder(body: bytes) -> Recorder:
    return Recorder(body, content_type="text/event-stream")


def adapter_chunks(adapter: str, fixture: str, **request: Any) -> list[ChatChunk]:
    """The canonical chunks aiwire's ``adapter`` makes of an upstream SSE fixture."""
    cls, base_url = _ADAPTERS[adapter]
    body = (FIXTURES / adapter / fixture).read_bytes()

    def upstream(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    provider = cls(
        name=adapter,
        api_key=Secret("test-key-0123456789"),
        base_url=base_url,
        http=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
    )
    request.setdefault("model", "upstream-model")
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    canonical = ChatRequest(**request)

    async def collect() -> list[ChatChunk]:
        return [c async for c in provider.stream(canonical, _T)]

    return asyncio.run(collect())
