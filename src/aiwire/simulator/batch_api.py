"""The providers' own batch APIs, simulated: OpenAI's ``/v1/files`` + ``/v1/batches`` and
Anthropic's ``/v1/messages/batches`` (workflows reference §3), so native mode runs offline.

Each batch is processed in the background by the same generation engine as the synchronous
endpoints, one request after another with the simulator's ``latency_ms`` each, through the
status lifecycle: OpenAI ``validating -> in_progress -> finalizing -> completed`` (or
``cancelling -> cancelled``), Anthropic ``in_progress -> ended`` (``canceling -> ended``).
Batch requests do not use the synchronous rate limits (the providers give batches their own
quota); each one processed counts in ``limiter.counts[(model, "batch")]``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiwire.batch import multipart
from aiwire.simulator import anthropic_api, openai_api
from aiwire.simulator.embeddings import embed
from aiwire.simulator.engine import count_tokens, generate
from aiwire.simulator.errors import anthropic_error, auth_error, openai_error
from aiwire.simulator.gate import SimState, state_of
from aiwire.simulator.wire import json_response, new_id

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Job:
    """One batch in either protocol; ``data`` is its public object."""

    data: dict[str, Any]
    requests: list[dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)
    cancel: bool = False


@dataclass
class _Registry:
    files: dict[str, _File] = field(default_factory=dict)
    openai: dict[str, _Job] = field(default_factory=dict)
    anthropic: dict[str, _Job] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _registry(request: Request) -> _Registry:
    state = request.app.state
    registry = getattr(state, "batches", None)
    if registry is None:
        registry = _Registry()
        state.batches = registry
    assert isinstance(registry, _Registry)
    return registry


def _now() -> int:
    return int(time.time())


def _start(request: Request, job: _Job, work: Any) -> None:
    registry = _registry(request)
    task = asyncio.get_running_loop().create_task(work)
    registry.tasks.add(task)
    task.add_done_callback(registry.tasks.discard)


# --- OpenAI -----------------------------------------------------------------------------------


def _openai_key(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    return auth.lower().startswith("bearer ") and bool(auth[7:].strip())


def _openai_denied() -> Response:
    return auth_error("openai", {}, missing=True)


async def create_file(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    try:
        form = multipart.parse(await request.body(), request.headers.get("content-type"))
    except multipart.MultipartError as exc:
        return openai_error(400, str(exc))
    upload, purpose = form.get("file"), form.get("purpose")
    if upload is None or purpose is None:
        return openai_error(400, "Missing required parameter: 'file' and 'purpose'.", param="file")
    registry = _registry(request)
    file = _File(
        new_id("file-", 24),
        upload.filename or "upload.jsonl",
        purpose.data.decode(),
        upload.data,
        _now(),
    )
    registry.files[file.id] = file
    return json_response(file.public())


async def retrieve_file(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    file = _registry(request).files.get(request.path_params["file_id"])
    if file is None:
        return openai_error(404, "No such File object.", param="id")
    return json_response(file.public())


async def file_content(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    file = _registry(request).files.get(request.path_params["file_id"])
    if file is None:
        return openai_error(404, "No such File object.", param="id")
    return Response(file.content, 200, media_type="application/octet-stream")


async def create_batch(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    body = orjson.loads(await request.body() or b"{}")
    registry = _registry(request)
    source = registry.files.get(str(body.get("input_file_id")))
    if source is None:
        return openai_error(400, "Invalid 'input_file_id': no such file.", "input_file_id")
    endpoint = body.get("endpoint")
    if endpoint not in _ENDPOINTS:
        return openai_error(400, f"Invalid 'endpoint': {endpoint!r}.", "endpoint")
    items = [orjson.loads(line) for line in source.content.splitlines() if line.strip()]
    now = _now()
    job = _Job(
        {
            "id": new_id("batch_", 24),
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": source.id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(items), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        },
        items,
    )
    registry.openai[job.data["id"]] = job
    _start(request, job, _run_openai(state_of(request), registry, job))
    return json_response(job.data)


async def _run_openai(sim: SimState, registry: _Registry, job: _Job) -> None:
    data = job.data
    data.update(status="in_progress", in_progress_at=_now())
    output: list[bytes] = []
    failures: list[bytes] = []
    for item in job.requests:
        if job.cancel:
            break
        await _think(sim)
        line = _openai_answer(sim, data["endpoint"], item)
        ok = line["response"]["status_code"] == 200
        (output if ok else failures).append(orjson.dumps(line) + b"\n")
        counts = data["request_counts"]
        counts["completed" if ok else "failed"] += 1
    if job.cancel:
        done = len(output) + len(failures)
        for item in job.requests[done:]:
            failures.append(
                orjson.dumps(
                    {
                        "id": new_id("batch_req_", 24),
                        "custom_id": item.get("custom_id"),
                        "response": None,
                        "error": {"code": "batch_cancelled", "message": "Batch was cancelled."},
                    }
                )
                + b"\n"
            )
        data["request_counts"]["failed"] += len(job.requests) - done
    else:
        data.update(status="finalizing", finalizing_at=_now())
    for key, lines in (("output_file_id", output), ("error_file_id", failures)):
        if lines:
            file = _File(
                new_id("file-", 24),
                f"{data['id']}_{key}.jsonl",
                "batch_output",
                b"".join(lines),
                _now(),
            )
            registry.files[file.id] = file
            data[key] = file.id
    final = "cancelled" if job.cancel else "completed"
    data.update(status=final, **{f"{final}_at": _now()})


def _openai_answer(sim: SimState, endpoint: str, item: dict[str, Any]) -> dict[str, Any]:
    body = item.get("body") if isinstance(item.get("body"), dict) else {}
    assert isinstance(body, dict)
    model = str(body.get("model") or "")
    sim.limiter.counts[(model, "batch")] += 1
    try:
        if endpoint == "/v1/embeddings":
            out = _embeddings(sim, model, body)
        else:
            req, n = openai_api.parse_chat(body)
            gens = [generate(openai_api._variant(req, i)) for i in range(n)]
            out = openai_api._completion(model, gens, "openai")
        response = {"status_code": 200, "request_id": new_id("req_", 32), "body": out}
    except openai_api.RequestError as exc:
        error = {"message": str(exc), "type": "invalid_request_error", "param": exc.param}
        response = {
            "status_code": exc.status,
            "request_id": new_id("req_", 32),
            "body": {"error": {**error, "code": None}},
        }
    return {
        "id": new_id("batch_req_", 24),
        "custom_id": item.get("custom_id"),
        "response": response,
        "error": None,
    }


def _embeddings(sim: SimState, model: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else [str(t) for t in raw or []]
    if not texts:
        raise openai_api.RequestError("Missing required parameter: 'input'.", "input")
    dims = body.get("dimensions") or sim.config.embedding_dimensions
    tokens = sum(count_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embed(t, dims)}
            for i, t in enumerate(texts)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def retrieve_batch(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    job = _registry(request).openai.get(request.path_params["batch_id"])
    if job is None:
        return openai_error(404, "No batch found.", param="batch_id")
    return json_response(job.data)


async def list_batches(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    jobs = sorted(_registry(request).openai.values(), key=lambda j: -j.data["created_at"])
    data = [j.data for j in jobs[: int(request.query_params.get("limit", 20))]]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(jobs) > len(data),
        }
    )


async def cancel_batch(request: Request) -> Response:
    if not _openai_key(request):
        return _openai_denied()
    job = _registry(request).openai.get(request.path_params["batch_id"])
    if job is None:
        return openai_error(404, "No batch found.", param="batch_id")
    if job.data["status"] in ("completed", "failed", "expired", "cancelled"):
        return openai_error(400, f"Cannot cancel a batch with status '{job.data['status']}'.")
    job.cancel = True
    job.data.update(status="cancelling", cancelling_at=_now())
    return json_response(job.data)


# --- Anthropic --------------------------------------------------------------------------------


def _anthropic_denied(request: Request) -> Response | None:
    if not (request.headers.get("x-api-key") or _openai_key(request)):
        return auth_error("anthropic", {}, missing=True)
    if not request.headers.get("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required")
    return None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


async def create_message_batch(request: Request) -> Response:
    if (denied := _anthropic_denied(request)) is not None:
        return denied
    body = orjson.loads(await request.body() or b"{}")
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        return anthropic_error(400, "requests: at least one request is required")
    seen: set[str] = set()
    for i, item in enumerate(items):
        cid = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
            return anthropic_error(
                400,
                f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'",
            )
        if cid in seen:
            return anthropic_error(400, f"requests.{i}.custom_id: duplicate custom_id {cid!r}")
        seen.add(cid)
    now = time.time()
    base = str(request.base_url).rstrip("/")
    job_id = new_id("msgbatch_01", 22)
    job = _Job(
        {
            "id": job_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(items),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": None,
            "created_at": _iso(now),
            "expires_at": _iso(now + 86400),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        },
        items,
    )
    job.data["_results_url"] = f"{base}/v1/messages/batches/{job_id}/results"
    _registry(request).anthropic[job_id] = job
    _start(request, job, _run_anthropic(state_of(request), job))
    return json_response(_public(job))


def _public(job: _Job) -> dict[str, Any]:
    return {k: v for k, v in job.data.items() if not k.startswith("_")}


async def _run_anthropic(sim: SimState, job: _Job) -> None:
    counts = job.data["request_counts"]
    for item in job.requests:
        if job.cancel:
            job.results.append({"custom_id": item["custom_id"], "result": {"type": "canceled"}})
            counts["canceled"] += 1
        else:
            await _think(sim)
            result = _anthropic_answer(sim, item.get("params"))
            job.results.append({"custom_id": item["custom_id"], "result": result})
            counts["succeeded" if result["type"] == "succeeded" else "errored"] += 1
        counts["processing"] -= 1
    job.data.update(
        processing_status="ended", ended_at=_iso(time.time()), results_url=job.data["_results_url"]
    )


def _anthropic_answer(sim: SimState, params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        params = {}
    model = str(params.get("model") or "")
    sim.limiter.counts[(model, "batch")] += 1
    try:
        req = anthropic_api.parse_messages(params, need_max_tokens=True)
    except anthropic_api.RequestError as exc:
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": str(exc)},
            },
        }
    return {"type": "succeeded", "message": anthropic_api._message(model, generate(req))}


async def _think(sim: SimState) -> None:
    """One request's generation time (``latency_ms``), or a yield to the event loop."""
    await asyncio.sleep(sim.config.latency_ms / 1000 if sim.config.latency_ms else 0)


def _message_batch(request: Request) -> _Job | Response:
    job = _registry(request).anthropic.get(request.path_params["batch_id"])
    if job is None:
        return anthropic_error(404, "batch not found", "not_found_error")
    return job


async def retrieve_message_batch(request: Request) -> Response:
    if (denied := _anthropic_denied(request)) is not None:
        return denied
    job = _message_batch(request)
    return job if isinstance(job, Response) else json_response(_public(job))


async def message_batch_results(request: Request) -> Response:
    if (denied := _anthropic_denied(request)) is not None:
        return denied
    job = _message_batch(request)
    if isinstance(job, Response):
        return job
    if job.data["processing_status"] != "ended":
        return anthropic_error(400, "batch is still processing: results are ready once it ended")
    content = b"".join(orjson.dumps(r) + b"\n" for r in job.results)
    return Response(content, 200, media_type="application/x-jsonl")


async def cancel_message_batch(request: Request) -> Response:
    if (denied := _anthropic_denied(request)) is not None:
        return denied
    job = _message_batch(request)
    if isinstance(job, Response):
        return job
    if job.data["processing_status"] == "in_progress":
        job.cancel = True
        job.data.update(processing_status="canceling", cancel_initiated_at=_iso(time.time()))
    return json_response(_public(job))


async def list_message_batches(request: Request) -> Response:
    if (denied := _anthropic_denied(request)) is not None:
        return denied
    jobs = sorted(_registry(request).anthropic.values(), key=lambda j: j.data["created_at"])
    data = [_public(j) for j in reversed(jobs)][: int(request.query_params.get("limit", 20))]
    return json_response(
        {
            "data": data,
            "has_more": len(jobs) > len(data),
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


#: The routes, to be placed before the simulator's catch-all route.
ROUTES = [
    Route("/v1/files", create_file, methods=["POST"]),
    Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/v1/batches", create_batch, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    Route("/v1/messages/batches", create_message_batch, methods=["POST"]),
    Route("/v1/messages/batches", list_message_batches, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}", retrieve_message_batch, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}/results", message_batch_results, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}/cancel", cancel_message_batch, methods=["POST"]),
]
