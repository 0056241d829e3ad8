"""One batch line through the router: the same path, retries, fallbacks and pacing as a
synchronous request, with the answer kept in OpenAI's shape for the output file.

The router decides everything about upstream attempts. What happens here after it gave its
answer: a success is priced by the catalog; an error that the router could not retry away but
that is worth another go later (a 429 after all retries, a 5xx, a timeout: ``retryable``) puts
the line back in the queue for a later dispatch, until the batch's ``max_attempts``; any other
error is the line's final outcome, in OpenAI's error shape.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from aiwire import errors
from aiwire.batch import lines
from aiwire.batch.records import Claimed, LineResult
from aiwire.limits.pricing import NoPricing, Pricing
from aiwire.router import AttemptEvent, Router
from aiwire.server import openai_wire
from aiwire.store.writer import RequestLogRow
from aiwire.types import ChatRequest, EmbeddingRequest, Usage, new_id

#: Where every batch line's request-log row says it came from.
LOG_ENDPOINT = "/v1/batches"
#: Longest pause before a re-queued line is dispatched again.
MAX_REQUEUE_DELAY = 60.0

_attempts: contextvars.ContextVar[list[AttemptEvent] | None] = contextvars.ContextVar(
    "aiwire_batch_attempts", default=None
)


def _observe(event: AttemptEvent) -> None:
    found = _attempts.get()
    if found is not None:
        found.append(event)


@dataclass(slots=True)
class Context:
    """Who a line runs for: the batch's key and team (for the log and its budgets)."""

    batch_id: str
    endpoint: str
    max_attempts: int
    key_id: str | None = None
    team: str | None = None


@dataclass(slots=True)
class Executed:
    """A line's outcome plus what the request log needs about the call."""

    result: LineResult
    log: RequestLogRow | None
    usage: Usage | None = None
    attempts: list[AttemptEvent] = field(default_factory=list)


class LineExecutor:
    def __init__(
        self,
        router: Router,
        pricing: Pricing | None = None,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.router = router
        self.pricing: Pricing = pricing or NoPricing()
        self._clock = clock
        if _observe not in router.on_attempt:
            router.on_attempt.append(_observe)

    async def run(self, line: Claimed, ctx: Context) -> Executed:
        """Run one claimed line; never raises for a request's own failure."""
        started = time.perf_counter()
        attempts: list[AttemptEvent] = []
        _attempts.set(attempts)
        try:
            request = lines.parse_request(ctx.endpoint, line.body)
        except errors.AIWireError as exc:  # validated at creation: only if the parser changed
            return Executed(self._error(exc, line, ctx), None)
        try:
            if isinstance(request, EmbeddingRequest):
                embedded = await self.router.embed(request)
                usage = Usage.of(embedded.usage.prompt_tokens, 0)
                body = openai_wire.render_embeddings(embedded, request.encoding_format)
                answer = _Answer(body, usage, embedded.deployment, embedded.provider, None)
            else:
                answer = await self._chat(request)
        except errors.AIWireError as exc:
            result = self._error(exc, line, ctx)
            return Executed(result, self._log(line, ctx, request, result, attempts, started, exc))
        cost = self._cost(answer.deployment, answer.usage)
        result = LineResult(
            state="succeeded",
            status_code=200,
            request_id=answer.request_id or new_id("req_"),
            response=answer.body,
            input_tokens=answer.usage.input_tokens if answer.usage else 0,
            output_tokens=answer.usage.output_tokens if answer.usage else 0,
            cost_usd=cost,
        )
        log = self._log(line, ctx, request, result, attempts, started, None, answer)
        return Executed(result, log, answer.usage, attempts)

    async def _chat(self, request: ChatRequest) -> _Answer:
        resp = await self.router.chat_passthrough(request)
        return _Answer(
            openai_wire.render_chat(resp),
            resp.usage,
            resp.deployment,
            resp.provider,
            resp.request_id,
        )

    def _cost(self, deployment: str | None, usage: Usage | None) -> float:
        dep = self.router.deployment(deployment) if deployment else None
        if dep is None or usage is None:
            return 0.0
        return self.pricing.cost(dep.model, usage) or 0.0

    def _error(self, exc: errors.AIWireError, line: Claimed, ctx: Context) -> LineResult:
        status = openai_wire.status_of(exc)
        body = openai_wire.error_dict(exc)
        if exc.retryable and line.attempts < ctx.max_attempts:
            delay = min(MAX_REQUEUE_DELAY, max(exc.retry_after or 0.0, 2.0**line.attempts))
            return LineResult(
                state="pending",
                status_code=status,
                error=body["error"],
                not_before=self._clock() + timedelta(seconds=delay),
            )
        return LineResult(
            state="errored",
            status_code=status,
            request_id=exc.request_id or new_id("req_"),
            response=orjson.dumps(body),
        )

    def _log(
        self,
        line: Claimed,
        ctx: Context,
        request: ChatRequest | EmbeddingRequest,
        result: LineResult,
        attempts: list[AttemptEvent],
        started: float,
        exc: errors.AIWireError | None,
        answer: _Answer | None = None,
    ) -> RequestLogRow | None:
        """The request-log row of this call, as the gateway writes it; None when nothing
        reached a provider (refused before any attempt)."""
        if not attempts:
            return None
        last = attempts[-1]
        usage = answer.usage if answer is not None else None
        return RequestLogRow(
            request_id=f"{ctx.batch_id}:{line.id}:{line.attempts}",
            model=request.model,
            endpoint=LOG_ENDPOINT,
            status=result.status_code or 200,
            key_id=ctx.key_id,
            deployment=(answer.deployment if answer is not None else None) or last.deployment,
            provider=answer.provider if answer is not None else exc.provider if exc else None,
            error_type=type(exc).__name__ if exc is not None else None,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_input_tokens if usage else 0,
            latency_ms=(time.perf_counter() - started) * 1000,
            retries=len(attempts) - 1,
            fallback=last.fallback,
            team=ctx.team,
            cost_usd=result.cost_usd,
        )


@dataclass(slots=True)
class _Answer:
    body: bytes
    usage: Usage | None
    deployment: str | None
    provider: str | None
    request_id: str | None
