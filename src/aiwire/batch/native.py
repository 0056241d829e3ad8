"""Native mode: a batch run as the provider's own batch (OpenAI Batch, Anthropic Message
Batches) at its batch price, its results mapped back to OpenAI's output-line format.

The worker holding the batch's lease steps it (:meth:`NativeBatches.step`):

1. **submit**: every pending line goes ``in_flight`` (attempts + 1) and the batch records
   ``native.state = submitting`` - committed before the provider hears of it; then the lines
   are sent (custom ids ``l<line number>``: Anthropic accepts only ``[a-zA-Z0-9_-]{1,64}``)
   and the provider's batch id is stored. A worker that finds ``submitting`` without an id
   looks for its OpenAI batch by metadata before sending again;
2. **poll** every ``native_poll_interval``; a cancellation is forwarded once;
3. once the provider's batch has ended, its results become the lines' outcomes and request-log
   rows (each priced at :data:`~aiwire.batch.budget.NATIVE_PRICE` of the synchronous price) in
   one transaction, lines it did not answer are closed as expired, cancelled or errored, and
   the batch is finalized like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aiwire import errors
from aiwire.batch import lines, multipart
from aiwire.batch.budget import NATIVE_PRICE, BudgetGuard
from aiwire.batch.execute import LOG_ENDPOINT
from aiwire.batch.records import BatchRecord, Claimed, LineResult
from aiwire.batch.store import BatchStore
from aiwire.limits.pricing import NoPricing, Pricing
from aiwire.providers.anthropic import DEFAULT_MAX_TOKENS, from_anthropic, to_anthropic
from aiwire.providers.base import Provider
from aiwire.providers.transport import HttpTimeout, TransportError
from aiwire.router import Deployment, Router
from aiwire.server import openai_wire
from aiwire.store.writer import RequestLogRow
from aiwire.types import ChatRequest, EmbeddingRequest, Usage, new_id

log = logging.getLogger("aiwire.batch.native")

#: Provider types with a batch API this module speaks.
NATIVE_TYPES = ("openai", "anthropic")
#: Seconds allowed for one call to a provider's batch API (uploads and downloads included).
HTTP_TIMEOUT = HttpTimeout(connect=10.0, read=300.0)


def native_deployment(router: Router, model: str) -> Deployment | None:
    """The first deployment of ``model`` whose provider has a batch API aiwire speaks."""
    for dep in router.deployments(model):
        if dep.provider.type in NATIVE_TYPES:
            return dep
    return None


def prefers_native(router: Router, model: str) -> bool:
    """Whether the deployment serving ``model`` asks for native mode by default (provider
    option ``batch_mode: native``)."""
    dep = native_deployment(router, model)
    return dep is not None and dep.provider.options.get("batch_mode") == "native"


def _custom_id(idx: int) -> str:
    return f"l{idx}"


def _idx(custom_id: Any) -> int | None:
    if isinstance(custom_id, str) and custom_id.startswith("l") and custom_id[1:].isdigit():
        return int(custom_id[1:])
    return None


@dataclass(slots=True)
class Ended:
    """A provider batch that has ended: its raw results and how it ended."""

    outcome: str  # completed | expired | cancelled | failed
    results: list[dict[str, Any]]


# --- the two providers' batch APIs ------------------------------------------------------------


class _API:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def _call(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> bytes:
        headers = dict(self.provider._request_headers())
        if content_type is not None:
            headers["content-type"] = content_type
        try:
            resp = await self.provider.http.request(
                method, url, headers=headers, timeout=HTTP_TIMEOUT, content=body
            )
        except TransportError as exc:
            raise errors.ConnectionError(
                f"{self.provider.name}'s batch API could not be reached ({exc.kind})",
                provider=self.provider.name,
            ) from None
        if resp.status >= 400:
            raise self.provider.map_error(resp.status, resp.content, resp.headers, None)
        return resp.content

    async def _json(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        raw = await self._call(method, url, body=None if body is None else orjson.dumps(body))
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise errors.ServerError(
                f"{self.provider.name}'s batch API answered with something other than an object",
                provider=self.provider.name,
            )
        return data


def _jsonl(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for line in raw.splitlines():
        if line.strip():
            item = orjson.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


class OpenAIBatchAPI(_API):
    """``/files`` + ``/batches`` under the provider's base URL (which includes ``/v1``)."""

    async def submit(self, batch: BatchRecord, items: Sequence[dict[str, Any]]) -> str:
        base = self.provider.base_url
        content = b"".join(orjson.dumps(i) + b"\n" for i in items)
        body, content_type = multipart.build(
            {"purpose": "batch"}, {"file": (f"{batch.id}.jsonl", content)}
        )
        uploaded = orjson.loads(
            await self._call("POST", f"{base}/files", body=body, content_type=content_type)
        )
        created = await self._json(
            "POST",
            f"{base}/batches",
            {
                "input_file_id": uploaded["id"],
                "endpoint": batch.endpoint,
                "completion_window": "24h",
                "metadata": {"aiwire_batch_id": batch.id},
            },
        )
        return str(created["id"])

    async def find(self, batch: BatchRecord) -> str | None:
        """The provider batch an interrupted submission created, found by its metadata."""
        listed = await self._json("GET", f"{self.provider.base_url}/batches?limit=100")
        for item in listed.get("data") or []:
            if (item.get("metadata") or {}).get("aiwire_batch_id") == batch.id:
                return str(item["id"])
        return None

    async def poll(self, native_id: str) -> tuple[str, Ended | None]:
        data = await self._json("GET", f"{self.provider.base_url}/batches/{native_id}")
        status = str(data.get("status"))
        if status not in ("completed", "expired", "cancelled", "failed"):
            return status, None
        results: list[dict[str, Any]] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = data.get(key)
            if file_id:
                raw = await self._call("GET", f"{self.provider.base_url}/files/{file_id}/content")
                results += _jsonl(raw)
        return status, Ended(status, results)

    async def cancel(self, native_id: str) -> None:
        await self._json("POST", f"{self.provider.base_url}/batches/{native_id}/cancel")


class AnthropicBatchAPI(_API):
    """``/v1/messages/batches`` under the host root."""

    async def submit(self, batch: BatchRecord, items: Sequence[dict[str, Any]]) -> str:
        created = await self._json(
            "POST", f"{self.provider.base_url}/v1/messages/batches", {"requests": list(items)}
        )
        return str(created["id"])

    async def find(self, batch: BatchRecord) -> str | None:
        return None  # Message Batches carry no metadata to recognise ours by

    async def poll(self, native_id: str) -> tuple[str, Ended | None]:
        url = f"{self.provider.base_url}/v1/messages/batches/{native_id}"
        data = await self._json("GET", url)
        status = str(data.get("processing_status"))
        if status != "ended":
            return status, None
        results_url = data.get("results_url")
        results = _jsonl(await self._call("GET", str(results_url))) if results_url else []
        counts = data.get("request_counts") or {}
        outcome = "cancelled" if data.get("cancel_initiated_at") else "completed"
        if outcome == "completed" and counts.get("expired") and not counts.get("succeeded"):
            outcome = "expired"
        return status, Ended(outcome, results)

    async def cancel(self, native_id: str) -> None:
        url = f"{self.provider.base_url}/v1/messages/batches/{native_id}/cancel"
        await self._json("POST", url)


def api_for(provider: Provider) -> OpenAIBatchAPI | AnthropicBatchAPI:
    if provider.type == "anthropic":
        return AnthropicBatchAPI(provider)
    if provider.type == "openai":
        return OpenAIBatchAPI(provider)
    raise errors.BadRequestError(
        f"provider {provider.name!r} ({provider.type}) has no batch API aiwire can use; "
        f"native mode needs a model served by type {' or '.join(NATIVE_TYPES)}",
        code="native_unsupported",
    )


# --- the stepper ------------------------------------------------------------------------------


class NativeBatches:
    """Runs native batches for a :class:`~aiwire.batch.runner.BatchWorker`."""

    def __init__(
        self,
        store: BatchStore,
        router: Router,
        pricing: Pricing | None = None,
        *,
        lease: float = 120.0,
        budget: BudgetGuard | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.pricing: Pricing = pricing or NoPricing()
        self.lease = lease
        #: Told what a native batch spent, for the live budget counters.
        self.budget = budget

    async def step(self, batch: BatchRecord, owner: str) -> None:
        if not await self.store.lease_batch(batch.id, owner, self.lease):
            return  # another worker is on it
        state = dict(batch.native or {})
        dep = self._deployment(batch, state)
        api = api_for(dep.provider)
        if not state.get("id"):
            await self._start(batch, state, dep, api, owner)
            return
        if batch.status == "cancelling" and not state.get("cancel_sent"):
            await api.cancel(state["id"])
            state["cancel_sent"] = True
            await self.store.set_native(batch.id, state)
        status, ended = await api.poll(state["id"])
        if status != state.get("status"):
            state["status"] = status
            await self.store.set_native(batch.id, state)
        if ended is not None:
            await self._finish(batch, dep, ended)

    def _deployment(self, batch: BatchRecord, state: Mapping[str, Any]) -> Deployment:
        dep = self.router.deployment(str(state.get("deployment") or ""))
        if dep is None and batch.model is not None:
            dep = native_deployment(self.router, batch.model)
        if dep is None:
            raise errors.BadRequestError(
                f"batch {batch.id}: no deployment of {batch.model!r} can run it natively",
                code="native_unsupported",
            )
        return dep

    async def _start(
        self,
        batch: BatchRecord,
        state: dict[str, Any],
        dep: Deployment,
        api: OpenAIBatchAPI | AnthropicBatchAPI,
        owner: str,
    ) -> None:
        if batch.status == "cancelling" or self.store.now() >= batch.expires_at:
            final = "cancelled" if batch.status == "cancelling" else "expired"
            error = lines.CANCELLED_ERROR if final == "cancelled" else lines.EXPIRED_ERROR
            await self.store.close_open_lines(batch.id, final, error, in_flight=True)
            await self.store.finalize(batch.id, final)
            return
        if state.get("state") == "submitting":
            found = await api.find(batch)
            if found is not None:
                state.update(id=found, state="submitted")
                await self.store.set_native(batch.id, state)
                return
        state.update(
            deployment=dep.id,
            provider=dep.provider.name,
            type=dep.provider.type,
            state="submitting",
        )
        await self.store.set_native(batch.id, state)
        await self.store.dispatch_all(batch.id, owner)
        claimed = await self.store.lines(batch.id, ("in_flight",))
        items, refused = self._items(batch, dep, claimed)
        if refused:
            await self.store.settle_many(refused, [])
        if not items:
            await self._settle_and_close(batch, [], [], "completed")
            return
        try:
            native_id = await api.submit(batch, items)
        except errors.AIWireError as exc:
            if exc.retryable:
                raise  # the next poll submits again (lines stay in flight meanwhile)
            await self._refuse(batch, exc)
            return
        state.update(id=native_id, state="submitted", lines=len(items))
        await self.store.set_native(batch.id, state)
        log.info("batch %s submitted to %s as %s", batch.id, dep.provider.name, native_id)

    def _items(
        self, batch: BatchRecord, dep: Deployment, claimed: Sequence[Claimed]
    ) -> tuple[list[dict[str, Any]], list[tuple[int, LineResult]]]:
        """The provider's request lines, and the lines refused before sending (a feature the
        provider cannot honour)."""
        items: list[dict[str, Any]] = []
        refused: list[tuple[int, LineResult]] = []
        for line in claimed:
            try:
                request = lines.parse_request(batch.endpoint, line.body)
                items.append(self._item(batch.endpoint, dep, line.idx, request))
            except errors.AIWireError as exc:
                refused.append((line.id, _error_result(exc)))
        return items, refused

    def _item(
        self,
        endpoint: str,
        dep: Deployment,
        idx: int,
        request: ChatRequest | EmbeddingRequest,
    ) -> dict[str, Any]:
        upstream = request.model_copy(update={"model": dep.model})
        if dep.provider.type == "anthropic":
            if not isinstance(upstream, ChatRequest):
                raise errors.BadRequestError(
                    "Anthropic has no embeddings", code="native_unsupported"
                )
            dep.provider.check(upstream)
            params = to_anthropic(upstream, default_max_tokens=_max_tokens(dep), stream=False)
            return {"custom_id": _custom_id(idx), "params": params.body}
        body = upstream.model_dump(exclude_none=True, by_alias=True)
        return {"custom_id": _custom_id(idx), "method": "POST", "url": endpoint, "body": body}

    async def _refuse(self, batch: BatchRecord, exc: errors.AIWireError) -> None:
        """The provider refused the batch itself: every line ends with its error."""
        log.warning("batch %s: the provider refused it: %s", batch.id, exc)
        claimed = await self.store.lines(batch.id, ("in_flight",))
        results = [(line.id, _error_result(exc)) for line in claimed]
        await self._settle_and_close(batch, results, [], "completed")

    async def _finish(self, batch: BatchRecord, dep: Deployment, ended: Ended) -> None:
        claimed = {line.idx: line for line in await self.store.lines(batch.id, ("in_flight",))}
        results: list[tuple[int, LineResult]] = []
        logs: list[RequestLogRow] = []
        for item in ended.results:
            idx = _idx(item.get("custom_id"))
            line = claimed.pop(idx, None) if idx is not None else None
            if line is None:
                continue
            result, usage = self._map(batch.endpoint, dep, line, item)
            results.append((line.id, result))
            if result.state in ("succeeded", "errored") and result.status_code is not None:
                logs.append(self._log(batch, dep, line, result, usage))
        leftover = {
            "expired": ("expired", lines.EXPIRED_ERROR),
            "cancelled": ("cancelled", lines.CANCELLED_ERROR),
        }.get(ended.outcome)
        for line in claimed.values():  # lines the provider never answered
            if leftover is not None:
                results.append((line.id, LineResult(state=leftover[0], error=dict(leftover[1]))))
            else:
                missing = errors.ServerError(
                    f"the provider's batch ended ({ended.outcome}) without a result for this line",
                    provider=dep.provider.name,
                )
                results.append((line.id, _error_result(missing)))
        final = ended.outcome if ended.outcome in ("expired", "cancelled") else "completed"
        if batch.status == "cancelling":
            final = "cancelled"
        await self._settle_and_close(batch, results, logs, final)
        if self.budget is not None:
            await self.budget.record(batch.key_id, sum(r.cost_usd for _, r in results))

    async def _settle_and_close(
        self,
        batch: BatchRecord,
        results: list[tuple[int, LineResult]],
        logs: list[RequestLogRow],
        final: str,
    ) -> None:
        await self.store.settle_many(results, logs)
        if final == "completed":
            await self.store.transition(batch.id, "finalizing", from_=("in_progress",))
        await self.store.finalize(batch.id, final)

    def _map(
        self, endpoint: str, dep: Deployment, line: Claimed, item: Mapping[str, Any]
    ) -> tuple[LineResult, Usage | None]:
        if dep.provider.type == "anthropic":
            return self._map_anthropic(endpoint, dep, line, item)
        response = item.get("response")
        error = item.get("error")
        if not isinstance(response, dict):
            code = error.get("code") if isinstance(error, dict) else None
            if code == "batch_expired":
                return LineResult(state="expired", error=dict(lines.EXPIRED_ERROR)), None
            if code == "batch_cancelled":
                return LineResult(state="cancelled", error=dict(lines.CANCELLED_ERROR)), None
            return LineResult(state="errored", error=error if isinstance(error, dict) else {}), None
        status = int(response.get("status_code") or 500)
        body = response.get("body")
        request_id = response.get("request_id")
        if status != 200:
            return (
                LineResult(
                    state="errored",
                    status_code=status,
                    request_id=str(request_id) if request_id else new_id("req_"),
                    response=orjson.dumps(body),
                ),
                None,
            )
        usage = _openai_usage(body)
        return self._succeeded(dep, body, usage, request_id), usage

    def _map_anthropic(
        self, endpoint: str, dep: Deployment, line: Claimed, item: Mapping[str, Any]
    ) -> tuple[LineResult, Usage | None]:
        result = item.get("result") if isinstance(item.get("result"), dict) else {}
        assert isinstance(result, dict)
        kind = result.get("type")
        if kind == "expired":
            return LineResult(state="expired", error=dict(lines.EXPIRED_ERROR)), None
        if kind == "canceled":
            return LineResult(state="cancelled", error=dict(lines.CANCELLED_ERROR)), None
        if kind != "succeeded" or not isinstance(result.get("message"), dict):
            raw = orjson.dumps(result.get("error") or {})
            exc = dep.provider.map_error(200, raw, {}, dep.model)
            return _error_result(exc), None
        request = lines.parse_request(endpoint, line.body)
        assert isinstance(request, ChatRequest)
        upstream = request.model_copy(update={"model": dep.model})
        plan = to_anthropic(upstream, default_max_tokens=_max_tokens(dep), stream=False)
        resp = from_anthropic(result["message"], dep.model, plan.json_tool)
        body = openai_wire.chat_dict(resp)
        return self._succeeded(dep, body, resp.usage, None), resp.usage

    def _succeeded(
        self, dep: Deployment, body: Any, usage: Usage | None, request_id: Any
    ) -> LineResult:
        cost = 0.0
        if usage is not None:
            cost = (self.pricing.cost(dep.model, usage) or 0.0) * NATIVE_PRICE
        return LineResult(
            state="succeeded",
            status_code=200,
            request_id=str(request_id) if request_id else new_id("req_"),
            response=orjson.dumps(body),
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_usd=cost,
        )

    def _log(
        self,
        batch: BatchRecord,
        dep: Deployment,
        line: Claimed,
        result: LineResult,
        usage: Usage | None,
    ) -> RequestLogRow:
        return RequestLogRow(
            request_id=f"{batch.id}:{line.id}:{line.attempts}",
            model=line.model,
            endpoint=LOG_ENDPOINT,
            status=result.status_code or 200,
            key_id=batch.key_id,
            deployment=dep.id,
            provider=dep.provider.name,
            error_type=None if result.state == "succeeded" else "native_batch_error",
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_input_tokens if usage else 0,
            team=batch.team,
            cost_usd=result.cost_usd,
        )


def _max_tokens(dep: Deployment) -> int:
    value = dep.provider.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_TOKENS


def _openai_usage(body: Any) -> Usage | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return Usage.of(prompt, completion, cached)


def _error_result(exc: errors.AIWireError) -> LineResult:
    return LineResult(
        state="errored",
        status_code=openai_wire.status_of(exc),
        request_id=exc.request_id or new_id("req_"),
        response=orjson.dumps(openai_wire.error_dict(exc)),
    )
