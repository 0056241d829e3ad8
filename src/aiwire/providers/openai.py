"""OpenAI Chat Completions and Embeddings, for OpenAI itself, every OpenAI-compatible server
(vLLM, Ollama ``/v1``, Groq, Together, DeepSeek, Mistral, ...) and Azure OpenAI.

The canonical types already are OpenAI's shape, so translation is mostly serialisation; the work
here is error mapping, stream integrity (a stream is complete only at ``data: [DONE]``) and the
Azure URL/auth differences.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from aiwire import errors
from aiwire.providers import multipart
from aiwire.providers.audio import duration_seconds
from aiwire.providers.base import (
    FEATURES,
    Capabilities,
    Provider,
    Support,
    Timeouts,
    error_text,
)
from aiwire.providers.media import (
    TEXT_FORMATS,
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
    TranscriptionUsage,
)
from aiwire.providers.transport import Headers, Response, StreamedResponse
from aiwire.ratelimit import RateLimitInfo, parse_openai_headers
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    RawChatResponse,
    RawChunk,
    Usage,
)

_ALL_SUPPORTED = Capabilities(features={name: Support.SUPPORTED for name in FEATURES})

# Error `code`/`type` values that change the class a status alone would give.
_CODE_CLASSES: dict[str, type[errors.ProviderError]] = {
    "context_length_exceeded": errors.ContextWindowExceededError,
    "string_above_max_length": errors.ContextWindowExceededError,
    "content_filter": errors.ContentFilteredError,
    "content_policy_violation": errors.ContentFilteredError,
    "invalid_api_key": errors.AuthenticationError,
    "model_not_found": errors.NotFoundError,
}
# 429s that retrying cannot fix: the account is out of money, not out of rate.
_NOT_RETRYABLE_CODES = {"insufficient_quota", "billing_hard_limit_reached"}


class OpenAIProvider(Provider):
    """OpenAI and OpenAI-compatible servers. ``base_url`` includes ``/v1``, as in the SDK."""

    type = "openai"
    default_base_url = "https://api.openai.com/v1"
    capabilities = _ALL_SUPPORTED
    passes_unknown_params = True
    passthrough = True

    # -- URLs and auth (Azure overrides these) --

    def _url(self, model: str, endpoint: str) -> str:
        return f"{self.base_url}/{endpoint}"

    def _params(self) -> dict[str, str] | None:
        return None

    def _auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key.reveal()}"
        if org := self.options.get("organization"):
            headers["openai-organization"] = str(org)
        if project := self.options.get("project"):
            headers["openai-project"] = str(project)
        return headers

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True, by_alias=True)
        body.pop("stream", None)
        body.pop("stream_options", None)
        if stream:
            body["stream"] = True
            # Always ask for usage: it is what gets billed, and a stream has no other source.
            if self.options.get("stream_usage", True):
                body["stream_options"] = {"include_usage": True}
        return body

    # -- calls --

    async def _complete(self, request: ChatRequest, timeouts: Timeouts) -> tuple[Any, Response]:
        """POST a non-streamed chat request; the decoded answer (an error answer raised)."""
        self.check(request)
        data, resp = await self._post_json(
            self._url(request.model, "chat/completions"),
            self._body(request, stream=False),
            params=self._params(),
            timeouts=timeouts,
            model=request.model,
        )
        if isinstance(data, dict) and data.get("error"):
            raise self._error_from_body(data, resp.status, resp.headers, request.model)
        return data, resp

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        data, resp = await self._complete(request, timeouts)
        try:
            out = ChatResponse.model_validate(data)
        except ValueError:
            raise self._not_a_completion(request.model) from None
        out.provider = self.name
        out.request_id = _request_id(resp.headers)
        out.ratelimit = self.ratelimit(resp.headers)
        return out

    async def chat_raw(self, request: ChatRequest, timeouts: Timeouts) -> RawChatResponse:
        data, resp = await self._complete(request, timeouts)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
        ):
            raise self._not_a_completion(request.model)
        model = data.get("model")
        return RawChatResponse(
            resp.content,
            self._usage(data.get("usage"), request.model),
            model=model if isinstance(model, str) else None,
            provider=self.name,
            request_id=_request_id(resp.headers),
            ratelimit=self.ratelimit(resp.headers),
        )

    def _open(
        self, request: ChatRequest, timeouts: Timeouts
    ) -> contextlib.AbstractAsyncContextManager[StreamedResponse]:
        self.check(request)
        return self._open_stream(
            self._url(request.model, "chat/completions"),
            self._body(request, stream=True),
            params=self._params(),
            timeouts=timeouts,
            model=request.model,
        )

    def _payload(self, data: bytes, headers: Headers, model: str) -> dict[str, Any]:
        """One stream event's JSON object; a malformed event or an error event raised."""
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._bad_chunk(model, data.decode("utf-8", "replace")) from None
        if type(payload) is not dict:
            raise self._bad_chunk(model, data.decode("utf-8", "replace"))
        if payload.get("error"):
            raise self._error_from_body(payload, 200, headers, model)
        return payload

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        model = request.model
        async with self._open(request, timeouts) as resp:
            ratelimit = self.ratelimit(resp.headers)
            name = self.name
            async for event in self._sse(resp, model):
                data = event.raw
                if data.startswith(b"[DONE]"):
                    return
                payload = self._payload(data, resp.headers, model)
                payload["provider"] = name
                try:
                    chunk = ChatChunk.model_validate(payload)
                except ValueError:
                    raise self._bad_chunk(model, event.data) from None
                if ratelimit is not None:  # reported once, on the first chunk
                    chunk.ratelimit, ratelimit = ratelimit, None
                yield chunk
        raise self._incomplete(model, "data: [DONE]")

    async def stream_raw(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[RawChunk]:
        model = request.model
        async with self._open(request, timeouts) as resp:
            ratelimit = self.ratelimit(resp.headers)
            name = self.name
            async for event in self._sse(resp, model):
                data = event.raw
                if data.startswith(b"[DONE]"):
                    return
                payload = self._payload(data, resp.headers, model)
                choices = payload.get("choices", [])
                if type(choices) is not list:
                    raise self._bad_chunk(model, event.data)
                usage = payload.get("usage")
                yield RawChunk(
                    data,
                    None if usage is None else self._usage(usage, model),
                    not choices,
                    name,
                    None,
                    ratelimit,
                )
                ratelimit = None  # reported once, on the first chunk
        raise self._incomplete(model, "data: [DONE]")

    def _usage(self, usage: Any, model: str) -> Usage | None:
        if usage is None:
            return None
        try:
            return Usage.model_validate(usage)
        except ValueError:
            raise errors.ServerError(
                f"{self.name} sent a usage object aiwire cannot read",
                provider=self.name,
                model=model,
            ) from None

    def _not_a_completion(self, model: str) -> errors.ServerError:
        return errors.ServerError(
            f"{self.name} answered with a body that is not a chat completion",
            provider=self.name,
            model=model,
        )

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        body = request.model_dump(exclude_none=True)
        # Always fetch floats upstream; the gateway re-encodes for clients that asked for base64.
        body.pop("encoding_format", None)
        data, resp = await self._post_json(
            self._url(request.model, "embeddings"),
            body,
            params=self._params(),
            timeouts=timeouts,
            model=request.model,
        )
        try:
            out = EmbeddingResponse.model_validate(data)
        except ValueError:
            raise errors.ServerError(
                f"{self.name} answered with a body that is not an embeddings list",
                provider=self.name,
                model=request.model,
            ) from None
        out.provider = self.name
        out.ratelimit = self.ratelimit(resp.headers)
        return out

    async def images(self, request: ImageRequest, timeouts: Timeouts) -> ImageResponse:
        data, resp = await self._post_json(
            self._url(request.model, "images/generations"),
            request.model_dump(exclude_none=True),
            params=self._params(),
            timeouts=timeouts,
            model=request.model,
        )
        if isinstance(data, dict) and data.get("error"):
            raise self._error_from_body(data, resp.status, resp.headers, request.model)
        try:
            out = ImageResponse.model_validate(data)
        except ValueError:
            raise errors.ServerError(
                f"{self.name} answered with a body that is not an images response",
                provider=self.name,
                model=request.model,
            ) from None
        out.provider = self.name
        out.ratelimit = self.ratelimit(resp.headers)
        return out

    async def transcribe(
        self, request: TranscriptionRequest, timeouts: Timeouts
    ) -> TranscriptionResponse:
        body, content_type = multipart.encode(
            _transcription_fields(request),
            [("file", request.filename, request.content_type, request.file)],
        )
        resp = await self._post_form(
            self._url(request.model, "audio/transcriptions"),
            body,
            content_type,
            params=self._params(),
            timeouts=timeouts,
            model=request.model,
        )
        out = self._transcript(request, resp)
        out.provider = self.name
        out.ratelimit = self.ratelimit(resp.headers)
        return out

    def _transcript(self, request: TranscriptionRequest, resp: Response) -> TranscriptionResponse:
        """The answer as sent, plus its text, duration and usage where it states them (the
        file's header gives the duration otherwise)."""
        media_type = str(resp.headers.get("content-type") or "").split(";")[0].strip()
        if request.format in TEXT_FORMATS:
            return TranscriptionResponse(
                text=resp.content.decode("utf-8", "replace"),
                duration=duration_seconds(request.file),
                raw=resp.content,
                media_type=media_type or "text/plain",
            )
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise errors.ServerError(
                f"{self.name} answered with a body that is not a transcription",
                provider=self.name,
                model=request.model,
            )
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        duration = data.get("duration")
        if not isinstance(duration, int | float) and usage.get("type") == "duration":
            duration = usage.get("seconds")
        tokens = None
        if usage.get("type") == "tokens":
            tokens = TranscriptionUsage.model_validate(usage)
        return TranscriptionResponse(
            text=data["text"],
            duration=float(duration)
            if isinstance(duration, int | float)
            else duration_seconds(request.file),
            usage=tokens,
            raw=resp.content,
            media_type=media_type or "application/json",
        )

    # -- errors and limits --

    def ratelimit(self, headers: Headers) -> RateLimitInfo | None:
        info = parse_openai_headers(headers)
        return None if info.empty else info

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        decoded, text = error_text(body)
        if isinstance(decoded, dict):
            return self._error_from_body(decoded, status, headers, model)
        return self._make_error(status, text or f"HTTP {status}", None, None, None, headers, model)

    def _error_from_body(
        self, body: dict[str, Any], status: int, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        err = body.get("error")
        if isinstance(err, str):  # some compatible servers send {"error": "message"}
            return self._make_error(status, err, None, None, body, headers, model)
        if not isinstance(err, dict):
            err = body
        message = str(err.get("message") or f"HTTP {status}")
        code = err.get("code")
        code = str(code) if code is not None else None
        etype = err.get("type")
        param = err.get("param")
        if status == 200:  # an error event inside a stream: classify by its own fields
            status = _status_of(err)
        return self._make_error(
            status, message, code or (str(etype) if etype else None), param, body, headers, model
        )

    def _make_error(
        self,
        status: int,
        message: str,
        code: str | None,
        param: Any,
        body: Any,
        headers: Headers,
        model: str | None,
    ) -> errors.ProviderError:
        cls = _CODE_CLASSES.get(code or "") or errors.error_for_status(status)
        retryable: bool | None = None
        if code in _NOT_RETRYABLE_CODES:
            retryable = False
        should_retry = headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        return cls(
            message,
            status=status,
            provider=self.name,
            model=model,
            request_id=_request_id(headers),
            retryable=retryable,
            retry_after=self.retry_after(status, headers),
            code=code,
            param=str(param) if param is not None else None,
            body=body,
        )


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: ``{base_url}/openai/deployments/{deployment}/...?api-version=...`` with an
    ``api-key`` header. The model name configured for a deployment is the Azure deployment name."""

    type = "azure"
    default_base_url = ""

    def _url(self, model: str, endpoint: str) -> str:
        if not self.base_url:
            raise errors.ConfigError(
                f"provider {self.name!r} (type azure) needs base_url, e.g. "
                "https://my-resource.openai.azure.com"
            )
        return f"{self.base_url}/openai/deployments/{model}/{endpoint}"

    def _params(self) -> dict[str, str]:
        return {"api-version": str(self.options.get("api_version", "2024-10-21"))}

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self.api_key.reveal()} if self.api_key else {}


def _transcription_fields(request: TranscriptionRequest) -> list[tuple[str, str]]:
    """The form fields of a transcription, as the official SDK spells them (arrays with
    ``[]``); the file goes separately."""
    fields = [("model", request.model)]
    for name in ("language", "prompt", "response_format"):
        value = getattr(request, name)
        if value is not None:
            fields.append((name, str(value)))
    if request.temperature is not None:
        fields.append(("temperature", repr(request.temperature)))
    fields += [("timestamp_granularities[]", g) for g in request.timestamp_granularities]
    fields += [("include[]", i) for i in request.include]
    return fields + list(request.fields)


def _request_id(headers: Headers) -> str | None:
    value = headers.get("x-request-id") or headers.get("apim-request-id")
    return str(value) if value else None


def _status_of(err: dict[str, Any]) -> int:
    """A status for an error that arrived inside a 200 stream, from its type/code."""
    kind = str(err.get("type") or err.get("code") or "")
    if "rate_limit" in kind or kind in ("requests", "tokens"):
        return 429
    if "overloaded" in kind:
        return 503
    if "invalid_request" in kind:
        return 400
    return 500
