"""Text Generation Inference's native API: ``POST {base_url}/generate`` and
``/generate_stream`` (``type: huggingface`` with ``options.api: native``).

A text-generation endpoint takes a prompt, not messages, so the chat is rendered with
``options.chat_template``: ``raw`` (the default: one user message, sent as it is), ``chatml``
or ``llama3``. Sampling parameters map to TGI's ``parameters``; ``response_format`` becomes a
JSON grammar, which TGI enforces while decoding. Usage comes from the ``x-prompt-tokens`` /
``x-generated-tokens`` headers and the final event's ``details``. A stream is complete only at
its final event (the one carrying ``generated_text``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiwire import errors
from aiwire.providers.base import Capabilities, Support, Timeouts
from aiwire.providers.huggingface import HuggingFaceProvider
from aiwire.providers.transport import Headers
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    ImagePart,
    Message,
    RawChatResponse,
    RawChunk,
    Usage,
    new_id,
)

TEMPLATES = ("raw", "chatml", "llama3")
_SUPPORTED = (
    "chat",
    "streaming",
    "stream_usage",
    "system_prompt",
    "temperature",
    "temperature_above_1",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "json_object",
    "json_schema",
    "strict_schema",
)
TGI_CAPABILITIES = Capabilities(features={f: Support.SUPPORTED for f in _SUPPORTED})
_FINISH: dict[str, FinishReason] = {
    "length": "length",
    "eos_token": "stop",
    "stop_sequence": "stop",
}


class _Invalid(Exception):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class TGIProvider(HuggingFaceProvider):
    """TGI's own protocol. ``base_url`` is the server root (the adapter adds ``/generate``)."""

    capabilities = TGI_CAPABILITIES
    passes_unknown_params = False
    passthrough = False

    def __init__(self, **kwargs: Any) -> None:
        name = kwargs.get("name") or self.type
        if not kwargs.get("base_url"):
            raise errors.ConfigError(
                f"providers.{name}: options.api: native needs base_url, the root of a TGI "
                "server or Inference Endpoint (the Inference Providers router has no /generate)"
            )
        super().__init__(**kwargs)
        self.template = str(self.options.get("chat_template", "raw"))
        if self.template not in TEMPLATES:
            raise errors.ConfigError(
                f"providers.{self.name}.options.chat_template must be one of "
                f"{', '.join(TEMPLATES)}, got {self.template!r}"
            )
        default = self.options.get("default_max_tokens")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int)):
            raise errors.ConfigError(
                f"providers.{self.name}.options.default_max_tokens must be an integer"
            )
        self.default_max_tokens: int | None = default

    # -- request --

    def _generate_body(self, request: ChatRequest) -> dict[str, Any]:
        self.check(request)
        try:
            inputs = render(request.messages, self.template)
            parameters = self._parameters(request)
        except _Invalid as exc:
            raise errors.BadRequestError(
                exc.message,
                provider=self.name,
                model=request.model,
                param=exc.param,
                code="invalid_request",
            ) from None
        return {"inputs": inputs, "parameters": parameters}

    def _parameters(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"details": True}
        limit = request.output_limit
        if limit is None:
            limit = self.default_max_tokens
        if limit is not None:
            params["max_new_tokens"] = limit
        if request.temperature is not None and request.temperature > 0:
            # TGI samples only when asked; temperature 0 is its default greedy decoding.
            params["temperature"] = request.temperature
            params["do_sample"] = True
        if request.top_p is not None:
            if request.top_p <= 0:
                raise _Invalid("TGI needs 0 < top_p; for greedy decoding omit it", "top_p")
            if request.top_p < 1:  # top_p 1 keeps every token: TGI refuses it as a no-op
                params["top_p"] = request.top_p
                params["do_sample"] = True
        if request.stop_list:
            params["stop"] = request.stop_list
        if request.seed is not None:
            params["seed"] = request.seed
        if request.frequency_penalty is not None:
            params["frequency_penalty"] = request.frequency_penalty
        rf = request.response_format
        if rf is not None and rf.type != "text":
            schema = rf.json_schema.schema_ if rf.json_schema is not None else None
            params["grammar"] = {"type": "json", "value": schema or {"type": "object"}}
        return params

    # -- calls --

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        body = self._generate_body(request)
        data, resp = await self._post_json(
            f"{self.base_url}/generate", body, timeouts=timeouts, model=request.model
        )
        if isinstance(data, list) and len(data) == 1:  # TGI's compat route wraps it in a list
            data = data[0]
        text = data.get("generated_text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise errors.ServerError(
                f"{self.name} answered with a body that has no generated_text",
                provider=self.name,
                model=request.model,
                status=resp.status,
            )
        details = data.get("details") if isinstance(data.get("details"), dict) else {}
        generated = _int(details.get("generated_tokens")) or _int(
            resp.headers.get("x-generated-tokens")
        )
        prompt = _int(resp.headers.get("x-prompt-tokens")) or len(details.get("prefill") or [])
        return ChatResponse(
            id=new_id(),
            model=request.model,
            choices=[
                Choice(
                    message=Message(role="assistant", content=text),
                    finish_reason=_FINISH.get(str(details.get("finish_reason")), "stop"),
                )
            ],
            usage=Usage.of(prompt, generated),
            provider=self.name,
            request_id=_request_id(resp.headers),
        )

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        body = self._generate_body(request)
        model = request.model
        chunk_id = new_id()
        first = True

        def chunk(delta: Delta, finish: FinishReason | None = None) -> ChatChunk:
            choice = ChunkChoice(delta=delta, finish_reason=finish)
            return ChatChunk(id=chunk_id, model=model, choices=[choice], provider=self.name)

        url = f"{self.base_url}/generate_stream"
        async with self._open_stream(url, body, timeouts=timeouts, model=model) as resp:
            async for event in self._sse(resp, model):
                payload = self._payload(event.raw, resp.headers, model)
                token = payload.get("token")
                text = ""
                if isinstance(token, dict) and not token.get("special"):
                    text = str(token.get("text") or "")
                if first or text:
                    yield chunk(Delta(role="assistant" if first else None, content=text))
                    first = False
                details = payload.get("details")
                if payload.get("generated_text") is None and not isinstance(details, dict):
                    continue
                details = details if isinstance(details, dict) else {}
                yield chunk(Delta(), _FINISH.get(str(details.get("finish_reason")), "stop"))
                prompt = _int(details.get("input_length")) or _int(
                    resp.headers.get("x-prompt-tokens")
                )
                usage = Usage.of(prompt, _int(details.get("generated_tokens")))
                yield ChatChunk(id=chunk_id, model=model, usage=usage, provider=self.name)
                return
        raise self._incomplete(model, "its final event (generated_text)")

    async def chat_raw(self, request: ChatRequest, timeouts: Timeouts) -> RawChatResponse:
        raise NotImplementedError("TGI's native API has no OpenAI pass-through")

    def stream_raw(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[RawChunk]:
        raise NotImplementedError("TGI's native API has no OpenAI pass-through")

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        raise errors.BadRequestError(
            f"huggingface provider {self.name!r} uses TGI's native API, which has no "
            "embeddings; point a provider with options.api: openai at a Text Embeddings "
            "Inference server",
            provider=self.name,
            model=request.model,
            param="model",
        )


def render(messages: list[Message], template: str) -> str:
    """The prompt for ``messages`` under a chat template."""
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if m.role == "tool" or m.tool_calls:
            raise _Invalid(
                f"messages[{i}]: TGI's native API has no tools; use options.api: openai",
                f"messages[{i}]",
            )
        if any(isinstance(p, ImagePart) for p in m.parts):
            raise _Invalid(
                f"messages[{i}]: TGI's native API takes text only", f"messages[{i}].content"
            )
        role = "system" if m.role in ("system", "developer") else m.role
        turns.append((role, m.text))
    if template == "raw":
        if len(turns) != 1 or turns[0][0] != "user":
            raise _Invalid(
                "options.chat_template raw sends a single user message as the prompt, and this "
                f"request has {len(turns)} message(s) ({', '.join(r for r, _ in turns)}); set "
                "options.chat_template (chatml, llama3), or use options.api: openai so TGI "
                "applies the model's own template",
                "messages",
            )
        return turns[0][1]
    if template == "chatml":
        body = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)
        return body + "<|im_start|>assistant\n"
    # llama3; the tokenizer adds <|begin_of_text|> itself
    body = "".join(
        f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>" for role, text in turns
    )
    return body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _request_id(headers: Headers) -> str | None:
    value = headers.get("x-request-id")
    return str(value) if value else None
