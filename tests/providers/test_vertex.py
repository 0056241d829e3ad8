"""Vertex AI adapter: URLs, OAuth tokens (minted from a throwaway service-account key by a local
token endpoint that checks the JWT signature) and their refresh, Vertex's documented payloads."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.cloud import ServiceAccount, TokenEndpoint, make_service_account
from tests.providers.support import T, Upstream, fold, read_fixture

from aiwire import errors
from aiwire.providers import google_auth
from aiwire.providers.google_auth import AccessToken
from aiwire.providers.vertex import VertexProvider
from aiwire.secrets import Secret
from aiwire.types import ChatChunk, ChatRequest, EmbeddingRequest

GENERATE = (
    "/v1/projects/sim-project/locations/us-central1/publishers/google/models/"
    "gemini-2.5-flash:generateContent"
)


def fixture(name: str) -> bytes:
    return read_fixture("vertex", name)


class Tokens:
    """An injected token source: hands out ``values`` in turn, counting calls."""

    def __init__(self, *values: str, project: str | None = None, quota: str | None = None):
        self.values, self.project, self.quota, self.calls = list(values), project, quota, 0

    async def token(self) -> AccessToken:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return AccessToken(value, None, self.project, self.quota)


def provider(
    up: Callable[[httpx.Request], httpx.Response], tokens: Any = None, **kw: Any
) -> VertexProvider:
    kw.setdefault("options", {"project": "sim-project"})
    return VertexProvider(
        name="vx",
        token_source=tokens or Tokens("ya29.static-token"),
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
        **kw,
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", "gemini-2.5-flash")
    return ChatRequest(**kw)


@pytest.fixture(autouse=True)
def no_machine_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud ADC file
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe the metadata server


# --- URLs and headers -------------------------------------------------------------------------


async def test_url_project_location_and_bearer_token() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    resp = await provider(up).chat(chat(), T)
    sent = up.posts[0]
    assert str(sent.url) == f"https://us-central1-aiplatform.googleapis.com{GENERATE}"
    assert sent.headers["authorization"] == "Bearer ya29.static-token"
    assert "x-goog-api-key" not in sent.headers and not sent.url.params
    assert up.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert resp.text == "Retries with backoff keep integrations calm."
    assert resp.usage is not None and resp.usage.total_tokens == 38  # thoughts are output


@pytest.mark.parametrize(
    ("kw", "env", "url"),
    [
        (
            {"options": {"project": "p1", "location": "global"}},
            {},
            "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/",
        ),
        (
            {"options": {"location": "europe-west4", "api_version": "v1beta1"}},
            {"GOOGLE_CLOUD_PROJECT": "env-project"},
            "https://europe-west4-aiplatform.googleapis.com/v1beta1/projects/env-project/"
            "locations/europe-west4/",
        ),
        (
            {"options": {"project": "p2"}, "base_url": "http://127.0.0.1:9/"},
            {"GOOGLE_CLOUD_LOCATION": "asia-northeast1"},
            "http://127.0.0.1:9/v1/projects/p2/locations/asia-northeast1/",
        ),
    ],
)
async def test_location_host_api_version_and_base_url(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], env: dict[str, str], url: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    up = Upstream(body=fixture("chat_text.json"))
    await provider(up, **kw).chat(chat(model="models/gemini-2.5-flash"), T)
    assert str(up.posts[0].url) == url + "publishers/google/models/gemini-2.5-flash:generateContent"


async def test_project_from_the_credentials_and_quota_project_header() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    tokens = Tokens("t1", project="cred-project", quota="billing-project")
    await provider(up, tokens, options={}).chat(chat(), T)
    assert "/projects/cred-project/" in str(up.posts[0].url)
    assert up.posts[0].headers["x-goog-user-project"] == "billing-project"


async def test_a_new_token_replaces_the_old_one_in_the_headers() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    p = provider(up, Tokens("ya29.first", "ya29.second"), headers={"x-team": "data"})
    await p.chat(chat(), T)
    await p.chat(chat(), T)
    assert [r.headers["authorization"] for r in up.posts] == [
        "Bearer ya29.first",
        "Bearer ya29.second",
    ]
    assert all(r.headers["x-team"] == "data" for r in up.posts)


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="type: gemini"):
        VertexProvider(name="vx", api_key=Secret("AIzaSy-key"), token_source=Tokens("t"))
    with pytest.raises(errors.ConfigError, match=r"nope\.json"):
        VertexProvider(name="vx", options={"credentials_file": str(tmp_path / "nope.json")})


async def test_no_project_anywhere_is_a_config_error() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    with pytest.raises(errors.ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        await provider(up, options={}).chat(chat(), T)
    assert not up.requests


def test_missing_google_auth_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    google_auth.google_auth.cache_clear()
    monkeypatch.setitem(sys.modules, "google.auth", None)
    try:
        with pytest.raises(errors.ConfigError, match=r"aiwire\[vertex\]"):
            VertexProvider(name="vx", options={"project": "p"})
    finally:
        google_auth.google_auth.cache_clear()


async def test_refused_params_are_refused_before_a_token_is_minted() -> None:
    tokens = Tokens("t")
    with pytest.raises(errors.BadRequestError, match="logprobs"):
        await provider(Upstream(), tokens).chat(chat(logprobs=True), T)
    assert tokens.calls == 0


# --- real OAuth: service-account JWT, token endpoint, refresh -----------------------------------


@pytest.fixture
def oauth(tmp_path: Path) -> Iterator[tuple[TokenEndpoint, ServiceAccount]]:
    with TokenEndpoint() as endpoint:
        endpoint.account = make_service_account(tmp_path, endpoint.url)
        yield endpoint, endpoint.account


def sa_provider(up: Upstream, account: ServiceAccount, **options: Any) -> VertexProvider:
    return VertexProvider(
        name="vx",
        options={"credentials_file": str(account.path), **options},
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
    )


async def test_service_account_tokens_are_minted_once_and_reused(
    oauth: tuple[TokenEndpoint, ServiceAccount],
) -> None:
    endpoint, account = oauth
    up = Upstream(body=fixture("chat_text.json"))
    p = sa_provider(up, account)
    await asyncio.gather(*(p.chat(chat(), T) for _ in range(5)))  # a cold burst: one grant
    await p.chat(chat(), T)
    assert len(endpoint.grants) == 1
    tokens = {r.headers["authorization"] for r in up.posts}
    assert len(up.posts) == 6 and len(tokens) == 1
    assert tokens.pop().startswith("Bearer ya29.test-1-")
    assert "/projects/sim-project/" in str(up.posts[0].url)  # the key file's project
    grant = endpoint.grants[0]
    assert grant["iss"] == account.email and grant["scope"].endswith("/auth/cloud-platform")


async def test_tokens_close_to_expiry_are_refreshed_before_use(
    oauth: tuple[TokenEndpoint, ServiceAccount],
) -> None:
    endpoint, account = oauth
    endpoint.lifetime = 120  # inside the 300 s margin: never fresh enough to reuse
    up = Upstream(body=fixture("chat_text.json"))
    p = sa_provider(up, account)
    await p.chat(chat(), T)
    await p.chat(chat(), T)
    assert len(endpoint.grants) == 2
    sent = [r.headers["authorization"] for r in up.posts]
    assert sent[0].startswith("Bearer ya29.test-1-") and sent[1].startswith("Bearer ya29.test-2-")


async def test_application_default_credentials_from_the_environment(
    oauth: tuple[TokenEndpoint, ServiceAccount], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, account = oauth
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account.path))
    up = Upstream(body=fixture("chat_text.json"))
    p = VertexProvider(
        name="vx", http=httpx.AsyncClient(transport=httpx.MockTransport(up)), options={}
    )
    await p.chat(chat(), T)
    assert len(endpoint.grants) == 1 and "/projects/sim-project/" in str(up.posts[0].url)


async def test_a_refused_grant_is_an_authentication_error(
    oauth: tuple[TokenEndpoint, ServiceAccount],
) -> None:
    endpoint, account = oauth
    endpoint.refuse = True
    up = Upstream(body=fixture("chat_text.json"))
    with pytest.raises(errors.AuthenticationError, match="invalid_grant") as info:
        await sa_provider(up, account).chat(chat(), T)
    assert not info.value.retryable and not up.requests


async def test_an_unreachable_token_endpoint_is_a_retryable_connection_error(
    tmp_path: Path,
) -> None:
    account = make_service_account(tmp_path, "http://127.0.0.1:9/token")
    with pytest.raises(errors.ConnectionError) as info:
        await sa_provider(Upstream(), account).chat(chat(), T)
    assert info.value.retryable


async def test_the_token_never_reaches_errors(oauth: tuple[TokenEndpoint, ServiceAccount]) -> None:
    _, account = oauth
    token_seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"][7:]
        token_seen.append(token)
        body = {
            "error": {"code": 401, "message": f"token {token} expired", "status": "UNAUTHENTICATED"}
        }
        return httpx.Response(401, json=body)

    p = VertexProvider(
        name="vx",
        options={"credentials_file": str(account.path)},
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(errors.AuthenticationError) as info:
        await p.chat(chat(), T)
    (token,) = token_seen
    for text in (str(info.value), repr(info.value), repr(info.value.body), repr(p)):
        assert token not in text


# --- Vertex payloads --------------------------------------------------------------------------


async def test_function_calls_and_their_stream_fold_alike() -> None:
    W = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    whole = await provider(Upstream(body=fixture("chat_function_calls.json"))).chat(
        chat(tools=[W]), T
    )
    up = Upstream(body=fixture("stream_function_calls.sse"), sse=True)
    chunks: list[ChatChunk] = [c async for c in provider(up).stream(chat(tools=[W]), T)]
    assert up.posts[0].url.path.endswith(":streamGenerateContent")
    assert up.posts[0].url.params["alt"] == "sse"
    streamed = fold(chunks)
    for resp in (whole, streamed):
        assert resp.finish_reason == "tool_calls"
        assert [json.loads(c.function.arguments)["city"] for c in resp.tool_calls] == [
            "Oslo",
            "Paris",
        ]
    assert streamed.usage == whole.usage


async def test_text_stream_folds_to_the_non_stream_answer() -> None:
    whole = await provider(Upstream(body=fixture("chat_text.json"))).chat(chat(), T)
    up = Upstream(body=fixture("stream_text.sse"), sse=True)
    streamed = fold([c async for c in provider(up).stream(chat(), T)])
    assert (streamed.text, streamed.finish_reason, streamed.usage) == (
        whole.text,
        whole.finish_reason,
        whole.usage,
    )


@pytest.mark.parametrize(
    ("name", "status", "cls"),
    [
        ("error_429.json", 429, errors.RateLimitError),
        ("error_401.json", 401, errors.AuthenticationError),
        ("error_403.json", 403, errors.PermissionDeniedError),
        ("error_404.json", 404, errors.NotFoundError),
        ("error_400_context.json", 400, errors.ContextWindowExceededError),
        ("error_503.json", 503, errors.OverloadedError),
    ],
)
async def test_vertex_errors_are_typed(name: str, status: int, cls: type[Exception]) -> None:
    with pytest.raises(cls) as info:
        await provider(Upstream(status, fixture(name))).chat(chat(), T)
    e = info.value
    assert isinstance(e, errors.ProviderError)
    assert e.status == status and e.provider == "vx"
    assert orjson.loads(fixture(name))["error"]["message"][:40] in e.message


async def test_embeddings_through_predict_in_batches() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        seen.append({"path": request.url.path, "body": body})
        predictions = [
            {
                "embeddings": {
                    "values": [float(len(i["content"])), 0.5],
                    "statistics": {"token_count": 2},
                }
            }
            for i in body["instances"]
        ]
        return httpx.Response(200, json={"predictions": predictions})

    resp = await provider(handler).embed(
        EmbeddingRequest(model="text-embedding-005", input=["a", "bb", "ccc"], dimensions=2), T
    )
    assert [s["path"] for s in seen] == [
        "/v1/projects/sim-project/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    ]
    assert seen[0]["body"] == {
        "instances": [{"content": "a"}, {"content": "bb"}, {"content": "ccc"}],
        "parameters": {"outputDimensionality": 2},
    }
    assert resp.vectors == [[1.0, 0.5], [2.0, 0.5], [3.0, 0.5]] and resp.usage.prompt_tokens == 6
    seen.clear()
    resp = await provider(handler).embed(
        EmbeddingRequest(model="gemini-embedding-001", input=["a", "bb", "ccc"]), T
    )
    assert [len(s["body"]["instances"]) for s in seen] == [1, 1, 1]  # one text per call
    assert resp.vectors == [[1.0, 0.5], [2.0, 0.5], [3.0, 0.5]]


async def test_documented_predict_answer_and_a_short_one() -> None:
    up = Upstream(body=fixture("embeddings_predict.json"))
    resp = await provider(up).embed(
        EmbeddingRequest(model="text-embedding-005", input=["x", "y"]), T
    )
    assert resp.vectors[1] == [-0.0111, 0.0222, -0.0333] and resp.usage.total_tokens == 10
    with pytest.raises(errors.ServerError, match="not 3 embeddings"):
        await provider(up).embed(
            EmbeddingRequest(model="text-embedding-005", input=["x", "y", "z"]), T
        )
