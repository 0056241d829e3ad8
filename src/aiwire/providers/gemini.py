"""Google Gemini API: ``generateContent``, ``streamGenerateContent?alt=sse`` and
``batchEmbedContents`` on generativelanguage.googleapis.com.

Three parts, kept apart: request translation (OpenAI chat → Gemini ``contents``), response mapping
(``candidates`` → ``choices``) and stream state (a Gemini stream has no terminal sentinel, so it is
complete only if a ``finishReason`` arrived before the body ended). Errors are mapped in
:meth:`GeminiProvider.map_error` by the ``google.rpc`` ``status`` string.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from aiwire import errors, netguard
from aiwire.providers import gemini_images, url_fetch
from aiwire.providers.base import Capabilities, Provider, Support, Timeouts, error_text
from aiwire.providers.media import ImageRequest, ImageResponse, ImageUsage
from aiwire.providers.transport import Headers, Transport, TransportError
from aiwire.ratelimit import parse_go_duration
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FinishReason,
    FunctionCall,
    FunctionCallDelta,
    ImagePart,
    Message,
    NamedToolChoice,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    new_id,
)

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
    "tool_choice_none",
    "json_object",
    "json_schema",
    "strict_schema",
    "image_base64",
    "temperature",
    "temperature_above_1",
    "top_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "embeddings",
    "embeddings_dimensions",
)

GEMINI_CAPABILITIES = Capabilities(
    features={
        **{name: Support.SUPPORTED for name in _SUPPORTED},
        "image_url": Support.EMULATED,
        "parallel_tool_calls_off": Support.REFUSED,  # Gemini has no switch for it
        "logprobs": Support.REFUSED,
        "user": Support.REFUSED,
    },
    notes={
        "strict_schema": (
            "`responseJsonSchema` and `parametersJsonSchema` already constrain Gemini's output "
            "to the schema; the flag needs no translation"
        ),
        "image_url": (
            "Gemini takes images inline only: aiwire downloads the https URL itself (at most "
            "20 MB, an image/* content type, no redirects, public addresses unless allowed by "
            "the provider's `fetch_allow` option) and sends it as base64 `inlineData`"
        ),
    },
)

MAX_STOP_SEQUENCES = 5
MAX_IMAGE_BYTES = 20 * 1024 * 1024

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}
#: Finish reasons that mean the model produced a broken answer; another attempt may succeed.
_FINISH_ERRORS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)

ErrorClass = type[errors.ProviderError]

_STATUS_CLASSES: dict[str, ErrorClass] = {
    "INVALID_ARGUMENT": errors.BadRequestError,
    "FAILED_PRECONDITION": errors.BadRequestError,
    "PERMISSION_DENIED": errors.PermissionDeniedError,
    "UNAUTHENTICATED": errors.AuthenticationError,
    "NOT_FOUND": errors.NotFoundError,
    "RESOURCE_EXHAUSTED": errors.RateLimitError,
    "INTERNAL": errors.ServerError,
    "UNAVAILABLE": errors.OverloadedError,
    "DEADLINE_EXCEEDED": errors.TimeoutError,
}
_CONTEXT_OVERFLOW = re.compile(r"exceeds the maximum number of tokens", re.IGNORECASE)
_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^;,]*)*;base64,", re.IGNORECASE)


class GeminiProvider(Provider):
    """The Gemini API. ``base_url`` is the host root; option ``api_version`` (``v1beta``)."""

    type = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    capabilities = GEMINI_CAPABILITIES
    #: Image downloads' own transport and allow-list (made on first use).
    _images: Transport | None = None
    _allow: netguard.AllowList | None = None

    # -- URLs and auth --

    def _url(self, model: str, method: str) -> str:
        version = str(self.options.get("api_version", "v1beta"))
        return f"{self.base_url}/{version}/models/{_model_id(model)}:{method}"

    def _auth_headers(self) -> dict[str, str]:
        # The header, never `?key=`: URLs end up in logs and error messages.
        return {"x-goog-api-key": self.api_key.reveal()} if self.api_key else {}

    # -- calls --

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        self.check(request)
        body = await self._body(request, timeouts)
        data, _ = await self._post_json(
            self._url(request.model, "generateContent"),
            body,
            timeouts=timeouts,
            model=request.model,
        )
        if not isinstance(data, dict):
            raise self._not_a_response(request.model)
        return self._response(data, request.model)

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        self.check(request)
        model = request.model
        body = await self._body(request, timeouts)
        state = _StreamState(provider=self.name, model=model)
        async with self._open_stream(
            self._url(model, "streamGenerateContent"),
            body,
            params={"alt": "sse"},
            timeouts=timeouts,
            model=model,
        ) as resp:
            async for event in self._sse(resp, model):
                payload = self._event_payload(event.data, resp.headers, model)
                for chunk in state.feed(payload, self._finish):
                    yield chunk
        if not state.complete:
            raise self._incomplete(model, "a finishReason")
        if (last := state.usage_chunk()) is not None:
            yield last

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        self._check_embedding(request)
        texts = request.inputs
        entry: dict[str, Any] = {"model": f"models/{_model_id(request.model)}"}
        if request.dimensions is not None:
            entry["outputDimensionality"] = request.dimensions
        body = {"requests": [{**entry, "content": {"parts": [{"text": t}]}} for t in texts]}
        data, _ = await self._post_json(
            self._url(request.model, "batchEmbedContents"),
            body,
            timeouts=timeouts,
            model=request.model,
        )
        vectors = _embedding_values(data)
        if vectors is None or len(vectors) != len(texts):
            raise errors.ServerError(
                f"{self.name} answered with a body that is not {len(texts)} embeddings",
                provider=self.name,
                model=request.model,
            )
        tokens = sum(len(t) // 4 or 1 for t in texts)  # Gemini reports no usage for embeddings
        return EmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=request.model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
            provider=self.name,
        )

    async def images(self, request: ImageRequest, timeouts: Timeouts) -> ImageResponse:
        """Gemini image models (``generateContent`` with image output): one call per image,
        run together (see :mod:`aiwire.providers.gemini_images`)."""
        gemini_images.check(request, self.name)
        body = gemini_images.body(request, self.name)
        url = self._url(request.model, "generateContent")

        async def one() -> Any:
            data, _ = await self._post_json(url, body, timeouts=timeouts, model=request.model)
            return data

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one()) for _ in range(request.count)]
        except* errors.ProviderError as failed:
            raise failed.exceptions[0] from None
        images = [gemini_images.image_of(t.result(), self.name, request.model) for t in tasks]
        usage = ImageUsage(
            input_tokens=sum(u.input_tokens for _, u in images),
            output_tokens=sum(u.output_tokens for _, u in images),
            total_tokens=sum(u.total_tokens for _, u in images),
        )
        return ImageResponse(data=[i for i, _ in images], usage=usage, provider=self.name)

    def _check_embedding(self, request: EmbeddingRequest) -> None:
        # `encoding_format` is the gateway's business (it re-encodes floats); anything else unknown
        # to Gemini is refused by name rather than dropped.
        refused = sorted(request.model_extra or {})
        if request.user is not None:
            refused.insert(0, "user")
        if refused:
            names = ", ".join(f"`{k}`" for k in refused)
            raise self._bad_request(
                f"{self.type} provider {self.name!r} does not support embedding parameter(s) "
                f"{names}",
                request.model,
                refused[0],
                code="unsupported_parameter",
            )
        if not request.inputs:
            raise self._bad_request("`input` must hold at least one text", request.model, "input")

    # -- request translation --

    async def _body(self, request: ChatRequest, timeouts: Timeouts) -> dict[str, Any]:
        system, contents = await self._contents(request, timeouts)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
        config = self._generation_config(request)
        if config:
            body["generationConfig"] = config
        return body

    async def _contents(
        self, request: ChatRequest, timeouts: Timeouts
    ) -> tuple[str, list[dict[str, Any]]]:
        """The system text and the alternating ``user``/``model`` turns."""
        call_names = {
            call.id: call.function.name for m in request.messages for call in m.tool_calls or []
        }
        system: list[str] = []
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(request.messages):
            if m.role in ("system", "developer"):
                system.append(self._system_text(m, i, request.model))
            elif m.role == "tool":
                turns.append(
                    {"role": "user", "parts": [self._tool_result(m, i, call_names, request)]}
                )
            elif m.role == "assistant":
                parts = await self._parts(m, i, request.model, timeouts)
                parts += self._call_parts(m, i, request.model)
                turns.append({"role": "model", "parts": parts})
            else:
                parts = await self._parts(m, i, request.model, timeouts)
                turns.append({"role": "user", "parts": parts})
        return "\n\n".join(s for s in system if s), _merge_turns(turns)

    def _system_text(self, m: Message, i: int, model: str) -> str:
        if any(isinstance(p, ImagePart) for p in m.parts):
            raise self._bad_request(
                f"messages[{i}]: Gemini's system instruction takes text only, not images",
                model,
                f"messages[{i}].content",
            )
        return m.text

    async def _parts(
        self, m: Message, i: int, model: str, timeouts: Timeouts
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(m.parts):
            if isinstance(part, TextPart):
                if part.text:
                    parts.append({"text": part.text})
            else:
                where = f"messages[{i}].content[{j}].image_url"
                parts.append(await self._image(part.image_url.url, where, model, timeouts))
        return parts

    async def _image(self, url: str, where: str, model: str, timeouts: Timeouts) -> dict[str, Any]:
        if url.startswith("data:"):
            match = _DATA_URL.match(url)
            if match is None:
                raise self._bad_request(
                    f"{where}: a data URL must look like data:<mime>;base64,<data>", model, where
                )
            data = re.sub(r"\s+", "", url[match.end() :])
            return {"inlineData": {"mimeType": match.group(1).lower(), "data": data}}
        mime, content = await self._fetch_image(url, where, model, timeouts)
        return {"inlineData": {"mimeType": mime, "data": base64.b64encode(content).decode()}}

    async def _fetch_image(
        self, url: str, where: str, model: str, timeouts: Timeouts
    ) -> tuple[str, bytes]:
        """Download an image the way Gemini cannot: https only, no redirects, 20 MB at most."""
        parts = urlsplit(url)
        # Host and path only: the query or user-info part of a signed URL may hold a token.
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"

        def fail(reason: str) -> errors.BadRequestError:
            return self._bad_request(
                f"{where}: could not fetch image {shown} to send inline to Gemini: {reason}",
                model,
                where,
                code="image_fetch_failed",
            )

        if parts.scheme != "https" or not parts.hostname:
            raise fail("only https:// URLs and base64 data URLs are accepted")
        try:
            # The SSRF guard: no loopback, private or link-local destination unless allowed.
            await url_fetch.check(url, self._fetch_allow())
            async with self._fetcher().stream(
                "GET", url, headers={}, timeout=timeouts.for_http(stream=True)
            ) as resp:
                if resp.status != 200:
                    raise fail(f"HTTP {resp.status}")
                mime = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if not mime.startswith("image/"):
                    raise fail(f"content type {mime or 'missing'!r} is not an image")
                length = resp.headers.get("content-length", "")
                if length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                    raise fail(f"{length} bytes is over the {MAX_IMAGE_BYTES} byte limit")
                content = bytearray()
                async for piece in resp.iter_bytes():
                    content += piece
                    if len(content) > MAX_IMAGE_BYTES:
                        raise fail(f"over the {MAX_IMAGE_BYTES} byte limit")
        except TransportError as exc:
            raise fail(exc.kind) from None
        except netguard.BlockedURLError as exc:
            where_allow = f"providers.{self.name}.options.{url_fetch.ALLOW_OPTION}"
            raise self._bad_request(
                f"{where}: {exc.message} (allow-list: {where_allow})",
                model,
                where,
                code="url_not_allowed",
            ) from None
        return mime, bytes(content)

    def _fetch_allow(self) -> netguard.AllowList:
        if self._allow is None:
            self._allow = url_fetch.allow_list(self.options, self.name)
        return self._allow

    def _fetcher(self) -> Transport:
        """Image downloads resolve through the SSRF guard (a transport given to the provider -
        a test's mock, a client set up your way - is used as given)."""
        if not self._owns_http:
            return self.http
        if self._images is None:
            self._images = url_fetch.GuardedTransport(self._fetch_allow())
        return self._images

    async def aclose(self) -> None:
        if self._images is not None:
            await self._images.aclose()
            self._images = None
        await super().aclose()

    def _call_parts(self, m: Message, i: int, model: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for k, call in enumerate(m.tool_calls or []):
            param = f"messages[{i}].tool_calls[{k}].function.arguments"
            try:
                args = orjson.loads(call.function.arguments or "{}")
            except orjson.JSONDecodeError:
                args = None
            if not isinstance(args, dict):
                raise self._bad_request(
                    f"messages[{i}]: the arguments of tool call {call.id!r} "
                    f"({call.function.name}) are not a JSON object",
                    model,
                    param,
                )
            part: dict[str, Any] = {"functionCall": {"name": call.function.name, "args": args}}
            signature = _signature_of(call.extra_content)
            if signature is not None:
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

    def _tool_result(
        self, m: Message, i: int, call_names: Mapping[str, str], request: ChatRequest
    ) -> dict[str, Any]:
        name = call_names.get(m.tool_call_id or "") or m.name
        if not name:
            raise self._bad_request(
                f"messages[{i}]: tool_call_id {m.tool_call_id!r} matches no tool call of an "
                "earlier assistant message; Gemini needs the function's name for a tool result",
                request.model,
                f"messages[{i}].tool_call_id",
            )
        if any(isinstance(p, ImagePart) for p in m.parts):
            raise self._bad_request(
                f"messages[{i}]: a Gemini function response takes text or JSON, not images",
                request.model,
                f"messages[{i}].content",
            )
        text = m.text
        try:
            output: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            output = text
        return {"functionResponse": {"name": name, "response": {"output": output}}}

    def _generation_config(self, request: ChatRequest) -> dict[str, Any]:
        values: dict[str, Any] = {
            "temperature": request.temperature,
            "topP": request.top_p,
            "maxOutputTokens": request.output_limit,
            "seed": request.seed,
            "candidateCount": request.n,
            "presencePenalty": request.presence_penalty,
            "frequencyPenalty": request.frequency_penalty,
        }
        config = {k: v for k, v in values.items() if v is not None}
        stop = request.stop_list
        if len(stop) > MAX_STOP_SEQUENCES:
            raise self._bad_request(
                f"Gemini accepts at most {MAX_STOP_SEQUENCES} `stop` sequences, got {len(stop)}",
                request.model,
                "stop",
            )
        if stop:
            config["stopSequences"] = stop
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            config["responseMimeType"] = "application/json"
            if fmt.type == "json_schema" and fmt.json_schema and fmt.json_schema.schema_:
                config["responseJsonSchema"] = fmt.json_schema.schema_
        return config

    # -- response mapping --

    def _response(self, data: Mapping[str, Any], model: str) -> ChatResponse:
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise self._no_candidates(data, model)
        choices = []
        for position, raw in enumerate(candidates):
            cand = _Candidate.parse(raw, position)
            calls = [
                ToolCall(
                    id=c.id or new_id("call_"),
                    function=FunctionCall(name=c.name, arguments=c.arguments),
                    extra_content=c.extra_content,
                )
                for c in cand.calls
            ]
            message = Message(
                role="assistant",
                content=cand.text if cand.text or not calls else None,
                tool_calls=calls or None,
            )
            finish = self._finish(cand.finish, bool(calls), model)
            choices.append(Choice(index=cand.index, message=message, finish_reason=finish))
        return ChatResponse(
            id=str(data.get("responseId") or new_id()),
            model=str(data.get("modelVersion") or model),
            choices=choices,
            usage=_usage(data.get("usageMetadata")),
            provider=self.name,
        )

    def _finish(self, raw: str | None, has_calls: bool, model: str) -> FinishReason | None:
        if raw is None:
            return None
        if raw in _FINISH_ERRORS:
            raise errors.ServerError(
                f"{self.name} ended the answer with finishReason {raw}: the model produced an "
                "unusable tool call; another attempt may succeed",
                provider=self.name,
                model=model,
                code=raw,
                retryable=True,
            )
        if raw == "STOP" and has_calls:
            return "tool_calls"
        return _FINISH.get(raw, "stop")

    def _no_candidates(self, data: Mapping[str, Any], model: str) -> errors.ProviderError:
        feedback = data.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if reason:
            return errors.ContentFilteredError(
                f"{self.name} blocked the prompt (blockReason {reason})",
                provider=self.name,
                model=model,
                code=str(reason),
                body=dict(data),
            )
        return self._not_a_response(model)

    def _not_a_response(self, model: str) -> errors.ProviderError:
        return errors.ServerError(
            f"{self.name} answered with a body that has no candidates",
            provider=self.name,
            model=model,
        )

    def _event_payload(self, data: str, headers: Headers, model: str) -> dict[str, Any]:
        for secret in self._secrets():  # an echoed key must not reach an error's `.body`
            data = data.replace(secret, "[REDACTED]")
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._bad_chunk(model, data) from None
        if not isinstance(payload, dict):
            raise self._bad_chunk(model, data)
        err = payload.get("error")
        if isinstance(err, dict):
            status = err.get("code")
            status = status if isinstance(status, int) and status >= 400 else 500
            raise self._error_from(err, status, headers, model, payload)
        feedback = payload.get("promptFeedback")
        if (
            not payload.get("candidates")
            and isinstance(feedback, dict)
            and feedback.get("blockReason")
        ):
            raise self._no_candidates(payload, model)
        return payload

    # -- errors --

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        for secret in self._secrets():  # keep a key out of `.body` too, should one be echoed
            body = body.replace(secret.encode(), b"[REDACTED]")
        decoded, text = error_text(body)
        if isinstance(decoded, list) and decoded:  # non-SSE streams answer with a JSON array
            decoded = decoded[0]
        err = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(err, dict):
            return self._error_from(err, status, headers, model, decoded)
        message = text or (str(err) if err else "") or f"HTTP {status}"
        return self._make_error(errors.error_for_status(status), message, status, model, decoded)

    def _error_from(
        self,
        err: Mapping[str, Any],
        status: int,
        headers: Headers,
        model: str | None,
        body: Any,
    ) -> errors.ProviderError:
        code = str(err.get("status") or "") or None
        message = str(err.get("message") or code or f"HTTP {status}")
        details = [d for d in err.get("details") or [] if isinstance(d, dict)]
        cls = _STATUS_CLASSES.get(code or "") or errors.error_for_status(status)
        if code == "INVALID_ARGUMENT":
            if any(d.get("reason") == "API_KEY_INVALID" for d in details):
                cls = errors.AuthenticationError
            elif _CONTEXT_OVERFLOW.search(message):
                cls = errors.ContextWindowExceededError
        retry_after: float | None = None
        retryable: bool | None = None
        if cls is errors.RateLimitError:
            retry_after = _retry_delay(details)
            if retry_after is None:
                retry_after = self.retry_after(429, headers)
            if _daily_quota_only(details):
                retryable = False  # per-day quotas reset at midnight Pacific: retrying is futile
        return self._make_error(
            cls,
            message,
            status,
            model,
            body,
            code=code,
            retry_after=retry_after,
            retryable=retryable,
        )

    def _make_error(
        self,
        cls: ErrorClass,
        message: str,
        status: int,
        model: str | None,
        body: Any,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> errors.ProviderError:
        return cls(
            errors.scrub(message, self._secrets()),
            status=status,
            provider=self.name,
            model=model,
            code=code,
            retry_after=retry_after,
            retryable=retryable,
            body=body,
        )

    def _bad_request(
        self, message: str, model: str, param: str, *, code: str | None = None
    ) -> errors.BadRequestError:
        return errors.BadRequestError(
            message, provider=self.name, model=model, param=param, code=code
        )


# --- translation helpers ----------------------------------------------------------------------


def _model_id(model: str) -> str:
    """The bare model id, safe inside a URL path (``models/`` prefix tolerated)."""
    return quote(model.removeprefix("models/"), safe="-._~")


def _merge_turns(turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gemini rejects two turns of the same role in a row: join them (consecutive tool results
    become one ``user`` turn of ``functionResponse`` parts). Turns without parts are dropped."""
    merged: list[dict[str, Any]] = []
    for turn in turns:
        if not turn["parts"]:
            continue
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1]["parts"].extend(turn["parts"])
        else:
            merged.append({"role": turn["role"], "parts": list(turn["parts"])})
    return merged


def _declaration(tool: Tool) -> dict[str, Any]:
    fn = tool.function
    out: dict[str, Any] = {"name": fn.name}
    if fn.description:
        out["description"] = fn.description
    if fn.parameters:
        out["parametersJsonSchema"] = fn.parameters  # full JSON Schema, passed unchanged
    return out


def _calling_config(choice: ToolChoice) -> dict[str, Any]:
    if isinstance(choice, NamedToolChoice):
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}


# --- response helpers -------------------------------------------------------------------------


@dataclass
class _Call:
    id: str | None
    name: str
    arguments: str
    signature: str | None = None

    @property
    def extra_content(self) -> dict[str, Any] | None:
        """Where the thought signature travels in OpenAI's shape (Gemini's own convention)."""
        return {"google": {"thought_signature": self.signature}} if self.signature else None


def _signature_of(extra: dict[str, Any] | None) -> str | None:
    google = (extra or {}).get("google")
    value = google.get("thought_signature") if isinstance(google, dict) else None
    return value if isinstance(value, str) and value else None


@dataclass
class _Candidate:
    """The parts of one Gemini candidate that map to an OpenAI choice."""

    index: int
    text: str = ""
    calls: list[_Call] = field(default_factory=list)
    finish: str | None = None

    @classmethod
    def parse(cls, raw: Any, position: int) -> _Candidate:
        if not isinstance(raw, dict):
            return cls(index=position)
        index = raw.get("index")  # proto3 JSON omits a zero index
        out = cls(index=index if isinstance(index, int) else position)
        finish = raw.get("finishReason")
        out.finish = str(finish) if finish else None
        content = raw.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        texts: list[str] = []
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict) or part.get("thought") is True:
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            call = part.get("functionCall")
            if isinstance(call, dict):
                args = call.get("args")
                out.calls.append(
                    _Call(
                        id=str(call["id"]) if call.get("id") else None,
                        name=str(call.get("name") or ""),
                        arguments=orjson.dumps(args if args is not None else {}).decode(),
                        signature=part.get("thoughtSignature") or None,
                    )
                )
        out.text = "".join(texts)
        return out


def _usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None

    def n(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    # promptTokenCount already includes cached tokens; thoughts are billed as output.
    return Usage.of(
        n("promptTokenCount") + n("toolUsePromptTokenCount"),
        n("candidatesTokenCount") + n("thoughtsTokenCount"),
        cached_input_tokens=n("cachedContentTokenCount"),
    )


def _embedding_values(data: Any) -> list[list[float]] | None:
    items = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    out: list[list[float]] = []
    for item in items:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            return None
        out.append([float(v) for v in values])
    return out


def _retry_delay(details: Sequence[Mapping[str, Any]]) -> float | None:
    for d in details:
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = d.get("retryDelay")
            if isinstance(delay, str):
                return parse_go_duration(delay)
            if isinstance(delay, dict):  # the proto form {"seconds": .., "nanos": ..}
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    return None


def _daily_quota_only(details: Sequence[Mapping[str, Any]]) -> bool:
    ids = [
        str(v.get("quotaId", ""))
        for d in details
        if str(d.get("@type", "")).endswith("google.rpc.QuotaFailure")
        for v in d.get("violations") or []
        if isinstance(v, dict)
    ]
    return bool(ids) and all("PerDay" in i for i in ids)


# --- stream state -----------------------------------------------------------------------------


#: Maps a raw finishReason (given whether calls were seen, and the model) to OpenAI's.
FinishFn = Callable[[str | None, bool, str], FinishReason | None]


class _StreamState:
    """Turns Gemini stream events (each a whole GenerateContentResponse) into OpenAI chunks."""

    def __init__(self, *, provider: str, model: str) -> None:
        self.provider = provider
        self.requested_model = model
        self.id: str | None = None
        self.model: str | None = None
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.calls: dict[int, int] = {}  # tool calls seen so far, per candidate
        self.usage: Usage | None = None

    @property
    def complete(self) -> bool:
        return bool(self.finished) and self.started <= self.finished

    def feed(self, payload: Mapping[str, Any], finish: FinishFn) -> list[ChatChunk]:
        self.id = self.id or str(payload.get("responseId") or new_id())
        self.model = self.model or str(payload.get("modelVersion") or self.requested_model)
        self.usage = _usage(payload.get("usageMetadata")) or self.usage
        choices = []
        for position, raw in enumerate(payload.get("candidates") or []):
            choice = self._choice(_Candidate.parse(raw, position), finish)
            if choice is not None:
                choices.append(choice)
        return [self._chunk(choices)] if choices else []

    def _choice(self, cand: _Candidate, finish: FinishFn) -> ChunkChoice | None:
        first = cand.index not in self.started
        self.started.add(cand.index)
        seen = self.calls.get(cand.index, 0)
        deltas = [
            ToolCallDelta(
                index=seen + k,
                id=c.id or new_id("call_"),
                type="function",
                function=FunctionCallDelta(name=c.name, arguments=c.arguments),
                extra_content=c.extra_content,
            )
            for k, c in enumerate(cand.calls)
        ]
        self.calls[cand.index] = seen + len(deltas)
        reason: FinishReason | None = None
        if cand.finish is not None:
            reason = finish(cand.finish, self.calls[cand.index] > 0, self.requested_model)
            self.finished.add(cand.index)
        if not (first or cand.text or deltas or reason):
            return None
        delta = Delta(
            role="assistant" if first else None,
            content=cand.text or ("" if first else None),
            tool_calls=deltas or None,
        )
        return ChunkChoice(index=cand.index, delta=delta, finish_reason=reason)

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(
            id=self.id or new_id(),
            model=self.model or self.requested_model,
            choices=choices,
            usage=usage,
            provider=self.provider,
        )

    def usage_chunk(self) -> ChatChunk | None:
        """The closing chunk, OpenAI-style (no choices), with the last reported usage."""
        return self._chunk([], self.usage) if self.usage is not None else None
