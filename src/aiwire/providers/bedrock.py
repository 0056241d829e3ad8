"""AWS Bedrock Runtime: ``Converse``, ``ConverseStream`` and, for Titan and Cohere embedding
models, ``InvokeModel``.

Requests are signed with SigV4 using credentials from AWS's standard chain (botocore, the
``bedrock`` extra), or carry a Bedrock API key (``api_key``, or ``AWS_BEARER_TOKEN_BEDROCK``).
The region comes from ``options.region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or the profile's
config; ``base_url`` (default ``https://bedrock-runtime.{region}.amazonaws.com``) overrides the
endpoint. A stream is the binary AWS event stream (:mod:`.eventstream`), complete at
``messageStop``; an exception can arrive inside it. Errors are mapped once, by the exception
name AWS sends (``x-amzn-ErrorType``, ``__type`` or the stream's ``:exception-type``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from aiwire import errors
from aiwire.providers import aws_auth
from aiwire.providers.base import Capabilities, Provider, Support, Timeouts, error_text
from aiwire.providers.bedrock_converse import (
    FINISH,
    MALFORMED,
    Converse,
    Invalid,
    StreamState,
    message_of,
    to_converse,
    usage_of,
)
from aiwire.providers.eventstream import EventMessage, EventStreamDecoder, EventStreamError
from aiwire.providers.transport import Headers, Response, StreamedResponse, TransportError
from aiwire.secrets import Secret
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FinishReason,
    new_id,
)

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
COHERE_BATCH = 96  # texts per InvokeModel call Cohere's Bedrock models accept
EMBED_CONCURRENCY = 8  # Titan embeds one text per call: this many calls in flight

_S, _E = Support.SUPPORTED, Support.EMULATED
_SUPPORTED = (
    "chat",
    "streaming",
    "stream_usage",
    "system_prompt",
    "tools",
    "tool_results",
    "parallel_tool_calls",
    "tool_choice_required",
    "tool_choice_named",
    "strict_schema",
    "image_base64",
    "temperature",
    "temperature_above_1",
    "top_p",
    "stop",
    "embeddings",
    "embeddings_dimensions",
)
BEDROCK_CAPABILITIES = Capabilities(
    features={
        **{f: _S for f in _SUPPORTED},
        "tool_choice_none": _E,
        "json_object": _E,
        "json_schema": _E,
    },
    notes={
        "tool_choice_none": "Converse has no `none` choice: aiwire leaves the tools out of the "
        "request. When the conversation already holds tool calls or results Bedrock requires "
        "the tools, so such a request is refused rather than answered with tools enabled.",
        "tool_results": "`toolResult` blocks (a JSON-object result as `json`, anything else as "
        "`text`). Bedrock requires the `tools` in every request whose conversation holds tool "
        "calls or results; a request without them is refused, naming `tools`.",
        "json_object": "a single forced tool with input schema `{type: object}`; its input is "
        "returned as the message content (JSON text), finish_reason `stop`. Cannot be combined "
        "with `tools`.",
        "json_schema": "a single forced tool named after `json_schema.name` whose input schema "
        "is the schema; its input is returned as the message content (JSON text), "
        "finish_reason `stop`. Cannot be combined with `tools`.",
        "strict_schema": "sent as `strict: true` on the `toolSpec` (models without structured "
        "tool use answer with ValidationException).",
        "temperature_above_1": "sent as given; the range is the model's (Claude: 0–1).",
        "tool_choice_required": "`toolChoice: {any: {}}`; Bedrock accepts `any` and a named "
        "tool only for models that support them (Anthropic Claude, Amazon Nova, Mistral Large).",
        "image_url": "Bedrock takes image bytes only; send a base64 data URL.",
        "embeddings": "InvokeModel on Amazon Titan (`amazon.titan-embed-*`, one text per call) "
        "and Cohere (`cohere.embed-*`, up to 96 texts per call) embedding models; other models "
        "are refused by name.",
        "embeddings_dimensions": "Titan Text Embeddings V2 only (256, 512 or 1024).",
    },
)

_ERRORS: dict[str, type[errors.ProviderError]] = {
    "ValidationException": errors.BadRequestError,
    "AccessDeniedException": errors.PermissionDeniedError,
    "UnrecognizedClientException": errors.AuthenticationError,
    "InvalidSignatureException": errors.AuthenticationError,
    "IncompleteSignatureException": errors.AuthenticationError,
    "MissingAuthenticationTokenException": errors.AuthenticationError,
    "ExpiredTokenException": errors.AuthenticationError,
    "ResourceNotFoundException": errors.NotFoundError,
    "ModelTimeoutException": errors.TimeoutError,
    "ModelErrorException": errors.ServerError,
    "ModelStreamErrorException": errors.ServerError,
    "ThrottlingException": errors.RateLimitError,
    "ServiceQuotaExceededException": errors.RateLimitError,
    "ModelNotReadyException": errors.OverloadedError,
    "InternalServerException": errors.ServerError,
    "ServiceUnavailableException": errors.OverloadedError,
    "ServiceUnavailable": errors.OverloadedError,
}
#: Other names botocore's retry logic treats as throttling.
_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
#: The status an exception implies when it arrives inside a 200 stream.
_STREAM_STATUS = {
    "ValidationException": 400,
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelStreamErrorException": 424,
}
# The one place where message text decides a class: Bedrock names an over-long prompt only
# "ValidationException", with the model's own wording.
_CONTEXT = re.compile(
    r"too long|context (?:window|length)|too many (?:input )?tokens"
    r"|max(?:imum)?[ _]tokens?\b.*\bexceed|exceed\w*\b.*\bmax(?:imum)?[ _]tokens?",
    re.IGNORECASE,
)


class BedrockProvider(Provider):
    """Bedrock Runtime's Converse API. ``request.model`` is a model id, an inference profile
    id or an ARN."""

    type = "bedrock"
    default_base_url = ""  # derived from the region
    capabilities = BEDROCK_CAPABILITIES

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._region: str | None = (
            _text_option(self.options, "region", self.name)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or None
        )
        token = os.environ.get(BEARER_ENV, "").strip()
        self._bearer = self.api_key or (Secret(token, f"env:{BEARER_ENV}") if token else None)
        self._chain: aws_auth.CredentialChain | None = None
        if self._bearer is None:
            profile = _text_option(self.options, "profile", self.name)
            self._chain = aws_auth.CredentialChain(profile=profile, provider=self.name)
        self._signing_secrets: tuple[str, ...] = ()

    # -- endpoint and signing --

    async def _endpoint(self) -> tuple[str, str]:
        """The base URL and the region (which SigV4 signs into every request)."""
        if self._region is None and self._chain is not None:
            self._region = await self._chain.config_region()
        region = self._region
        if region is None and (self._chain is not None or not self.base_url):
            raise errors.ConfigError(
                f"providers.{self.name}: no AWS region: set options.region, AWS_REGION or a "
                "region in the AWS profile's config"
            )
        base = self.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        return base, region or ""

    async def _url(self, model: str, operation: str) -> tuple[str, str]:
        base, region = await self._endpoint()
        # ':' stays as it is: aiohttp would decode %3A anyway, and the signature must cover
        # the path exactly as sent. A '/' (in ARNs) is encoded, and stays encoded.
        return f"{base}/model/{quote(model, safe=':')}/{operation}", region

    async def _headers(self, url: str, region: str, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.headers}
        if self._bearer is not None:
            headers["authorization"] = f"Bearer {self._bearer.reveal()}"
            return headers
        assert self._chain is not None
        creds = await self._chain.credentials()
        self._signing_secrets = creds.secrets()
        headers.update(aws_auth.sign("POST", url, headers, body, creds, region, SERVICE))
        return headers

    def _secrets(self) -> tuple[str, ...]:
        bearer = (self._bearer.reveal(),) if self._bearer is not None else ()
        return bearer + self._signing_secrets

    async def _post(
        self, model: str, operation: str, body: Mapping[str, Any], timeouts: Timeouts
    ) -> tuple[Any, Response]:
        url, region = await self._url(model, operation)
        content = orjson.dumps(body)
        headers = await self._headers(url, region, content)
        try:
            resp = await self.http.request(
                "POST",
                url,
                content=content,
                headers=headers,
                timeout=timeouts.for_http(stream=False),
            )
        except TransportError as exc:
            raise self._transport_error(exc, model) from None
        return self._json_answer(resp, model), resp

    @contextlib.asynccontextmanager
    async def _open(
        self, model: str, body: Mapping[str, Any], timeouts: Timeouts
    ) -> AsyncIterator[StreamedResponse]:
        url, region = await self._url(model, "converse-stream")
        content = orjson.dumps(body)
        headers = await self._headers(url, region, content)
        try:
            async with self.http.stream(
                "POST",
                url,
                content=content,
                headers=headers,
                timeout=timeouts.for_http(stream=True),
            ) as resp:
                if resp.status >= 400:
                    raise self.map_error(resp.status, await resp.read(), resp.headers, model)
                yield resp
        except TransportError as exc:
            raise self._transport_error(exc, model) from None

    # -- chat --

    def _translate(self, request: ChatRequest) -> Converse:
        self.check(request)
        try:
            return to_converse(request)
        except Invalid as exc:
            raise errors.BadRequestError(
                exc.message,
                provider=self.name,
                model=request.model,
                param=exc.param,
                code="invalid_request",
            ) from None

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        plan = self._translate(request)
        model = request.model
        data, resp = await self._post(model, "converse", plan.body, timeouts)
        output = data.get("output") if isinstance(data, dict) else None
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise errors.ServerError(
                f"{self.name} answered with a body that is not a Converse response",
                provider=self.name,
                model=model,
                status=resp.status,
            )
        finish = self._finish(data.get("stopReason"), plan.json_tool is not None, model)
        return ChatResponse(
            id=new_id(),
            model=model,
            choices=[Choice(message=message_of(content, plan.json_tool), finish_reason=finish)],
            usage=usage_of(data.get("usage")),
            provider=self.name,
            request_id=_request_id(resp.headers),
        )

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        plan = self._translate(request)
        model = request.model
        state = StreamState(
            provider=self.name,
            model=model,
            json_tool=plan.json_tool,
            finish=lambda raw, json_mode: self._finish(raw, json_mode, model),
        )
        decoder = EventStreamDecoder()
        async with self._open(model, plan.body, timeouts) as resp:
            try:
                async for piece in resp.iter_bytes():
                    for message in self._decode(decoder, piece, model):
                        payload = self._event(message, resp.headers, model)
                        for chunk in state.feed(message.event_type, payload):
                            yield chunk
            except TransportError as exc:
                if not state.stopped:  # cut after messageStop: only the usage event is lost
                    raise errors.IncompleteStreamError(
                        f"stream from {self.name} was cut ({exc.kind}); the answer is incomplete",
                        provider=self.name,
                        model=model,
                    ) from None
        if not state.stopped:
            raise self._incomplete(model, "messageStop")

    def _decode(
        self, decoder: EventStreamDecoder, piece: bytes, model: str
    ) -> Iterator[EventMessage]:
        """The messages ``piece`` completes; a corrupt one raises when reached, so the events
        before it (from the same read) are still delivered."""
        try:
            yield from decoder.feed(piece)
        except EventStreamError as exc:
            raise errors.ServerError(
                f"{self.name} sent a corrupt event stream: {exc}",
                provider=self.name,
                model=model,
                retryable=True,
            ) from None

    def _event(self, message: EventMessage, headers: Headers, model: str) -> dict[str, Any]:
        """One event's JSON payload; an exception event raised as its typed error."""
        if message.message_type == "exception":
            raw = str(message.headers.get(":exception-type") or "internalServerException")
            name = raw[:1].upper() + raw[1:]  # throttlingException → ThrottlingException
            payload = _loads(message.payload)
            text = (payload.get("message") or payload.get("Message")) if payload else None
            status = _STREAM_STATUS.get(name, 500)
            raise self._make_error(status, name, str(text or name), payload, headers, model)
        if message.message_type == "error":
            code = str(message.headers.get(":error-code") or "InternalServerException")
            text = str(message.headers.get(":error-message") or code)
            raise self._make_error(_STREAM_STATUS.get(code, 500), code, text, None, headers, model)
        payload = _loads(message.payload)
        if payload is None:
            raise self._bad_chunk(model, message.payload.decode("utf-8", "replace"))
        return payload

    def _finish(self, raw: Any, json_mode: bool, model: str) -> FinishReason:
        reason = str(raw) if raw else "end_turn"
        if reason in MALFORMED:
            raise errors.ServerError(
                f"{self.name} ended the answer with stopReason {reason}: the model produced an "
                "unusable answer; another attempt may succeed",
                provider=self.name,
                model=model,
                code=reason,
                retryable=True,
            )
        finish = FINISH.get(reason, "stop")
        return "stop" if json_mode and finish == "tool_calls" else finish

    # -- embeddings --

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        model = request.model
        family = _embedding_family(model)
        self._check_embedding(request, family)
        texts = request.inputs
        if family == "cohere":
            vectors, tokens = await self._cohere(request, texts, timeouts)
        else:
            vectors, tokens = await self._titan(request, texts, timeouts)
        return EmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
            provider=self.name,
        )

    def _check_embedding(self, request: EmbeddingRequest, family: str | None) -> None:
        model = request.model
        refused = sorted(request.model_extra or {})
        if request.user is not None:
            refused.insert(0, "user")
        if family is None:
            message = (
                f"bedrock provider {self.name!r} embeds with Amazon Titan (amazon.titan-embed-*) "
                f"and Cohere (cohere.embed-*) models; {model!r} is neither"
            )
            raise self._bad_request(message, model, "model", "unsupported_model")
        if request.dimensions is not None and not (
            family == "titan-v2" and request.dimensions in TITAN_V2_DIMENSIONS
        ):
            refused.insert(0, "dimensions")
        if refused:
            names = ", ".join(f"`{k}`" for k in refused)
            message = (
                f"bedrock provider {self.name!r} cannot honour embedding parameter(s) {names} "
                f"for {model!r} (`dimensions`: Titan Text Embeddings V2 only, 256, 512 or 1024)"
            )
            raise self._bad_request(message, model, refused[0], "unsupported_parameter")
        if not request.inputs:
            raise self._bad_request("`input` must hold at least one text", model, "input")

    async def _titan(
        self, request: EmbeddingRequest, texts: list[str], timeouts: Timeouts
    ) -> tuple[list[list[float]], int]:
        slots = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def one(text: str) -> tuple[list[float], int]:
            body: dict[str, Any] = {"inputText": text}
            if request.dimensions is not None:
                body["dimensions"] = request.dimensions
            async with slots:
                data, _ = await self._post(request.model, "invoke", body, timeouts)
            vector = _vector(data.get("embedding") if isinstance(data, dict) else None)
            count = data.get("inputTextTokenCount") if isinstance(data, dict) else None
            if vector is None:
                raise self._not_embeddings(request.model, 1)
            return vector, count if isinstance(count, int) else 0

        results = await asyncio.gather(*(one(t) for t in texts))
        return [v for v, _ in results], sum(n for _, n in results)

    async def _cohere(
        self, request: EmbeddingRequest, texts: list[str], timeouts: Timeouts
    ) -> tuple[list[list[float]], int]:
        input_type = str(self.options.get("cohere_input_type", "search_document"))
        vectors: list[list[float]] = []
        for start in range(0, len(texts), COHERE_BATCH):
            batch = texts[start : start + COHERE_BATCH]
            body = {"texts": batch, "input_type": input_type}
            data, _ = await self._post(request.model, "invoke", body, timeouts)
            found = data.get("embeddings") if isinstance(data, dict) else None
            if isinstance(found, dict):  # the shape when embedding_types was asked for
                found = found.get("float")
            parsed = [_vector(v) for v in found] if isinstance(found, list) else []
            if len(parsed) != len(batch):
                raise self._not_embeddings(request.model, len(batch))
            for vector in parsed:
                if vector is None:
                    raise self._not_embeddings(request.model, len(batch))
                vectors.append(vector)
        tokens = sum(len(t) // 4 or 1 for t in texts)  # Cohere on Bedrock reports no usage
        return vectors, tokens

    def _not_embeddings(self, model: str, count: int) -> errors.ServerError:
        return errors.ServerError(
            f"{self.name} answered with a body that is not {count} embedding(s)",
            provider=self.name,
            model=model,
        )

    def _bad_request(
        self, message: str, model: str, param: str, code: str | None = None
    ) -> errors.BadRequestError:
        return errors.BadRequestError(
            message, provider=self.name, model=model, param=param, code=code
        )

    # -- errors --

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        for secret in self._secrets():  # keep a credential out of `.body`, should one be echoed
            body = body.replace(secret.encode(), b"[REDACTED]")
        decoded, text = error_text(body)
        name = _error_name(headers, decoded)
        message = text or f"HTTP {status}"
        if isinstance(decoded, dict):
            found = decoded.get("message") or decoded.get("Message")
            message = str(found) if found else (name or message)
        return self._make_error(status, name, message, decoded, headers, model)

    def _make_error(
        self,
        status: int,
        name: str | None,
        message: str,
        body: Any,
        headers: Headers,
        model: str | None,
    ) -> errors.ProviderError:
        cls = _ERRORS.get(name or "")
        if cls is None:
            cls = errors.RateLimitError if name in _THROTTLING else errors.error_for_status(status)
        if cls is errors.BadRequestError and _CONTEXT.search(message):
            cls = errors.ContextWindowExceededError
        retryable: bool | None = None
        if name == "ServiceQuotaExceededException":
            retryable = False  # an account quota: waiting a moment does not lift it
        return cls(
            errors.scrub(f"{name}: {message}" if name else message, self._secrets()),
            status=status,
            provider=self.name,
            model=model,
            request_id=_request_id(headers),
            retryable=retryable,
            retry_after=self.retry_after(status, headers),
            code=name,
            body=body,
        )


def _text_option(options: Mapping[str, Any], key: str, provider: str) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.ConfigError(f"providers.{provider}.options.{key} must be a string")
    return value


def _error_name(headers: Headers, body: Any) -> str | None:
    """The AWS exception name: ``x-amzn-ErrorType: ThrottlingException:http://…`` or a body
    ``__type`` such as ``com.amazon.coral.service#ThrottlingException``."""
    raw = headers.get("x-amzn-errortype")  # transports' header maps ignore case
    if not raw and isinstance(body, dict):
        raw = body.get("__type") or body.get("code")
    if not raw:
        return None
    return str(raw).split(":", 1)[0].rsplit("#", 1)[-1] or None


def _request_id(headers: Headers) -> str | None:
    value = headers.get("x-amzn-requestid")
    return str(value) if value else None


def _loads(payload: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _embedding_family(model: str) -> str | None:
    lowered = model.lower()
    if "titan-embed" in lowered:
        return "titan-v2" if "titan-embed-text-v2" in lowered else "titan"
    if "cohere.embed" in lowered:
        return "cohere"
    return None


def _vector(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not all(isinstance(x, int | float) for x in value):
        return None
    return [float(x) for x in value]
