"""OpenAI's Files and Batch endpoints on the gateway, for every configured model::

    POST /v1/files                     multipart: file, purpose=batch
    GET  /v1/files                     ?purpose=batch&limit=20
    GET  /v1/files/{file_id}
    GET  /v1/files/{file_id}/content
    POST /v1/batches                   {input_file_id, endpoint, completion_window, metadata, mode}
    GET  /v1/batches                   ?after=batch_...&limit=20
    GET  /v1/batches/{batch_id}
    POST /v1/batches/{batch_id}/cancel

Shapes and status codes are OpenAI's, so the openai SDK's ``files.create`` /
``batches.create`` / ``batches.retrieve`` / ``files.content`` work unchanged, whatever provider
serves the batch's model. The work itself is done by a :class:`~aiwire.batch.runner.BatchWorker`
running in this process (unless ``AIWIRE_BATCH_WORKER=0``: then by ``aiwire worker`` processes
sharing the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson

from aiwire import errors
from aiwire.batch import multipart
from aiwire.batch.budget import BudgetGuard
from aiwire.batch.execute import LineExecutor
from aiwire.batch.native import NativeBatches
from aiwire.batch.runner import BatchWorker
from aiwire.batch.service import BatchService, BatchSettings
from aiwire.batch.store import BatchStore
from aiwire.server import openai_wire
from aiwire.server.app import Gateway
from aiwire.server.asgi import BodyTooLarge, ClientGone, Receive, Scope, Send, header, read_body
from aiwire.server.asgi import respond as _respond
from aiwire.server.auth import Principal, ScopeAuth
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore

log = logging.getLogger("aiwire.server.batches")

FILES = "/v1/files"
BATCHES = "/v1/batches"
#: JSON bodies of batch calls are small; files have their own limit (BatchSettings).
MAX_JSON_BYTES = 64 * 1024
_CREATE_FIELDS = ("input_file_id", "endpoint", "completion_window", "metadata", "mode")


class BatchAPI:
    """The ASGI app mounted under ``/v1/files`` and ``/v1/batches``."""

    def __init__(self, service: BatchService, authenticate: ScopeAuth) -> None:
        self.service = service
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            caller = await self.authenticate(scope)
            caller.authorize_endpoint(BATCHES)
            await self._route(caller, scope, receive, send)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await _fail(
                send,
                errors.BadRequestError(
                    f"request body is larger than {exc.limit} bytes",
                    status=413,
                    code="request_too_large",
                ),
            )
        except errors.AIWireError as exc:
            await _fail(send, exc)

    async def _route(self, caller: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        parts = scope["path"].rstrip("/").split("/")[1:]  # ["v1", "files", id, "content"]
        resource, rest = parts[1], parts[2:]
        service = self.service
        if resource == "files":
            if not rest and method == "POST":
                record = await self._upload(caller, scope, receive)
                return await _json(send, record.public())
            if not rest and method == "GET":
                params = _query(scope, ("purpose", "limit", "after", "order"))
                found = await service.files(caller, params.get("purpose"), _limit(params))
                return await _json(send, _page([f.public() for f in found], False))
            if len(rest) == 1 and method == "GET":
                return await _json(send, (await service.file(caller, rest[0])).public())
            if len(rest) == 2 and rest[1] == "content" and method == "GET":
                content = await service.content(caller, rest[0])
                return await _respond(send, 200, content, content_type=b"application/octet-stream")
        else:
            if not rest and method == "POST":
                body = await _body(scope, receive)
                record = await service.create(
                    caller,
                    input_file_id=_required(body, "input_file_id"),
                    endpoint=_required(body, "endpoint"),
                    completion_window=str(body.get("completion_window") or "24h"),
                    metadata=body.get("metadata"),
                    mode=body.get("mode"),
                )
                return await _json(send, record.public())
            if not rest and method == "GET":
                params = _query(scope, ("after", "limit"))
                batches, more = await service.list(
                    caller, after=params.get("after"), limit=_limit(params)
                )
                return await _json(send, _page([b.public() for b in batches], more))
            if len(rest) == 1 and method == "GET":
                return await _json(send, (await service.get(caller, rest[0])).public())
            if len(rest) == 2 and rest[1] == "cancel" and method == "POST":
                return await _json(send, (await service.cancel(caller, rest[0])).public())
        raise errors.NotFoundError(
            f"no route {method} {scope['path']}; the batch API serves POST/GET {FILES}, "
            f"GET {FILES}/{{id}}[/content], POST/GET {BATCHES}, GET {BATCHES}/{{id}}, "
            f"POST {BATCHES}/{{id}}/cancel",
            code="unknown_route",
        )

    async def _upload(self, caller: Principal, scope: Scope, receive: Receive) -> Any:
        raw = await read_body(scope, receive, self.service.settings.max_file_bytes + 64 * 1024)
        try:
            form = multipart.parse(raw, header(scope, b"content-type"))
        except multipart.MultipartError as exc:
            raise errors.BadRequestError(str(exc), param="file", code="invalid_multipart") from None
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None:
            raise errors.BadRequestError(
                "Missing required parameter: 'file'.",
                param="file",
                code="missing_required_parameter",
            )
        if purpose is None:
            raise errors.BadRequestError(
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        return await self.service.upload(
            caller,
            filename=upload.filename or "upload.jsonl",
            purpose=purpose.data.decode("utf-8", "replace").strip(),
            content=upload.data,
        )


def mount_batches(
    gateway: Gateway, database: Database, *, settings: BatchSettings | None = None
) -> BatchService:
    """Serve the batch API on ``gateway`` (its router, pricing, admission and store) and,
    unless ``settings.run_worker`` is off, run a batch worker in the gateway's process."""
    settings = settings or BatchSettings.from_env()
    store = BatchStore(database)
    router = gateway.router
    budget = None
    if gateway.admission is not None:
        keys = KeyStore(database)
        budget = BudgetGuard(gateway.admission, gateway.budgets, router, gateway.pricing, keys.get)
    service = BatchService(store, router, gateway.pricing, budget=budget, settings=settings)
    api = BatchAPI(service, gateway.principal)
    if not settings.run_worker:
        gateway.mount(FILES, api)
        gateway.mount(BATCHES, api)
        return service
    worker = BatchWorker(
        store,
        LineExecutor(router, gateway.pricing, clock=store.now),
        settings=settings.worker,
        budget=budget,
        native=NativeBatches(store, router, gateway.pricing, budget=budget),
    )
    service.attach(worker)
    running: list[asyncio.Task[None]] = []

    async def start() -> None:
        running.append(asyncio.get_running_loop().create_task(worker.serve()))

    async def stop() -> None:
        worker.stop()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    gateway.mount(FILES, api)
    gateway.mount(BATCHES, api)
    gateway.mount_hooks(on_startup=start, on_shutdown=stop)
    return service


# --- plumbing ---------------------------------------------------------------------------------


async def _json(send: Send, data: Any) -> None:
    await _respond(send, 200, orjson.dumps(data))


async def _fail(send: Send, exc: errors.AIWireError) -> None:
    status, body, headers = openai_wire.error_body(exc)
    await _respond(send, status, body, headers=headers.items())


async def _body(scope: Scope, receive: Receive) -> dict[str, Any]:
    data = openai_wire.load_object(await read_body(scope, receive, MAX_JSON_BYTES))
    for name in data:
        if name not in _CREATE_FIELDS:
            raise errors.BadRequestError(
                f"Unknown parameter: '{name}'; a batch takes {', '.join(_CREATE_FIELDS)}",
                param=name,
                code="unknown_parameter",
            )
    return data


def _missing(name: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def _required(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _missing(name)
    return value


def _query(scope: Scope, allowed: tuple[str, ...]) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    params = dict(parse_qsl(raw, keep_blank_values=True))
    for name in params:
        if name not in allowed:
            raise errors.BadRequestError(
                f"Unknown parameter: '{name}'; allowed: {', '.join(allowed)}",
                param=name,
                code="unknown_parameter",
            )
    return params


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise errors.BadRequestError(
            "Invalid value for 'limit': a whole number from 1 to 100.",
            param="limit",
            code="invalid_value",
        )
    return int(raw)


def _page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


__all__ = ["BATCHES", "FILES", "BatchAPI", "mount_batches"]
