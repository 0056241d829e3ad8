"""Anthropic adapter against payloads written from Anthropic's documented shapes
(fixtures/anthropic, see providers.md §2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.support import T, Upstream, fold

from aiwire import errors
from aiwire.providers.anthropic import AnthropicProvider
from aiwire.providers.base import Support
from aiwire.secrets import Secret
from aiwire.types import ChatChunk, ChatRequest, ChatResponse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
KEY = "sk-ant-test-0123456789abcdefghijklmnopqrstuv"
RATELIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z",
    "anthropic-ratelimit-tokens-limit": "80000",
    "anthropic-ratelimit-tokens-remaining": "79000",
    "anthropic-ratelimit-tokens-reset": "2099-01-01T00:00:00Z",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def provider(
    up: Callable[[httpx.Request], httpx.Response], key: str = KEY, **kw: Any
) -> AnthropicProvider:
    return AnthropicProvider(
        name="claude",
        api_key=Secret(key),
        base_url="https://api.anthropic.test",
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
        **kw,
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", "claude-sonnet-4-20250514")
    return ChatRequest(**kw)


async def collect(p: AnthropicProvider, request: ChatRequest) -> list[ChatChunk]:
    return [c async for c in p.stream(request, T)]


def comparable(resp: ChatResponse) -> dict[str, Any]:
    out = resp.model_dump(exclude={"created"})
    out["provider"] = resp.provider
    return out


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# --- requests ---------------------------------------------------------------------------------


async def test_text_chat_request_headers_and_response() -> None:
    up = Upstream(
        body=fixture("message_text.json"), headers={"request-id": "req_abc", **RATELIMIT_HEADERS}
    )
    resp = await provider(up).chat(chat(), T)
    sent = up.requests[0]
    assert sent.url == "https://api.anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers and "anthropic-beta" not in sent.headers
    assert up.json == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 4096,  # Anthropic requires it; the request had none
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert resp.text == "Hello! How can I help?"  # the thinking block is not part of the answer
    assert resp.tool_calls == [] and resp.message.tool_calls is None
    assert resp.finish_reason == "stop"
    assert (resp.id, resp.model) == ("msg_01TextAnswer", "claude-sonnet-4-20250514")
    assert resp.usage is not None
    # canonical prompt tokens include cache writes and cache reads
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (2112, 25)
    assert (resp.usage.total_tokens, resp.usage.cached_input_tokens) == (2137, 2000)
    assert (resp.provider, resp.request_id) == ("claude", "req_abc")
    rl = resp.ratelimit
    assert rl is not None
    assert (rl.limit_requests, rl.remaining_requests) == (50, 49)
    assert (rl.limit_tokens, rl.remaining_tokens) == (80000, 79000)


async def test_no_ratelimit_headers_gives_none() -> None:
    up = Upstream(body=fixture("message_text.json"))
    resp = await provider(up).chat(chat(), T)
    assert resp.ratelimit is None and resp.request_id is None


async def test_max_tokens_default_option_explicit_limits_and_beta_header() -> None:
    up = Upstream(body=fixture("message_text.json"))
    p = provider(up, options={"default_max_tokens": 1000, "anthropic_beta": ["a-1", "b-2"]})
    await p.chat(chat(), T)
    assert up.json["max_tokens"] == 1000
    assert up.requests[-1].headers["anthropic-beta"] == "a-1,b-2"
    await p.chat(chat(max_tokens=70), T)
    assert up.json["max_tokens"] == 70
    await p.chat(chat(max_tokens=70, max_completion_tokens=50), T)
    assert up.json["max_tokens"] == 50


async def test_conversation_translation() -> None:
    up = Upstream(body=fixture("message_text.json"))
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
            ],
        },
        {"role": "user", "content": "And the weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "4°C, rain"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "18°C, sun"},
        {"role": "user", "content": "Which is warmer?"},
    ]
    await provider(up).chat(chat(messages=messages), T)
    body = up.json
    assert body["system"] == "Be terse.\n\nAnswer in English."
    assert body["messages"] == [
        {
            "role": "user",  # two consecutive user turns merged into one
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
                {"type": "text", "text": "And the weather?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_02",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",  # both tool results in ONE user turn, first, then the user's text
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "4°C, rain"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "18°C, sun"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


async def test_tool_results_are_put_first_even_after_user_text() -> None:
    up = Upstream(body=fixture("message_text.json"))
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_01", "function": {"name": "get_weather", "arguments": ""}}
            ],
        },
        {"role": "user", "content": "Hurry."},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "4°C"},
    ]
    await provider(up).chat(chat(messages=messages), T)
    sent = up.json["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}],
    }
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "text"]
    assert len(sent) == 3


@pytest.mark.parametrize(
    ("arguments", "problem"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]
)
async def test_invalid_tool_call_arguments_are_refused_naming_the_message(
    arguments: str, problem: str
) -> None:
    up = Upstream(body=fixture("message_text.json"))
    messages = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "ok"},
    ]
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(messages=messages), T)
    assert "messages[1].tool_calls[0]" in str(info.value) and problem in str(info.value)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"
    assert (info.value.provider, info.value.status) == ("claude", 400)
    assert up.requests == []


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "messages[0].content[0].image_url",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,AAA"}}],
                }
            ],
            "messages[0].content[0].image_url",
        ),
    ],
)
async def test_untranslatable_messages_are_refused(
    messages: list[dict[str, Any]], param: str
) -> None:
    up = Upstream(body=fixture("message_text.json"))
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(messages=messages), T)
    assert info.value.param == param
    assert up.requests == []


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
async def test_tools_and_tool_choice_mapping(
    tool_choice: Any, parallel: bool | None, expected: dict[str, Any] | None
) -> None:
    up = Upstream(body=fixture("message_text.json"))
    bare = {"type": "function", "function": {"name": "now"}}
    kw: dict[str, Any] = {"tools": [WEATHER_TOOL, bare]}
    if tool_choice is not None:
        kw["tool_choice"] = tool_choice
    if parallel is not None:
        kw["parallel_tool_calls"] = parallel
    await provider(up).chat(chat(**kw), T)
    body = up.json
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body.get("tool_choice") == expected


async def test_sampling_parameters() -> None:
    up = Upstream(body=fixture("message_text.json"))
    await provider(up).chat(chat(stop="END", temperature=0.5, top_p=0.9, user="u-123"), T)
    body = up.json
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_p"]) == (0.5, 0.9)
    assert body["metadata"] == {"user_id": "u-123"}
    await provider(up).chat(chat(stop=["a", "b"], temperature=1.0, n=1), T)
    assert up.json["stop_sequences"] == ["a", "b"] and up.json["temperature"] == 1.0
    assert "n" not in up.json


# --- responses --------------------------------------------------------------------------------


async def test_parallel_tool_use_response() -> None:
    up = Upstream(body=fixture("message_tool_use.json"))
    resp = await provider(up).chat(chat(tools=[WEATHER_TOOL]), T)
    assert resp.finish_reason == "tool_calls"
    assert resp.text == "Let me check both cities."
    calls = resp.tool_calls
    assert [(c.id, c.type, c.function.name) for c in calls] == [
        ("toolu_01Oslo", "function", "get_weather"),
        ("toolu_02Paris", "function", "get_weather"),
    ]
    assert all(isinstance(c.function.arguments, str) for c in calls)
    assert [orjson.loads(c.function.arguments) for c in calls] == [
        {"city": "Oslo"},
        {"city": "Paris", "units": ["c", "f"]},
    ]
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (412, 58)
    assert resp.usage.cached_input_tokens == 0


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reason_mapping(stop_reason: str, finish: str) -> None:
    data = orjson.loads(fixture("message_text.json"))
    data["stop_reason"] = stop_reason
    up = Upstream(body=orjson.dumps(data))
    resp = await provider(up).chat(chat(), T)
    assert resp.finish_reason == finish


async def test_json_schema_is_emulated_with_a_forced_tool() -> None:
    up = Upstream(body=fixture("message_json_tool.json"))
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    resp = await provider(up).chat(chat(response_format=rf), T)
    body = up.json
    assert len(body["tools"]) == 1
    assert body["tools"][0]["name"] == "person"
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "person",
        "disable_parallel_tool_use": True,
    }
    assert "response_format" not in body
    assert resp.message.content == '{"name":"Ada","age":36}'
    assert resp.message.tool_calls is None
    assert resp.finish_reason == "stop"
    assert resp.usage is not None  # null cache fields count as zero
    assert (resp.usage.prompt_tokens, resp.usage.cached_input_tokens) == (90, 0)


async def test_json_object_is_emulated_with_an_object_schema() -> None:
    data = orjson.loads(fixture("message_json_tool.json"))
    data["content"][0]["name"] = "response"
    up = Upstream(body=orjson.dumps(data))
    resp = await provider(up).chat(chat(response_format={"type": "json_object"}), T)
    assert up.json["tools"][0]["name"] == "response"
    assert up.json["tools"][0]["input_schema"] == {"type": "object"}
    assert up.json["tool_choice"]["type"] == "tool"
    assert up.json["tool_choice"]["name"] == "response"
    assert orjson.loads(resp.text) == {"name": "Ada", "age": 36}
    assert resp.finish_reason == "stop" and resp.tool_calls == []


async def test_response_format_text_is_plain() -> None:
    up = Upstream(body=fixture("message_text.json"))
    await provider(up).chat(chat(response_format={"type": "text"}), T)
    assert "tools" not in up.json and "tool_choice" not in up.json


async def test_json_schema_with_tools_is_refused() -> None:
    up = Upstream(body=fixture("message_json_tool.json"))
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}}}
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(response_format=rf, tools=[WEATHER_TOOL]), T)
    assert info.value.param == "response_format"
    assert "tools" in info.value.message
    assert up.requests == []


async def test_a_body_that_is_not_a_message_is_a_server_error() -> None:
    up = Upstream(body=b'{"hello": "world"}')
    with pytest.raises(errors.ServerError):
        await provider(up).chat(chat(), T)


# --- streaming --------------------------------------------------------------------------------


async def test_stream_text_folds_to_the_non_streamed_answer() -> None:
    up = Upstream(body=fixture("stream_text.sse"), sse=True, headers=RATELIMIT_HEADERS)
    chunks = await collect(provider(up), chat(stream=True))
    assert up.json["stream"] is True
    assert up.requests[0].headers["x-api-key"] == KEY
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant"
    assert first.id == "msg_01TextAnswer" and first.provider == "claude"
    assert first.ratelimit is not None and first.ratelimit.remaining_requests == 49
    assert all(c.ratelimit is None for c in chunks[1:])
    assert all(c.id == "msg_01TextAnswer" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.completion_tokens == 25  # cumulative, not +1
    assert [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content] == [
        "Hello! ",
        "How can ",
        "I help?",
    ]

    expected = await provider(Upstream(body=fixture("message_text.json"))).chat(chat(), T)
    assert comparable(fold(chunks)) == comparable(expected)


async def test_stream_usage_is_reported_even_without_include_usage() -> None:
    up = Upstream(body=fixture("stream_text.sse"), sse=True)
    request = chat(stream=True, stream_options={"include_usage": True})
    usage = fold(await collect(provider(up), request)).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_input_tokens, usage.total_tokens) == (
        2112,
        2000,
        2137,
    )


async def test_stream_tool_use_folds_to_the_non_streamed_answer() -> None:
    up = Upstream(body=fixture("stream_tool_use.sse"), sse=True)
    chunks = await collect(provider(up), chat(stream=True, tools=[WEATHER_TOOL]))
    deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    starts = [d for d in deltas if d.id]
    # OpenAI indexes count tool calls (0, 1), not Anthropic's content blocks (1, 2)
    assert [(d.index, d.id, d.type) for d in starts] == [
        (0, "toolu_01Oslo", "function"),
        (1, "toolu_02Paris", "function"),
    ]
    assert all(d.function is not None and d.function.arguments == "" for d in starts)
    fragments = [d.function.arguments for d in deltas if not d.id and d.function]
    assert "" not in fragments and len(fragments) == 4

    folded = fold(chunks)
    expected = await provider(Upstream(body=fixture("message_tool_use.json"))).chat(chat(), T)
    assert folded.finish_reason == "tool_calls"
    assert [orjson.loads(c.function.arguments) for c in folded.tool_calls] == [
        {"city": "Oslo"},
        {"city": "Paris", "units": ["c", "f"]},
    ]
    assert comparable(folded) == comparable(expected)


async def test_stream_json_schema_emulation_streams_content() -> None:
    up = Upstream(body=fixture("stream_json_tool.sse"), sse=True)
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}}}
    chunks = await collect(provider(up), chat(stream=True, response_format=rf))
    assert up.json["tool_choice"]["name"] == "person" and up.json["stream"] is True
    assert all(not c.choices[0].delta.tool_calls for c in chunks)
    folded = fold(chunks)
    assert folded.text == '{"name":"Ada","age":36}'
    assert folded.finish_reason == "stop" and folded.tool_calls == []
    expected = await provider(Upstream(body=fixture("message_json_tool.json"))).chat(
        chat(response_format=rf), T
    )
    assert comparable(folded) == comparable(expected)


async def test_stream_error_event_after_200_raises_the_mapped_error() -> None:
    up = Upstream(body=fixture("stream_error_event.sse"), sse=True)
    seen: list[ChatChunk] = []
    with pytest.raises(errors.OverloadedError) as info:
        async for chunk in provider(up).stream(chat(stream=True), T):
            seen.append(chunk)
    assert "".join(c.text for c in seen) == "Partial"
    err = info.value
    assert (err.status, err.retryable, err.code) == (529, True, "overloaded_error")
    assert (err.request_id, err.provider) == ("req_011StreamErr", "claude")


async def test_truncated_stream_raises_incomplete() -> None:
    up = Upstream(body=fixture("stream_truncated.sse"), sse=True)
    with pytest.raises(errors.IncompleteStreamError) as info:
        await collect(provider(up), chat(stream=True))
    assert "message_stop" in str(info.value) and info.value.retryable


async def test_malformed_stream_event_raises_a_typed_error() -> None:
    up = Upstream(body=fixture("stream_malformed.sse"), sse=True)
    with pytest.raises(errors.ServerError) as info:
        await collect(provider(up), chat(stream=True))
    assert "not valid JSON" in str(info.value) and info.value.retryable


async def test_stream_http_error_is_mapped_before_any_chunk() -> None:
    up = Upstream(status=429, body=fixture("error_429.json"), headers={"retry-after": "3"})
    with pytest.raises(errors.RateLimitError) as info:
        await collect(provider(up), chat(stream=True))
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "cls", "retryable"),
    [
        ("error_400.json", 400, errors.BadRequestError, False),
        ("error_400_prompt_too_long.json", 400, errors.ContextWindowExceededError, False),
        ("error_401.json", 401, errors.AuthenticationError, False),
        ("error_402_billing.json", 402, errors.PermissionDeniedError, False),
        ("error_403.json", 403, errors.PermissionDeniedError, False),
        ("error_404.json", 404, errors.NotFoundError, False),
        ("error_413.json", 413, errors.BadRequestError, False),
        ("error_429.json", 429, errors.RateLimitError, True),
        ("error_500.json", 500, errors.ServerError, True),
        ("error_504.json", 504, errors.TimeoutError, True),
        ("error_529.json", 529, errors.OverloadedError, True),
    ],
)
async def test_error_bodies_map_to_typed_errors(
    name: str, status: int, cls: type[errors.ProviderError], retryable: bool
) -> None:
    headers = {"request-id": "req_from_header"}
    if status == 429:
        headers |= {"retry-after": "7", **RATELIMIT_HEADERS}
    body = fixture(name)
    up = Upstream(status=status, body=body, headers=headers)
    with pytest.raises(errors.ProviderError) as info:
        await provider(up).chat(chat(), T)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.retryable, err.provider) == (status, retryable, "claude")
    assert err.model == "claude-sonnet-4-20250514"
    decoded = orjson.loads(body)
    assert err.request_id == decoded["request_id"]  # the body's id wins over the header's
    assert err.code == decoded["error"]["type"]
    assert err.message == decoded["error"]["message"]
    assert err.body == decoded
    assert err.retry_after == (7.0 if status == 429 else None)


async def test_bad_request_about_something_else_is_not_a_context_error() -> None:
    body = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: must be at least 1"},
    }
    up = Upstream(status=400, body=orjson.dumps(body), headers={"request-id": "req_h"})
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(), T)
    assert type(info.value) is errors.BadRequestError
    assert info.value.request_id == "req_h"  # no request_id in the body: the header's


@pytest.mark.parametrize(
    ("status", "cls"), [(413, errors.BadRequestError), (502, errors.ServerError)]
)
async def test_non_json_error_bodies_still_give_typed_errors(
    status: int, cls: type[errors.ProviderError]
) -> None:
    html = b"<html><head><title>" + b"x" * 2000 + b"</title></head></html>"
    up = Upstream(status=status, body=html, headers={"content-type": "text/html"})
    with pytest.raises(errors.ProviderError) as info:
        await provider(up).chat(chat(), T)
    assert type(info.value) is cls and info.value.status == status
    assert len(info.value.message) < 300


async def test_x_should_retry_header_is_obeyed() -> None:
    up = Upstream(status=500, body=fixture("error_500.json"), headers={"x-should-retry": "false"})
    with pytest.raises(errors.ServerError) as info:
        await provider(up).chat(chat(), T)
    assert info.value.retryable is False


# --- capabilities and refusals ----------------------------------------------------------------


def test_capability_declarations() -> None:
    caps = AnthropicProvider.capabilities
    assert caps.support("json_schema") is Support.EMULATED
    assert caps.support("json_object") is Support.EMULATED
    assert {"json_schema", "json_object", "chat"} <= set(caps.notes)
    for feature in ("tools", "streaming", "image_base64", "parallel_tool_calls_off", "user"):
        assert caps.support(feature) is Support.SUPPORTED
    for feature in ("temperature_above_1", "seed", "n", "logprobs", "embeddings"):
        assert caps.support(feature) is Support.REFUSED


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"seed": 7}, "seed"),
        ({"n": 2}, "n"),
        ({"temperature": 1.5}, "temperature"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"top_k_custom": 5}, "top_k_custom"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_refused_parameters_send_nothing_upstream(
    kw: dict[str, Any], param: str, streamed: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent upstream for a refused request")

    p = provider(handler)
    with pytest.raises(errors.BadRequestError) as info:
        if streamed:
            await collect(p, chat(stream=True, **kw))
        else:
            await p.chat(chat(**kw), T)
    assert info.value.param == param
    assert f"`{param}`" in info.value.message
    assert info.value.code == "unsupported_parameter"


async def test_embeddings_are_refused() -> None:
    from aiwire.types import EmbeddingRequest

    p = provider(Upstream())
    with pytest.raises(errors.BadRequestError):
        await p.embed(EmbeddingRequest(model="x", input="hi"), T)


# --- secrets ----------------------------------------------------------------------------------


async def test_api_key_never_appears_in_reprs_or_errors() -> None:
    plain_key = "my-plain-secret-value-42"  # not shaped like a key: only exact scrubbing hides it
    p = provider(Upstream(), key=plain_key)
    assert plain_key not in repr(p) and KEY not in repr(provider(Upstream()))

    raised: list[errors.AIWireError] = []
    echo = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"invalid x-api-key {plain_key}"},
    }
    for key, up in (
        (plain_key, Upstream(status=401, body=orjson.dumps(echo))),
        (KEY, Upstream(status=401, body=fixture("error_401.json"))),
        (KEY, Upstream(body=fixture("stream_truncated.sse"), sse=True)),
        (KEY, Upstream(body=fixture("stream_error_event.sse"), sse=True)),
    ):
        with pytest.raises(errors.AIWireError) as info:
            await collect(provider(up, key=key), chat(stream=True))
        raised.append(info.value)
        with pytest.raises(errors.AIWireError) as info:
            await provider(up, key=key).chat(chat(seed=1), T)
        raised.append(info.value)
    assert len(raised) == 8
    for err in raised:
        for text in (str(err), repr(err), err.message):
            assert plain_key not in text and KEY not in text
    assert "invalid x-api-key" in raised[0].message  # the useful part of the message survives


@pytest.mark.parametrize("value", ["lots", 0, True])
async def test_bad_default_max_tokens_option_is_a_config_error(value: Any) -> None:
    up = Upstream(body=fixture("message_text.json"))
    with pytest.raises(errors.ConfigError, match="default_max_tokens"):
        await provider(up, options={"default_max_tokens": value}).chat(chat(), T)
    assert up.requests == []


# --- contract additions: strict tools, silently-droppable fields --------------------------------


async def test_strict_tools_and_schema_are_sent_as_strict() -> None:
    up = Upstream(body=fixture("message_text.json"))
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
    }
    await provider(up).chat(chat(tools=[tool]), T)
    assert up.json["tools"][0]["strict"] is True
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True},
    }
    await provider(up).chat(chat(response_format=rf), T)
    assert up.json["tools"][0]["strict"] is True


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"messages": [{"role": "user", "content": "Hi", "name": "anna"}]}, "messages[0].name"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.detail",
        ),
    ],
)
async def test_fields_anthropic_cannot_carry_are_refused_by_name(
    kw: dict[str, Any], param: str
) -> None:
    up = Upstream(body=fixture("message_text.json"))
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(**kw), T)
    assert info.value.param == param and param in str(info.value)
    assert up.requests == []


async def test_429_without_retry_after_uses_the_ratelimit_reset_time() -> None:
    import datetime as dt

    reset = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)).isoformat()
    up = Upstream(
        429,
        fixture("error_429.json"),
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
        },
    )
    with pytest.raises(errors.RateLimitError) as info:
        await provider(up).chat(chat(), T)
    assert info.value.retry_after is not None and 18 < info.value.retry_after <= 20
