"""Helpers for flow tests: a scripted model provider, a recording HTTP destination, flow files."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiwire import errors
from aiwire.config import RouterConfig
from aiwire.providers.base import FEATURES, Capabilities, Provider, Support, Timeouts
from aiwire.router import Deployment, Router
from aiwire.serving import BackgroundServer
from aiwire.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message, Usage


class Lead(BaseModel):
    """A pydantic answer schema (flows name it as ``tests.flows.flow_support:Lead``)."""

    subject: str
    body: str


Answer = str | Exception | Callable[[ChatRequest], "str | Exception"]


class ScriptedModel(Provider):
    """A provider answering from a script (text, an exception, or a function of the request);
    once the script is used up it repeats ``default``. Records every request it got."""

    type = "scripted"
    capabilities = Capabilities({k: Support.SUPPORTED for k in FEATURES})

    def __init__(self, script: list[Answer] | None = None, default: Answer = "ok") -> None:
        super().__init__(name="scripted")
        self.script = list(script or [])
        self.default = default
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        self.requests.append(request)
        answer = self.script.pop(0) if self.script else self.default
        if callable(answer) and not isinstance(answer, Exception):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return ChatResponse(
            model=request.model,
            choices=[
                Choice(message=Message(role="assistant", content=answer), finish_reason="stop")
            ],
            usage=Usage.of(100, 20),
        )

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError
        yield  # pragma: no cover

    def map_error(
        self, status: int, body: bytes, headers: httpx.Headers, model: str | None
    ) -> errors.ProviderError:
        raise NotImplementedError


def scripted_router(model: ScriptedModel, name: str = "m", upstream: str = "gpt-4o-mini") -> Router:
    """A router with one deployment ``name`` served by ``model`` (catalog prices of
    ``upstream``), no router retries (flow retries are what tests look at)."""
    from aiwire import catalog

    router = Router(
        [
            Deployment(
                name=name,
                provider=model,
                model=upstream,
                timeouts=Timeouts(first_byte=5, idle=5, total=10),
            )
        ],
        RouterConfig(retries=0, backoff_base=0.0),
    )
    router.catalog = catalog.load(None)
    return router


class Destination:
    """A stand-in HTTP API on loopback that stores what it receives, honouring
    ``Idempotency-Key`` (a repeated key stores nothing new and answers like the first time).
    ``fail`` makes the next N requests answer 503."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # every request, repeats included
        self.stored: dict[str, dict[str, Any]] = {}  # by idempotency key (or a counter)
        self.fail = 0
        self.fail_status = 503
        self.retry_after: str | None = None
        self.status = 201
        self._lock = threading.Lock()
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH"])]
        )
        self.server = BackgroundServer(app)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        entry = {
            "method": request.method,
            "path": request.url.path,
            "headers": dict(request.headers),
            "json": orjson.loads(body) if body else None,
        }
        with self._lock:
            self.received.append(entry)
            if self.fail > 0:
                self.fail -= 1
                headers = {"retry-after": self.retry_after} if self.retry_after else None
                return JSONResponse(
                    {"error": "busy"}, status_code=self.fail_status, headers=headers
                )
            key = request.headers.get("idempotency-key") or f"n{len(self.received)}"
            if key not in self.stored:
                self.stored[key] = entry
        return JSONResponse({"ok": True}, status_code=self.status)

    def __enter__(self) -> Destination:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [e["json"] for e in self.stored.values() if path is None or e["path"] == path]


def write_flow(directory: Path, text: str, name: str = "flow.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def read_jsonl(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
