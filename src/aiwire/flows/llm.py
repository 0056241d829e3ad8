"""The model steps: ``model``, ``classify`` and ``chunk``, through the router.

Calls go through :class:`aiwire.AsyncClient` over the runner's :class:`~aiwire.router.Router`
(retries, fallbacks, pacing) and structured answers through :meth:`AsyncClient.extract`, which
validates against the schema and re-asks with the validation error. The flow client adds two
things around each call: a meter (calls, tokens and cost by the catalog's prices, for the run
history) and a free local repair before validation (code fences, prose around the JSON, trailing
commas), the cheap fixes that would otherwise cost a re-ask. An answer still invalid after the
re-asks raises :class:`StepFailure` (``invalid_output``) with every validation error and the last
answer: the record goes to the dead-letter queue and never reaches a sink.
"""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import orjson
from pydantic import BaseModel

from aiwire import errors
from aiwire.client import AsyncClient, Messages
from aiwire.flows import paths, templates
from aiwire.flows.context import Outcome, RecordContext, StepFailure
from aiwire.flows.definition import ChunkStep, ClassifyStep, ModelStep
from aiwire.flows.loader import Schema
from aiwire.flows.store import StepMetrics
from aiwire.guardrails.pii import PIIGuard
from aiwire.guardrails.restore import Vault
from aiwire.router import Router
from aiwire.tokens import count_text
from aiwire.types import ChatRequest, ChatResponse, Message

#: How much of a model's last answer a dead letter keeps.
MAX_KEPT_OUTPUT = 4000
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class Meter:
    """Calls, tokens and cost of one step execution (re-asks included)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.repaired = 0

    def add(self, response: ChatResponse) -> None:
        self.calls += 1
        usage = response.usage
        if usage is None:
            return
        self.input_tokens += usage.prompt_tokens
        self.output_tokens += usage.completion_tokens
        catalog = self.router.catalog
        if catalog is None:
            return
        dep = self.router.deployment(response.deployment) if response.deployment else None
        info = catalog.lookup(dep.model if dep is not None else response.model)
        if info is not None:
            self.cost_usd += info.price(
                usage.prompt_tokens, usage.completion_tokens, usage.cached_input_tokens
            )

    def metrics(self, ms: float = 0.0, confidence: float | None = None) -> StepMetrics:
        return StepMetrics(
            ms=ms,
            calls=self.calls,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            confidence=confidence,
        )


def repair_json(text: str) -> str:
    """The JSON inside ``text`` when ``text`` is not JSON as it stands but a common wrapping of
    it is (a code fence, prose before or after, trailing commas); else ``text`` unchanged."""
    try:
        orjson.loads(text)
        return text
    except orjson.JSONDecodeError:
        pass
    candidate = text.strip()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = candidate.rfind("}" if candidate[start] == "{" else "]")
        if end > start:
            candidate = candidate[start : end + 1]
    candidate = _TRAILING_COMMA.sub(r"\1", candidate)
    try:
        orjson.loads(candidate)
    except orjson.JSONDecodeError:
        return text
    return candidate


class _FlowClient(AsyncClient):
    """An AsyncClient over a shared router that meters each call and repairs JSON answers."""

    def __init__(self, router: Router, meter: Meter) -> None:
        super().__init__(router=router)
        self.meter = meter

    async def chat(self, model: str, messages: Messages, **params: Any) -> ChatResponse:
        response = await super().chat(model, messages, **params)
        self.meter.add(response)
        if "response_format" in params and response.choices:
            text = response.text
            fixed = repair_json(text)
            if fixed != text:
                self.meter.repaired += 1
                message = response.message.model_copy(update={"content": fixed})
                choice = response.choices[0].model_copy(update={"message": message})
                response = response.model_copy(update={"choices": [choice, *response.choices[1:]]})
        return response


class LLM:
    """Model access for the steps of one runner."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def client(self, meter: Meter) -> AsyncClient:
        return _FlowClient(self.router, meter)

    def upstream(self, model: str) -> str:
        """The upstream model id behind a model name (for token counting and windows)."""
        deps = self.router.deployments(model)
        if not deps:
            known = ", ".join(self.router.names) or "none"
            raise StepFailure(f"unknown model {model!r} (configured: {known})")
        return deps[0].model

    def context_window(self, model: str) -> int | None:
        catalog = self.router.catalog
        info = None if catalog is None else catalog.lookup(self.upstream(model))
        return None if info is None else info.context_window


# --- model ----------------------------------------------------------------------------------------


def with_confidence(schema: Schema) -> Schema:
    """The schema asking also for ``confidence`` (a number from 0 to 1)."""
    if not isinstance(schema, dict):
        return schema  # a pydantic model declares its own confidence field (checked at load)
    out = copy.deepcopy(schema)
    props = out.setdefault("properties", {})
    props["confidence"] = {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "how sure you are of this answer, from 0 (a guess) to 1 (certain)",
    }
    required = out.setdefault("required", [])
    if "confidence" not in required:
        required.append("confidence")
    return out


def _mask(
    model: str, messages: list[Message], guard: PIIGuard | None
) -> tuple[list[Message], Vault | None]:
    if guard is None:
        return messages, None
    try:
        redaction = guard.apply(ChatRequest(model=model, messages=messages))
    except errors.BadRequestError as exc:
        raise StepFailure(
            f"personal data refused by the step's pii policy: {exc.message}"
        ) from None
    if redaction is None:
        return messages, None
    return redaction.request.messages, redaction.vault


def _restore(value: Any, vault: Vault | None) -> Any:
    if vault is None:
        return value
    if isinstance(value, str):
        return vault.restore_text(value)
    return orjson.loads(vault.restore_json_text(orjson.dumps(value).decode()))


async def _answer(
    llm: LLM,
    meter: Meter,
    model: str,
    messages: list[Message],
    schema: Schema | None,
    *,
    reasks: int,
    params: dict[str, Any],
) -> Any:
    client = llm.client(meter)
    if schema is None:
        return (await client.chat(model, messages, **params)).text
    try:
        result = await client.extract(model, messages, schema, retries=reasks, **params)
    except errors.OutputValidationError as exc:
        raise StepFailure(
            f"the answer of {model!r} stayed invalid after {reasks} re-ask(s): {exc.errors[-1]}",
            error_class="invalid_output",
            details={
                "validation_errors": exc.errors,
                "last_output": exc.last_output[:MAX_KEPT_OUTPUT],
                "calls": meter.calls,
            },
        ) from None
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


async def run_model(
    step: ModelStep, sid: str, ctx: RecordContext, llm: LLM, meter: Meter
) -> Outcome:
    user = paths.get(ctx.data, step.input)
    if user is paths.MISSING or user is None:
        raise StepFailure(
            f"model: the record has no {step.input!r} (render it with a prompt step, or set "
            "input: to the field holding the message)"
        )
    text = user if isinstance(user, str) else orjson.dumps(user).decode()
    messages = [Message(role="user", content=text)]
    if step.system:
        system = templates.render(step.system, ctx.names())
        messages.insert(0, Message(role="system", content=system))
    guard = PIIGuard(step.pii) if step.pii is not None and step.pii.action != "off" else None
    messages, vault = _mask(step.model, messages, guard)
    schema = ctx.flow.schemas.get(sid)
    if schema is not None and step.confidence:
        schema = with_confidence(schema)
    params = _params(step.temperature, step.max_tokens)
    answer = await _answer(
        llm, meter, step.model, messages, schema, reasks=step.reasks, params=params
    )
    answer = _restore(answer, vault)
    confidence = _confidence(answer) if step.confidence else None
    data = copy.deepcopy(ctx.data)
    paths.set_(data, step.into or sid, answer)
    output = {"answer": answer, "repaired": meter.repaired, "reasks": max(0, meter.calls - 1)}
    return Outcome(data, output=output, metrics=meter.metrics(confidence=confidence))


def _params(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    return params


def _confidence(answer: Any) -> float | None:
    value = answer.get("confidence") if isinstance(answer, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- classify -------------------------------------------------------------------------------------


async def run_classify(
    step: ClassifyStep, sid: str, ctx: RecordContext, llm: LLM, meter: Meter
) -> Outcome:
    if templates.is_template(step.input):
        text = templates.render(step.input, ctx.names())
    else:
        value = paths.get(ctx.data, step.input)
        if value is paths.MISSING or value is None:
            raise StepFailure(f"classify: the record has no {step.input!r}")
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
    labels = ", ".join(step.labels)
    prompt = (
        f"Classify the text below with exactly one of these labels: {labels}."
        + (f"\n{step.instructions}" if step.instructions else "")
        + f"\n\nText:\n{text}"
    )
    schema = ctx.flow.schemas[sid]
    if step.confidence:
        schema = with_confidence(schema)
    answer = await _answer(
        llm,
        meter,
        step.model,
        [Message(role="user", content=prompt)],
        schema,
        reasks=step.reasks,
        params={},
    )
    label = answer["label"]
    confidence = _confidence(answer) if step.confidence else None
    into = step.into or sid
    data = copy.deepcopy(ctx.data)
    paths.set_(data, into, label)
    if confidence is not None:
        paths.set_(data, f"{into}_confidence", confidence)
    return Outcome(data, output=answer, metrics=meter.metrics(confidence=confidence))


# --- chunk ----------------------------------------------------------------------------------------

_UNIT = re.compile(r"[^\n.!?]*(?:[.!?]+(?=\s|$)\s*|\n+|$)")
_WORD = re.compile(r"\S+\s*")


def split_by_tokens(text: str, limit: int, overlap: int, count: Any) -> list[str]:
    """Parts of at most ``limit`` tokens (by ``count``), cut at sentence or paragraph ends
    where possible, each starting with up to ``overlap`` tokens of the previous part's end."""
    units: list[tuple[str, int]] = []
    for unit in (u for u in _UNIT.findall(text) if u):
        n = count(unit)
        if n <= limit:
            units.append((unit, n))
            continue
        for word in _WORD.findall(unit):  # a sentence longer than a part: cut between words
            w = count(word)
            while w > limit:  # one "word" longer than a part: cut it by characters
                cut = max(1, len(word) * limit // w)
                units.append((word[:cut], count(word[:cut])))
                word = word[cut:]
                w = count(word)
            units.append((word, w))
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit, n in units:
        if current and size + n > limit:
            chunks.append("".join(u for u, _ in current).strip())
            kept: list[tuple[str, int]] = []
            kept_size = 0
            for u, m in reversed(current):
                if kept_size + m > overlap or kept_size + m + n > limit:
                    break
                kept.insert(0, (u, m))
                kept_size += m
            current, size = kept, kept_size
        current.append((unit, n))
        size += n
    if current:
        chunks.append("".join(u for u, _ in current).strip())
    return [c for c in chunks if c]


async def run_chunk(
    step: ChunkStep, sid: str, ctx: RecordContext, llm: LLM, meter: Meter
) -> Outcome:
    value = paths.get(ctx.data, step.field)
    if value is paths.MISSING or value is None:
        raise StepFailure(f"chunk: the record has no {step.field!r}")
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    upstream = llm.upstream(step.model)

    def count(s: str) -> int:
        return count_text(s, upstream).tokens

    limit = step.chunk_tokens or _default_chunk_tokens(
        llm.context_window(step.model), step.max_tokens
    )
    into = step.into or step.field
    data = copy.deepcopy(ctx.data)
    # Off the event loop: the first count in a process builds the tokenizer (about a second).
    total_tokens = await asyncio.to_thread(count, text)
    if total_tokens <= limit:
        paths.set_(data, into, text)
        return Outcome(data, output={"parts": 1, "tokens": total_tokens}, metrics=meter.metrics())
    chunks = await asyncio.to_thread(split_by_tokens, text, limit, step.overlap_tokens, count)
    client = llm.client(meter)
    params = _params(None, step.max_tokens)
    names = ctx.names()
    gate = asyncio.Semaphore(4)

    async def summarise(i: int, chunk: str) -> str:
        prompt = templates.render(
            step.map_prompt, {**names, "chunk": chunk, "index": i + 1, "total": len(chunks)}
        )
        async with gate:
            return (await client.chat(step.model, prompt, **params)).text

    parts = list(await asyncio.gather(*(summarise(i, c) for i, c in enumerate(chunks))))
    if step.reduce_prompt:
        prompt = templates.render(step.reduce_prompt, {**names, "parts": parts})
        result = (await client.chat(step.model, prompt, **params)).text
    else:
        result = "\n\n".join(parts)
    paths.set_(data, into, result)
    output = {"parts": len(chunks), "tokens": total_tokens, "part_answers": parts}
    return Outcome(data, output=output, metrics=meter.metrics())


def _default_chunk_tokens(window: int | None, max_output: int | None) -> int:
    """A quarter of the context window (room for the prompt around the part and the answer),
    at most 32k tokens; 4k when the window is unknown."""
    if window is None:
        return 4000
    return max(200, min(32_000, (window - (max_output or 0)) // 4))
