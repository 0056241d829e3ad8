"""OpenAI adapter against payloads written from OpenAI's documented shapes (fixtures/openai)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.support import T, Upstream

from aiwire import errors
from aiwire.providers.openai import AzureOpenAIProvider, OpenAIProvider
from aiwire.secrets import Secret
from aiwire.types import ChatRequest, EmbeddingRequest, StreamAccumulator

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
KEY = "sk-proj-TESTKEY0123456789abcdefghijklmnop"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def provider(
    up: Callable[[httpx.Request], httpx.Response],
    cls: type[OpenAIProvider] = OpenAIProvider,
    **kw: Any,
) -> OpenAIProvider:
    kw.setdefault("base_url", "https://api.openai.test/v1")
    return cls(
        name="oai",
        api_key=Secret(KEY),
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
        **kw,
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", "gpt-4o-mini")
    return ChatRequest(**kw)


async def test_chat_text_request_and_response() -> None:
    up = Upstream(
        body=fixture("chat_text.json"),
        headers={
            "x-request-id": "req_123",
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "199900",
            "x-ratelimit-reset-tokens": "6m0s",
        },
    )
    p = provider(up, options={"organization": "org-1"})
    resp = await p.chat(chat(temperature=0.2, max_completion_tokens=50, seed=7, stop=["END"]), T)
    sent = up.requests[0]
    assert sent.url == "https://api.openai.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["openai-organization"] == "org-1"
    assert up.json == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "seed": 7,
        "stop": ["END"],
    }
    assert resp.text == "Hello! How can I help?"
    assert resp.finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.cached_input_tokens) == (
        82,
        17,
        64,
    )
    assert resp.request_id == "req_123" and resp.provider == "oai"
    rl = resp.ratelimit
    assert rl is not None
    assert (rl.limit_requests, rl.remaining_requests, rl.reset_requests) == (500, 499, 0.12)
    assert (rl.limit_tokens, rl.remaining_tokens, rl.reset_tokens) == (200000, 199900, 360.0)


async def test_tools_images_and_json_schema_pass_through_unchanged() -> None:
    up = Upstream(body=fixture("chat_tool_calls.json"))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages = [
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "20C"},
    ]
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
    }
    resp = await provider(up).chat(
        chat(
            messages=messages,
            tools=tools,
            tool_choice="required",
            parallel_tool_calls=True,
            response_format=rf,
            vendor_option={"a": 1},
        ),
        T,
    )
    body = up.json
    assert body["tools"] == tools
    # identical, except that `content: null` beside tool calls is omitted (it is optional there)
    assert body["messages"] == [{k: v for k, v in m.items() if v is not None} for m in messages]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is True
    assert body["response_format"] == rf
    assert body["vendor_option"] == {"a": 1}  # OpenAI-compatible servers get unknown params as-is
    assert resp.finish_reason == "tool_calls"
    assert [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in resp.tool_calls
    ] == [("call_1", "get_weather", {"city": "Oslo"}), ("call_2", "get_weather", {"city": "Paris"})]
    assert resp.message.content is None


async def test_stream_text_asks_for_usage_and_folds_to_the_same_answer() -> None:
    up = Upstream(
        body=fixture("stream_text.sse"), sse=True, headers={"x-ratelimit-remaining-requests": "9"}
    )
    chunks = [c async for c in provider(up).stream(chat(stream=True), T)]
    assert up.json["stream"] is True and up.json["stream_options"] == {"include_usage": True}
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    folded = acc.response()
    assert folded.text == "Hello! How can I help?"
    assert folded.finish_reason == "stop"
    assert folded.usage is not None and folded.usage.total_tokens == 99
    assert chunks[0].ratelimit is not None and chunks[0].ratelimit.remaining_requests == 9
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_stream_tool_call_fragments_are_keyed_by_index() -> None:
    up = Upstream(body=fixture("stream_tool_calls.sse"), sse=True)
    acc = StreamAccumulator()
    async for c in provider(up).stream(chat(stream=True), T):
        acc.add(c)
    resp = acc.response()
    assert resp.finish_reason == "tool_calls"
    assert [(c.id, orjson.loads(c.function.arguments)) for c in resp.tool_calls] == [
        ("call_1", {"city": "Oslo"}),
        ("call_2", {"city": "Paris"}),
    ]


async def test_stream_without_done_is_an_error_not_an_answer() -> None:
    up = Upstream(body=fixture("stream_truncated.sse"), sse=True)
    got = []
    with pytest.raises(errors.IncompleteStreamError):
        async for c in provider(up).stream(chat(stream=True), T):
            got.append(c)
    assert len(got) == 2  # what did arrive was delivered, then the error


async def test_stream_error_event_and_malformed_chunk_raise_typed_errors() -> None:
    up = Upstream(body=fixture("stream_error_event.sse"), sse=True)
    with pytest.raises(errors.ServerError, match="server had an error"):
        async for _ in provider(up).stream(chat(stream=True), T):
            pass
    up = Upstream(body=fixture("stream_malformed.sse"), sse=True)
    with pytest.raises(errors.ServerError, match="not valid JSON"):
        async for _ in provider(up).stream(chat(stream=True), T):
            pass


@pytest.mark.parametrize(
    ("name", "status", "headers", "cls", "retryable", "retry_after"),
    [
        ("error_401.json", 401, {}, errors.AuthenticationError, False, None),
        ("error_404_model.json", 404, {}, errors.NotFoundError, False, None),
        ("error_400_context.json", 400, {}, errors.ContextWindowExceededError, False, None),
        ("error_400_content_filter.json", 400, {}, errors.ContentFilteredError, False, None),
        (
            "error_429_rate.json",
            429,
            {"retry-after": "2", "retry-after-ms": "1574"},
            errors.RateLimitError,
            True,
            1.574,
        ),
        ("error_429_quota.json", 429, {}, errors.RateLimitError, False, None),
        ("error_500.json", 500, {"retry-after": "3"}, errors.ServerError, True, 3.0),
        ("error_503.json", 503, {}, errors.OverloadedError, True, None),
    ],
)
async def test_error_bodies_map_to_typed_errors(
    name: str,
    status: int,
    headers: dict[str, str],
    cls: type[errors.ProviderError],
    retryable: bool,
    retry_after: float | None,
) -> None:
    up = Upstream(status, fixture(name), {"x-request-id": "req_err", **headers})
    with pytest.raises(cls) as info:
        await provider(up).chat(chat(), T)
    e = info.value
    assert type(e) is cls
    assert (e.status, e.retryable, e.retry_after, e.provider, e.model, e.request_id) == (
        status,
        retryable,
        retry_after,
        "oai",
        "gpt-4o-mini",
        "req_err",
    )
    # the same mapping applies when the error arrives before a stream starts
    with pytest.raises(cls):
        async for _ in provider(up).stream(chat(stream=True), T):
            pass


async def test_x_should_retry_header_overrides_status_rules() -> None:
    up = Upstream(500, fixture("error_500.json"), {"x-should-retry": "false"})
    with pytest.raises(errors.ServerError) as info:
        await provider(up).chat(chat(), T)
    assert info.value.retryable is False


async def test_non_json_error_body_is_still_typed() -> None:
    up = Upstream(502, b"<html>Bad gateway</html>")
    with pytest.raises(errors.ServerError, match="Bad gateway"):
        await provider(up).chat(chat(), T)


async def test_embeddings_sorted_by_index_and_always_float_upstream() -> None:
    up = Upstream(body=fixture("embeddings.json"))
    resp = await provider(up).embed(
        EmbeddingRequest(
            model="text-embedding-3-small", input=["a", "b"], encoding_format="base64", dimensions=2
        ),
        T,
    )
    assert up.requests[0].url.path == "/v1/embeddings"
    assert up.json == {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 2}
    assert resp.vectors == [[0.0023, -0.0091], [0.5, -0.25]]
    assert resp.usage.prompt_tokens == 8


async def test_azure_deployment_url_api_version_and_api_key_header() -> None:
    up = Upstream(body=fixture("chat_text.json"), headers={"apim-request-id": "az-1"})
    p = provider(
        up,
        AzureOpenAIProvider,
        base_url="https://res.openai.azure.test",
        options={"api_version": "2024-10-21"},
    )
    resp = await p.chat(chat(model="my-deployment"), T)
    sent = up.requests[0]
    assert sent.url.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.url.params["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers
    assert resp.request_id == "az-1"


async def test_connection_failures_are_typed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(errors.ConnectionError):
        await provider(refuse).chat(chat(), T)
    with pytest.raises(errors.TimeoutError) as info:
        await provider(slow).chat(chat(), T)
    assert info.value.retryable


async def test_key_never_in_repr_or_errors() -> None:
    up = Upstream(401, fixture("error_401.json"))
    p = provider(up)
    with pytest.raises(errors.AuthenticationError) as info:
        await p.chat(chat(), T)
    for text in (repr(p), str(info.value), repr(info.value), repr(p.api_key), f"{p.api_key}"):
        assert KEY not in text


async def test_429_without_retry_after_waits_for_the_spent_budget_to_reset() -> None:
    up = Upstream(
        429,
        fixture("error_429_rate.json"),
        {
            "x-ratelimit-remaining-requests": "10",
            "x-ratelimit-reset-requests": "200ms",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "2.5s",
        },
    )
    with pytest.raises(errors.RateLimitError) as info:
        await provider(up).chat(chat(), T)
    assert info.value.retry_after == 2.5
