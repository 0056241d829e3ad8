"""What the adapter tests share: a recording fake upstream, fixtures, and stream folding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from aiwire.providers.base import Timeouts
from aiwire.types import ChatChunk, ChatResponse, StreamAccumulator

FIXTURES = Path(__file__).parent.parent / "fixtures"
T = Timeouts(first_byte=5, idle=5, total=10)


def read_fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


class Upstream:
    """An ``httpx.MockTransport`` handler: records requests, answers POSTs from a fixture, and
    serves GETs from ``files`` (url → (status, content type, bytes))."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"{}",
        headers: dict[str, str] | None = None,
        sse: bool = False,
        files: dict[str, tuple[int, str, bytes]] | None = None,
    ) -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.body, self.headers, self.sse = status, body, headers or {}, sse
        self.files = files or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            status, ctype, content = self.files.get(str(request.url), (404, "text/plain", b"no"))
            return httpx.Response(status, content=content, headers={"content-type": ctype})
        ctype = "text/event-stream" if self.sse else "application/json"
        return httpx.Response(
            self.status, content=self.body, headers={"content-type": ctype, **self.headers}
        )

    @property
    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def json(self) -> Any:
        return orjson.loads(self.posts[-1].content)


def fold(chunks: list[ChatChunk]) -> ChatResponse:
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    return acc.response()


async def drain(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [c async for c in stream]
