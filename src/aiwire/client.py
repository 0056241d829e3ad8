"""The SDK: :class:`AsyncClient` (the core) and :class:`Client` (a thin synchronous wrapper).

::

    from aiwire import Client
    client = Client("aiwire.yaml")
    print(client.chat("gpt-4o-mini", "Say hi").text)
    for chunk in client.stream("smart", "Tell a story"):
        print(chunk.text, end="")
    lead = client.extract("gpt-4o-mini", "Anna Berg, anna@acme.test, wants a demo", schema=Lead)
    picture = client.images("gpt-image-2", "A lighthouse at dusk").data[0].b64_json
    words = client.transcribe("gpt-4o-mini-transcribe", "meeting.wav").text
    labels = client.classify("gpt-4o-mini", ["Refund please", "Love it"], ["complaint", "praise"])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar, overload

import jsonschema
import orjson
from pydantic import BaseModel, ValidationError

from aiwire import classify as _classify
from aiwire import errors
from aiwire.classify import Classification, Labels, Method
from aiwire.config import Config, config_from_env
from aiwire.providers.media import (
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
)
from aiwire.router import Router
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    as_messages,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Messages = str | list[Message] | list[dict[str, Any]]
#: An audio file: its bytes, a path, or an open binary file.
Audio = bytes | str | Path | IO[bytes]
ConfigLike = Config | dict[str, Any] | str | Path | None


def load_config(config: ConfigLike) -> Config:
    if config is None:
        return config_from_env()
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return Config.from_dict(config)
    return Config.from_file(config)


class AsyncClient:
    """Chat, stream, embed and extract through the router (retries, fallbacks, timeouts)."""

    def __init__(self, config: ConfigLike = None, *, router: Router | None = None) -> None:
        self.router = router or Router.from_config(load_config(config))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.router.aclose()

    @property
    def models(self) -> list[str]:
        return self.router.names

    async def chat(self, model: str, messages: Messages, **params: Any) -> ChatResponse:
        """One chat completion. ``params`` are OpenAI chat parameters (tools, temperature, ...)."""
        return await self.router.chat(_request(model, messages, params))

    async def stream(
        self, model: str, messages: Messages, **params: Any
    ) -> AsyncGenerator[ChatChunk, None]:
        """Stream a chat completion chunk by chunk (``async for chunk in client.stream(...)``)."""
        request = _request(model, messages, {**params, "stream": True})
        async for chunk in self.router.stream(request):
            yield chunk

    async def embed(self, model: str, input: str | list[str], **params: Any) -> EmbeddingResponse:
        return await self.router.embed(EmbeddingRequest(model=model, input=input, **params))

    async def images(self, model: str, prompt: str, **params: Any) -> ImageResponse:
        """Generate images. ``params`` are OpenAI's (``n``, ``size``, ``quality``, ...)."""
        return await self.router.images(
            _validated(ImageRequest, model, {"model": model, "prompt": prompt, **params})
        )

    async def transcribe(
        self, model: str, file: Audio, *, filename: str | None = None, **params: Any
    ) -> TranscriptionResponse:
        """Speech to text. ``file``: bytes, a path or an open binary file; ``params`` are
        OpenAI's (``language``, ``prompt``, ``response_format``, ...)."""
        data, name = _audio(file, filename)
        request = _validated(
            TranscriptionRequest, model, {"model": model, "file": data, "filename": name, **params}
        )
        return await self.router.transcribe(request)

    async def classify(
        self,
        model: str,
        texts: str | Sequence[str],
        labels: Labels,
        *,
        method: Method = "chat",
        instructions: str | None = None,
        retries: int = 2,
        min_score: float | None = None,
        **params: Any,
    ) -> list[Classification]:
        """Label each text with one of ``labels`` (a list, or label → description).

        ``method="chat"``: ``model`` is a chat model answering under a JSON schema whose
        ``enum`` is the labels (an invalid answer is re-asked ``retries`` times).
        ``method="embeddings"``: ``model`` is an embedding model; the label whose description
        is most similar (cosine) wins, below ``min_score`` none does. See :mod:`aiwire.classify`.
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        described = _classify.label_set(labels)
        if method == "embeddings":
            return await _classify.by_embeddings(
                self, model, items, described, min_score=min_score, **params
            )
        if method != "chat":
            raise errors.BadRequestError(
                f"method must be 'chat' or 'embeddings', not {method!r}", param="method"
            )
        return await _classify.by_chat(
            self, model, items, described, instructions=instructions, retries=retries, **params
        )

    @overload
    async def extract(
        self, model: str, messages: Messages, schema: type[M], *, retries: int = 2, **params: Any
    ) -> M: ...

    @overload
    async def extract(
        self,
        model: str,
        messages: Messages,
        schema: dict[str, Any],
        *,
        retries: int = 2,
        **params: Any,
    ) -> Any: ...

    async def extract(
        self,
        model: str,
        messages: Messages,
        schema: type[BaseModel] | dict[str, Any],
        *,
        retries: int = 2,
        **params: Any,
    ) -> Any:
        """Ask for JSON matching ``schema`` (a pydantic model or a JSON schema) and validate it.

        An invalid answer is sent back with the validation error, up to ``retries`` times; then
        :class:`aiwire.errors.OutputValidationError` is raised with every error seen.
        """
        validator = _Validator(schema)
        history = as_messages(messages)
        params = {
            **params,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": validator.name, "schema": validator.json_schema},
            },
        }
        seen: list[str] = []
        output = ""
        for _ in range(retries + 1):
            response = await self.chat(model, history, **params)
            output = response.text
            try:
                return validator.validate(output)
            except _Invalid as exc:
                seen.append(exc.reason)
                history = [
                    *history,
                    Message(role="assistant", content=output),
                    Message(
                        role="user",
                        content=(
                            f"That answer is not valid: {exc.reason}\n"
                            "Reply again with only a JSON document that matches the schema."
                        ),
                    ),
                ]
        raise errors.OutputValidationError(
            f"the answer of {model!r} did not match the schema after {retries + 1} attempts: "
            f"{seen[-1]}",
            errors=seen,
            last_output=output,
            model=model,
        )


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Validator:
    def __init__(self, schema: type[BaseModel] | dict[str, Any]) -> None:
        if isinstance(schema, dict):
            self.model: type[BaseModel] | None = None
            self.json_schema = schema
            self.name = str(schema.get("title") or "response")
            jsonschema.Draft202012Validator.check_schema(schema)
            self._checker = jsonschema.Draft202012Validator(schema)
        else:
            self.model = schema
            self.json_schema = schema.model_json_schema()
            self.name = schema.__name__

    def validate(self, text: str) -> Any:
        if self.model is not None:
            try:
                return self.model.model_validate_json(text)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
                )
                raise _Invalid(problems) from None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _Invalid(f"not valid JSON ({exc})") from None
        found = sorted(self._checker.iter_errors(data), key=lambda e: list(e.path))
        if found:
            raise _Invalid(
                "; ".join(f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in found)
            )
        return data


def _validated(cls: type[M], model: str, data: dict[str, Any]) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise errors.BadRequestError(
            f"invalid request: {where}: {first['msg']}", model=model, param=where
        ) from None


def _audio(file: Audio, filename: str | None) -> tuple[bytes, str]:
    """The bytes of an audio file and the name to upload it under."""
    if isinstance(file, bytes):
        return file, filename or "audio"
    if isinstance(file, str | Path):
        path = Path(file)
        return path.read_bytes(), filename or path.name
    name = getattr(file, "name", None)
    return file.read(), filename or (Path(name).name if isinstance(name, str) else "audio")


def _request(model: str, messages: Messages, params: dict[str, Any]) -> ChatRequest:
    try:
        return ChatRequest.model_validate(
            {"model": model, "messages": as_messages(messages), **params}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise errors.BadRequestError(
            f"invalid request: {where}: {first['msg']}", model=model, param=where
        ) from None


class _LoopThread:
    """An event loop on a daemon thread, so synchronous callers can use the async core."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aiwire", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        self.loop.close()


class Client:
    """The synchronous face of :class:`AsyncClient`; same methods, blocking."""

    def __init__(self, config: ConfigLike = None, *, router: Router | None = None) -> None:
        self._loop = _LoopThread()
        self._async = AsyncClient(config, router=router)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._loop.run(self._async.aclose())
        finally:
            self._loop.close()

    @property
    def router(self) -> Router:
        return self._async.router

    @property
    def models(self) -> list[str]:
        return self._async.models

    def chat(self, model: str, messages: Messages, **params: Any) -> ChatResponse:
        return self._loop.run(self._async.chat(model, messages, **params))

    def stream(self, model: str, messages: Messages, **params: Any) -> Iterator[ChatChunk]:
        agen = self._async.stream(model, messages, **params)

        async def step() -> ChatChunk:
            return await anext(agen)

        try:
            while True:
                try:
                    yield self._loop.run(step())
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run(agen.aclose())

    def embed(self, model: str, input: str | list[str], **params: Any) -> EmbeddingResponse:
        return self._loop.run(self._async.embed(model, input, **params))

    def images(self, model: str, prompt: str, **params: Any) -> ImageResponse:
        return self._loop.run(self._async.images(model, prompt, **params))

    def transcribe(
        self, model: str, file: Audio, *, filename: str | None = None, **params: Any
    ) -> TranscriptionResponse:
        return self._loop.run(self._async.transcribe(model, file, filename=filename, **params))

    def classify(
        self,
        model: str,
        texts: str | Sequence[str],
        labels: Labels,
        *,
        method: Method = "chat",
        instructions: str | None = None,
        retries: int = 2,
        min_score: float | None = None,
        **params: Any,
    ) -> list[Classification]:
        return self._loop.run(
            self._async.classify(
                model,
                texts,
                labels,
                method=method,
                instructions=instructions,
                retries=retries,
                min_score=min_score,
                **params,
            )
        )

    def extract(
        self,
        model: str,
        messages: Messages,
        schema: type[BaseModel] | dict[str, Any],
        *,
        retries: int = 2,
        **params: Any,
    ) -> Any:
        return self._loop.run(
            self._async.extract(model, messages, schema, retries=retries, **params)
        )
