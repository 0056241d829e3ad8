"""Gemini on Google Cloud Vertex AI.

The request and response bodies are the Gemini API's, so translation, streaming and error
mapping are :class:`~aiwire.providers.gemini.GeminiProvider`'s. What differs is here: the URL
(``{base_url}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:
{method}``, ``base_url`` defaulting to the location's regional host), OAuth access tokens in
place of an API key (:mod:`.google_auth`, refreshed before they expire), and embeddings through
Vertex's ``:predict``.

Options: ``project`` (or ``GOOGLE_CLOUD_PROJECT``, or the project of the credentials),
``location`` (or ``GOOGLE_CLOUD_LOCATION``; default ``us-central1``), ``credentials_file``
(default: Application Default Credentials), ``api_version`` (default ``v1``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from aiwire import errors
from aiwire.providers.base import Capabilities, Timeouts
from aiwire.providers.gemini import GEMINI_CAPABILITIES, GeminiProvider, _model_id
from aiwire.providers.google_auth import AccessToken, GoogleCredentials, TokenSource
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)

DEFAULT_LOCATION = "us-central1"
EMBED_BATCH = 250  # instances per :predict call the text-embedding models accept
EMBED_CONCURRENCY = 8

VERTEX_CAPABILITIES = Capabilities(
    features=GEMINI_CAPABILITIES.features,
    notes={
        **GEMINI_CAPABILITIES.notes,
        "chat": "Gemini on Vertex AI: OAuth access tokens from `options.credentials_file` or "
        "Application Default Credentials, refreshed 5 minutes before they expire.",
        "embeddings": "Vertex `:predict` (`instances[].content`); up to 250 texts per call, "
        "one for `gemini-embedding-*` models, which accept no more.",
    },
)


class VertexProvider(GeminiProvider):
    """Gemini models on Vertex AI. ``token_source`` replaces google-auth (tests, custom auth)."""

    type = "vertex"
    default_base_url = ""  # the location's host
    capabilities = VERTEX_CAPABILITIES

    def __init__(self, *, token_source: TokenSource | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.api_key is not None:
            raise errors.ConfigError(
                f"providers.{self.name}: type vertex authenticates with OAuth "
                "(options.credentials_file or Application Default Credentials), not an API "
                "key; for a Gemini API key use type: gemini"
            )
        self.location = (
            _text(self.options, "location", self.name)
            or os.environ.get("GOOGLE_CLOUD_LOCATION")
            or DEFAULT_LOCATION
        )
        self.project = _text(self.options, "project", self.name) or os.environ.get(
            "GOOGLE_CLOUD_PROJECT"
        )
        if not self.base_url:
            host = "aiplatform.googleapis.com"
            self.base_url = (
                f"https://{host if self.location == 'global' else f'{self.location}-{host}'}"
            )
        self._tokens = token_source or GoogleCredentials(
            provider=self.name,
            credentials_file=_text(self.options, "credentials_file", self.name),
        )
        self._token: AccessToken | None = None
        self._built: tuple[AccessToken, dict[str, str]] | None = None

    # -- URLs and auth --

    def _url(self, model: str, method: str) -> str:
        project = self.project or (self._token.project if self._token else None)
        if not project:
            raise errors.ConfigError(
                f"providers.{self.name}: no Google Cloud project: set options.project or "
                "GOOGLE_CLOUD_PROJECT, or use credentials that name one"
            )
        version = str(self.options.get("api_version", "v1"))
        return (
            f"{self.base_url}/{version}/projects/{quote(project, safe='')}/locations/"
            f"{quote(self.location, safe='')}/publishers/google/models/{_model_id(model)}:{method}"
        )

    async def _authorize(self) -> None:
        self._token = await self._tokens.token()

    def _auth_headers(self) -> dict[str, str]:
        return {}  # the bearer token changes: see _request_headers

    def _request_headers(self) -> Mapping[str, str]:
        """Rebuilt whenever the token changes (the base class would keep the first forever)."""
        token = self._token
        if token is None:
            raise RuntimeError("VertexProvider: a request was sent before _authorize()")
        built = self._built
        if built is None or built[0] is not token:
            headers = {
                "content-type": "application/json",
                **self.headers,
                "authorization": f"Bearer {token.value}",
            }
            named = {k.lower() for k in self.headers}
            if token.quota_project and "x-goog-user-project" not in named:
                headers["x-goog-user-project"] = token.quota_project
            built = self._built = (token, headers)
        return built[1]

    def _secrets(self) -> tuple[str, ...]:
        return (self._token.value,) if self._token is not None else ()

    # -- calls --

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        self.check(request)  # refuse before minting a token
        await self._authorize()
        return await super().chat(request, timeouts)

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        self.check(request)
        await self._authorize()
        async for chunk in super().stream(request, timeouts):
            yield chunk

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        self._check_embedding(request)
        await self._authorize()
        model = request.model
        texts = request.inputs
        size = 1 if _model_id(model).startswith("gemini-embedding") else EMBED_BATCH
        parameters = (
            {"outputDimensionality": request.dimensions} if request.dimensions is not None else {}
        )
        slots = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def batch(chunk: list[str]) -> list[tuple[list[float], int]]:
            body: dict[str, Any] = {"instances": [{"content": t} for t in chunk]}
            if parameters:
                body["parameters"] = parameters
            async with slots:
                data, _ = await self._post_json(
                    self._url(model, "predict"), body, timeouts=timeouts, model=model
                )
            found = _predictions(data)
            if found is None or len(found) != len(chunk):
                raise errors.ServerError(
                    f"{self.name} answered with a body that is not {len(chunk)} embeddings",
                    provider=self.name,
                    model=model,
                )
            return found

        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        results = [item for part in await asyncio.gather(*map(batch, batches)) for item in part]
        tokens = sum(n for _, n in results)
        return EmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, (v, _) in enumerate(results)],
            model=model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
            provider=self.name,
        )


def _text(options: Mapping[str, Any], key: str, provider: str) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.ConfigError(f"providers.{provider}.options.{key} must be a string")
    return value


def _predictions(data: Any) -> list[tuple[list[float], int]] | None:
    """(vector, token count) per ``predictions[].embeddings``."""
    items = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    out: list[tuple[list[float], int]] = []
    for item in items:
        emb = item.get("embeddings") if isinstance(item, dict) else None
        values = emb.get("values") if isinstance(emb, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
            return None
        stats = emb.get("statistics") if isinstance(emb, dict) else None
        count = stats.get("token_count") if isinstance(stats, dict) else None
        out.append(
            ([float(v) for v in values], int(count) if isinstance(count, int | float) else 0)
        )
    return out
