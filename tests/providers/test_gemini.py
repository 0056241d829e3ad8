"""Gemini adapter against payloads written from Gemini's documented shapes (fixtures/gemini)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.support import T, Upstream, fold

from aiwire import errors
from aiwire.providers import gemini as gemini_module
from aiwire.providers.base import FEATURES, Support
from aiwire.providers.gemini import GeminiProvider
from aiwire.secrets import Secret
from aiwire.types import ChatChunk, ChatRequest, EmbeddingRequest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
KEY = "AIzaSyTEST-gemini-0123456789abcdefghijk"
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes().replace(b"__KEY__", KEY.encode())


def provider(
    up: Callable[[httpx.Request], httpx.Response], key: str = KEY, **kw: Any
) -> GeminiProvider:
    return GeminiProvider(
        name="gem",
        api_key=Secret(key),
        base_url="https://gemini.test",
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
        **kw,
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", "gemini-2.5-flash")
    return ChatRequest(**kw)


async def collect(p: GeminiProvider, request: ChatRequest) -> list[ChatChunk]:
    return [c async for c in p.stream(request, T)]


def candidate(parts: list[dict[str, Any]], finish: str | None) -> bytes:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish:
        cand["finishReason"] = finish
    return orjson.dumps({"candidates": [cand], "modelVersion": "gemini-2.5-flash"})


# --- request translation ----------------------------------------------------------------------


async def test_text_chat_url_auth_body_and_response() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    request = chat(
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
        ],
        temperature=1.4,
        top_p=0.9,
        max_completion_tokens=256,
        stop=["END", "STOP"],
        seed=7,
        n=1,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )
    resp = await provider(up).chat(request, T)

    sent = up.posts[0]
    assert sent.url == f"https://gemini.test{GENERATE}"
    assert sent.headers["x-goog-api-key"] == KEY
    assert not sent.url.params and KEY not in str(sent.url)
    assert up.json == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be terse.\n\nAnswer in English."}]},
        "generationConfig": {
            "temperature": 1.4,
            "topP": 0.9,
            "maxOutputTokens": 256,
            "seed": 7,
            "candidateCount": 1,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.25,
            "stopSequences": ["END", "STOP"],
        },
    }
    assert resp.text == "Hello! How can I help?"  # the thought part is not answer text
    assert resp.finish_reason == "stop"
    assert (resp.id, resp.model, resp.provider) == ("resp-text-1", "gemini-2.5-flash-001", "gem")
    assert resp.ratelimit is None
    assert resp.usage is not None
    usage = resp.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (120, 40, 64)
    assert usage.total_tokens == 160  # matches Gemini's totalTokenCount: thoughts are output


async def test_max_tokens_spelling_api_version_option_and_models_prefix() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    p = provider(up, options={"api_version": "v1"})
    await p.chat(chat(model="models/gemini-2.5-flash", max_tokens=12), T)
    assert up.posts[0].url.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert up.json["generationConfig"] == {"maxOutputTokens": 12}
    assert "systemInstruction" not in up.json and "tools" not in up.json


async def test_default_base_url_is_the_host_root() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=fixture("chat_text.json"))

    p = GeminiProvider(http=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await p.chat(chat(), T)
    assert seen == [f"https://generativelanguage.googleapis.com{GENERATE}"]
    assert p.name == "gemini"


async def test_tool_history_roles_merging_and_function_responses() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    messages = [
        {"role": "user", "content": "Weather in Oslo and Paris?"},
        {"role": "user", "content": [{"type": "text", "text": "And the time."}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        # results arrive out of call order; names come from the ids, not from the position
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 4, "sky": "clear"}'},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You're welcome."},
    ]
    await provider(up).chat(chat(messages=messages), T)
    assert up.json["contents"] == [
        {
            "role": "user",
            "parts": [{"text": "Weather in Oslo and Paris?"}, {"text": "And the time."}],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": {"temp": 4, "sky": "clear"}},
                    }
                },
                {"text": "Thanks!"},
            ],
        },
        {"role": "model", "parts": [{"text": "You're welcome."}]},
    ]


async def test_tools_pass_json_schema_unchanged() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1},
            "unit": {"anyOf": [{"const": "c"}, {"const": "f"}]},
        },
        "required": ["city"],
        "additionalProperties": False,
        "$defs": {"x": {"type": "integer"}},
    }
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ]
    await provider(up).chat(chat(tools=tools, parallel_tool_calls=True), T)
    assert up.json["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather now",
                    "parametersJsonSchema": schema,
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert "toolConfig" not in up.json


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
async def test_tool_choice_modes(choice: Any, config: dict[str, Any]) -> None:
    up = Upstream(body=fixture("chat_text.json"))
    tools = [{"type": "function", "function": {"name": "get_time"}}]
    await provider(up).chat(chat(tools=tools, tool_choice=choice), T)
    assert up.json["toolConfig"] == {"functionCallingConfig": config}


async def test_response_formats() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    p = provider(up)
    await p.chat(chat(response_format={"type": "json_object"}), T)
    assert up.json["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    await p.chat(chat(response_format=rf), T)
    assert up.json["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    await p.chat(chat(response_format={"type": "text"}), T)
    assert "generationConfig" not in up.json


async def test_images_data_url_inline_and_remote_url_fetched() -> None:
    up = Upstream(
        body=fixture("chat_text.json"),
        files={"https://img.test/cat.png?sig=abc": (200, "image/png; charset=binary", PNG)},
    )
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://img.test/cat.png?sig=abc"}},
    ]
    await provider(up).chat(chat(messages=[{"role": "user", "content": content}]), T)
    get = up.requests[0]
    assert get.method == "GET" and "x-goog-api-key" not in get.headers  # key stays with Google
    parts = up.json["contents"][0]["parts"]
    assert parts[:2] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
    ]
    assert parts[2]["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(parts[2]["inlineData"]["data"]) == PNG


@pytest.mark.parametrize(
    ("url", "served", "reason"),
    [
        ("https://img.test/page", (200, "text/html", b"<html>"), "not an image"),
        ("https://img.test/missing.png", None, "HTTP 404"),
        ("https://img.test/moved.png", (302, "image/png", b""), "HTTP 302"),
        ("http://img.test/cat.png", (200, "image/png", PNG), "only https"),
        ("https://img.test/huge.png", (200, "image/png", PNG * 8), "byte limit"),
    ],
)
async def test_remote_image_failures_are_clear_and_nothing_is_sent(
    url: str,
    served: tuple[int, str, bytes] | None,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gemini_module, "MAX_IMAGE_BYTES", len(PNG) * 4)
    up = Upstream(body=fixture("chat_text.json"), files={url: served} if served else {})
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(errors.BadRequestError, match=reason) as info:
        await provider(up).chat(chat(messages=[{"role": "user", "content": content}]), T)
    assert info.value.param == "messages[0].content[0].image_url"
    assert up.posts == []


async def test_image_fetch_error_message_hides_the_query_string() -> None:
    url = "https://img.test/private.png?token=s3cr3t-value"
    up = Upstream(files={url: (403, "text/plain", b"denied")})
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(messages=[{"role": "user", "content": content}]), T)
    assert "https://img.test/private.png" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize(
    ("messages", "param", "match"),
    [
        (
            [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{not json"},
                        }
                    ],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
            r"messages\[1\].*'c1'",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "tool", "tool_call_id": "x", "content": "1"},
            ],
            "messages[1].tool_call_id",
            r"messages\[1\].*'x'",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {
                    "role": "tool",
                    "tool_call_id": "x",
                    "name": "f",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                    ],
                },
            ],
            "messages[1].content",
            r"messages\[1\].*not images",
        ),
    ],
)
async def test_untranslatable_history_is_refused_before_any_call(
    messages: list[dict[str, Any]], param: str, match: str
) -> None:
    up = Upstream(body=fixture("chat_text.json"))
    with pytest.raises(errors.BadRequestError, match=match) as info:
        await provider(up).chat(chat(messages=messages), T)
    assert info.value.param == param
    assert up.requests == []


async def test_more_than_five_stop_sequences_are_refused() -> None:
    up = Upstream(body=fixture("chat_text.json"))
    with pytest.raises(errors.BadRequestError, match="at most 5") as info:
        await provider(up).chat(chat(stop=["a", "b", "c", "d", "e", "f"]), T)
    assert info.value.param == "stop"
    assert up.requests == []


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"user": "u-1"}, "user"),
        ({"safety_settings": []}, "safety_settings"),
    ],
)
async def test_refused_params_are_named_and_never_sent(kw: dict[str, Any], param: str) -> None:
    up = Upstream(body=fixture("chat_text.json"))
    p = provider(up)
    with pytest.raises(errors.BadRequestError, match=param) as info:
        await p.chat(chat(**kw), T)
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    with pytest.raises(errors.BadRequestError, match=param):
        await collect(p, chat(stream=True, **kw))
    assert up.requests == []


def test_capability_declarations() -> None:
    caps = GeminiProvider.capabilities
    refused = {"parallel_tool_calls_off", "logprobs", "user", "message_name", "image_detail"}
    for feature in FEATURES:
        expected = (
            Support.EMULATED
            if feature == "image_url"
            else Support.REFUSED
            if feature in refused
            else Support.SUPPORTED
        )
        assert caps.support(feature) is expected, feature
    assert "image_url" in caps.notes


# --- response mapping -------------------------------------------------------------------------


async def test_parallel_function_calls_with_synthesized_ids() -> None:
    up = Upstream(body=fixture("chat_parallel_calls.json"))
    resp = await provider(up).chat(chat(), T)
    assert resp.finish_reason == "tool_calls"  # STOP with functionCall parts
    assert resp.message.content is None
    calls = resp.tool_calls
    assert [(c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {}),
    ]
    assert calls[2].id == "fc-77"  # Gemini's own id is kept
    assert calls[0].id.startswith("call_") and calls[1].id.startswith("call_")
    assert len({c.id for c in calls}) == 3
    assert resp.usage is not None and resp.usage.cached_input_tokens == 0


@pytest.mark.parametrize(
    ("parts", "finish", "expected"),
    [
        ([{"text": "a"}], "MAX_TOKENS", "length"),
        ([{"text": "a"}], "SAFETY", "content_filter"),
        ([], "RECITATION", "content_filter"),
        ([{"text": "a"}], "LANGUAGE", "content_filter"),
        ([{"text": "a"}], "OTHER", "stop"),
        ([{"text": "a"}], "FINISH_REASON_UNSPECIFIED", "stop"),
        ([{"functionCall": {"name": "f", "args": {"x": 1}}}], "MAX_TOKENS", "length"),
    ],
)
async def test_finish_reasons(parts: list[dict[str, Any]], finish: str, expected: str) -> None:
    up = Upstream(body=candidate(parts, finish))
    resp = await provider(up).chat(chat(), T)
    assert resp.finish_reason == expected
    folded = fold(await collect(provider(Upstream(body=b"data: " + up.body + b"\n\n")), chat()))
    assert folded.finish_reason == expected


@pytest.mark.parametrize(
    "reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"]
)
async def test_broken_tool_call_finish_is_a_retryable_server_error(reason: str) -> None:
    body = candidate([], reason)
    with pytest.raises(errors.ServerError, match=reason) as info:
        await provider(Upstream(body=body)).chat(chat(), T)
    assert info.value.retryable and info.value.code == reason
    with pytest.raises(errors.ServerError, match=reason):
        await collect(provider(Upstream(body=b"data: " + body + b"\n\n", sse=True)), chat())


async def test_several_candidates_become_several_choices() -> None:
    body = orjson.dumps(
        {
            "candidates": [
                {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
                {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
            ]
        }
    )
    resp = await provider(Upstream(body=body)).chat(chat(n=2), T)
    assert [(c.index, c.message.content, c.finish_reason) for c in resp.choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]
    assert resp.model == "gemini-2.5-flash" and resp.id.startswith("chatcmpl-")
    assert resp.usage is None


async def test_blocked_prompt_is_content_filtered() -> None:
    up = Upstream(body=fixture("blocked_prompt.json"))
    with pytest.raises(errors.ContentFilteredError, match="PROHIBITED_CONTENT") as info:
        await provider(up).chat(chat(), T)
    assert info.value.status == 400 and not info.value.retryable
    up = Upstream(body=fixture("stream_blocked.sse"), sse=True)
    with pytest.raises(errors.ContentFilteredError, match="SAFETY"):
        await collect(provider(up), chat(stream=True))


# --- streaming --------------------------------------------------------------------------------


async def test_stream_text_folds_to_the_non_stream_answer() -> None:
    up = Upstream(body=fixture("stream_text.sse"), sse=True)
    chunks = await collect(provider(up), chat(stream=True))
    sent = up.posts[0]
    assert sent.url.path == STREAM
    assert dict(sent.url.params) == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == KEY
    assert up.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}

    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.text for c in chunks] == ["", "Hello! ", "How can I help?", ""]
    assert chunks[2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert {c.id for c in chunks} == {"resp-text-1"}
    assert all(c.provider == "gem" for c in chunks)

    expected = await provider(Upstream(body=fixture("chat_text.json"))).chat(chat(), T)
    folded = fold(chunks)
    assert folded.model_dump(exclude={"created"}) == expected.model_dump(exclude={"created"})
    assert folded.provider == expected.provider == "gem"


async def test_stream_function_calls_fold_to_the_non_stream_answer() -> None:
    up = Upstream(body=fixture("stream_function_call.sse"), sse=True)
    chunks = await collect(provider(up), chat(stream=True))
    deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or []]
    assert [(d.index, d.type, d.function and d.function.name) for d in deltas] == [
        (0, "function", "get_weather"),
        (1, "function", "get_weather"),
        (2, "function", "get_time"),
    ]
    assert all(d.id for d in deltas) and deltas[2].id == "fc-77"
    assert [ch.finish_reason for c in chunks for ch in c.choices] == [None, "tool_calls"]

    expected = await provider(Upstream(body=fixture("chat_parallel_calls.json"))).chat(chat(), T)
    folded = fold(chunks)
    assert folded.finish_reason == expected.finish_reason == "tool_calls"
    assert folded.message.content is expected.message.content is None
    assert [(c.function.name, c.function.arguments) for c in folded.tool_calls] == [
        (c.function.name, c.function.arguments) for c in expected.tool_calls
    ]
    assert folded.usage == expected.usage and folded.id == expected.id


async def test_stream_without_finish_reason_is_incomplete() -> None:
    up = Upstream(body=fixture("stream_truncated.sse"), sse=True)
    got: list[ChatChunk] = []
    with pytest.raises(errors.IncompleteStreamError, match="finishReason") as info:
        async for c in provider(up).stream(chat(stream=True), T):
            got.append(c)
    assert info.value.retryable
    assert "".join(c.text for c in got) == "Once upon a time"  # delivered, then the error


async def test_stream_error_event_and_malformed_chunk_raise_typed_errors() -> None:
    up = Upstream(body=fixture("stream_error_event.sse"), sse=True)
    with pytest.raises(errors.OverloadedError, match="overloaded") as info:
        await collect(provider(up), chat(stream=True))
    assert (info.value.status, info.value.code) == (503, "UNAVAILABLE")
    up = Upstream(body=fixture("stream_malformed.sse"), sse=True)
    with pytest.raises(errors.ServerError, match="not valid JSON"):
        await collect(provider(up), chat(stream=True))


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "cls", "code", "retryable", "retry_after"),
    [
        (
            "error_400_invalid_argument.json",
            400,
            errors.BadRequestError,
            "INVALID_ARGUMENT",
            False,
            None,
        ),
        (
            "error_400_api_key_invalid.json",
            400,
            errors.AuthenticationError,
            "INVALID_ARGUMENT",
            False,
            None,
        ),
        (
            "error_400_context.json",
            400,
            errors.ContextWindowExceededError,
            "INVALID_ARGUMENT",
            False,
            None,
        ),
        (
            "error_400_failed_precondition.json",
            400,
            errors.BadRequestError,
            "FAILED_PRECONDITION",
            False,
            None,
        ),
        ("error_403.json", 403, errors.PermissionDeniedError, "PERMISSION_DENIED", False, None),
        ("error_404.json", 404, errors.NotFoundError, "NOT_FOUND", False, None),
        ("error_429_quota.json", 429, errors.RateLimitError, "RESOURCE_EXHAUSTED", True, 59.0),
        ("error_429_daily.json", 429, errors.RateLimitError, "RESOURCE_EXHAUSTED", False, 1.5),
        ("error_500.json", 500, errors.ServerError, "INTERNAL", True, None),
        ("error_503.json", 503, errors.OverloadedError, "UNAVAILABLE", True, None),
        ("error_504.json", 504, errors.TimeoutError, "DEADLINE_EXCEEDED", True, None),
    ],
)
async def test_error_bodies_map_to_typed_errors(
    name: str,
    status: int,
    cls: type[errors.ProviderError],
    code: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    up = Upstream(status, fixture(name))
    with pytest.raises(cls) as info:
        await provider(up).chat(chat(), T)
    e = info.value
    assert type(e) is cls
    assert (e.status, e.code, e.retryable, e.retry_after, e.provider, e.model) == (
        status,
        code,
        retryable,
        retry_after,
        "gem",
        "gemini-2.5-flash",
    )
    assert isinstance(e.body, dict) and e.body["error"]["status"] == code
    # the same mapping applies when the error arrives before a stream starts
    with pytest.raises(cls) as streamed:
        await collect(provider(up), chat(stream=True))
    assert (streamed.value.status, streamed.value.retry_after) == (status, retry_after)


async def test_rate_limit_without_retry_info_uses_the_retry_after_header() -> None:
    up = Upstream(429, fixture("error_429_plain.json"), {"retry-after": "7"})
    with pytest.raises(errors.RateLimitError) as info:
        await provider(up).chat(chat(), T)
    assert info.value.retry_after == 7.0 and info.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", errors.ServerError),
        (503, b"", errors.OverloadedError),
        (401, b'{"error": "unauthorized"}', errors.AuthenticationError),
        (
            409,
            b'{"error": {"code": 409, "message": "busy", "status": "ABORTED"}}',
            errors.ServerError,
        ),
    ],
)
async def test_unusual_error_bodies_are_still_typed(
    status: int, body: bytes, cls: type[errors.ProviderError]
) -> None:
    with pytest.raises(cls) as info:
        await provider(Upstream(status, body)).chat(chat(), T)
    assert type(info.value) is cls and info.value.status == status


@pytest.mark.parametrize("key", [KEY, "plain-test-key-7f3a9b2c"])
async def test_key_never_in_repr_or_errors(key: str) -> None:
    body = fixture("error_403.json").replace(KEY.encode(), key.encode())
    p = provider(Upstream(403, body), key=key)
    with pytest.raises(errors.PermissionDeniedError) as info:
        await p.chat(chat(), T)
    e = info.value
    texts = (repr(p), str(e), repr(e), e.message, repr(e.body), repr(p.api_key), f"{p.api_key}")
    for text in texts:
        assert key not in text
    assert "has been suspended" in str(e)


# --- embeddings -------------------------------------------------------------------------------


async def test_embeddings_batch_with_dimensions() -> None:
    up = Upstream(body=fixture("embeddings.json"))
    resp = await provider(up).embed(
        EmbeddingRequest(
            model="gemini-embedding-001",
            input=["hello world", "hi"],
            dimensions=3,
            encoding_format="base64",
        ),
        T,
    )
    sent = up.posts[0]
    assert sent.url == "https://gemini.test/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == KEY
    assert up.json == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "outputDimensionality": 3,
                "content": {"parts": [{"text": "hello world"}]},
            },
            {
                "model": "models/gemini-embedding-001",
                "outputDimensionality": 3,
                "content": {"parts": [{"text": "hi"}]},
            },
        ]
    }
    assert resp.vectors == [[0.0123, -0.0456, 0.0789], [-0.5, 0.25, 0.125]]
    assert (resp.model, resp.provider) == ("gemini-embedding-001", "gem")
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == 2 + 1


async def test_embeddings_single_input_without_dimensions() -> None:
    up = Upstream(body=b'{"embeddings": [{"values": [1, 2]}]}')
    resp = await provider(up).embed(EmbeddingRequest(model="text-embedding-004", input="x"), T)
    assert up.json == {
        "requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "x"}]}}]
    }
    assert resp.vectors == [[1.0, 2.0]]


async def test_embeddings_count_mismatch_is_a_server_error() -> None:
    up = Upstream(body=fixture("embeddings.json"))
    with pytest.raises(errors.ServerError, match="not 1 embeddings"):
        await provider(up).embed(EmbeddingRequest(model="m", input=["only one"]), T)


@pytest.mark.parametrize(
    ("kw", "param"), [({"task_type": "RETRIEVAL_QUERY"}, "task_type"), ({"user": "u"}, "user")]
)
async def test_embedding_params_gemini_cannot_honour_are_refused(
    kw: dict[str, Any], param: str
) -> None:
    up = Upstream(body=fixture("embeddings.json"))
    with pytest.raises(errors.BadRequestError, match=param) as info:
        await provider(up).embed(EmbeddingRequest(model="m", input="x", **kw), T)
    assert info.value.param == param
    assert up.requests == []


async def test_key_echoed_in_a_stream_error_event_is_scrubbed() -> None:
    key = "plain-test-key-7f3a9b2c"
    event = {
        "error": {"code": 403, "message": f"key {key} suspended", "status": "PERMISSION_DENIED"}
    }
    up = Upstream(body=b"data: " + orjson.dumps(event) + b"\n\n", sse=True)
    with pytest.raises(errors.PermissionDeniedError) as info:
        await collect(provider(up, key=key), chat(stream=True))
    assert key not in str(info.value) and "suspended" in str(info.value)
    assert key not in repr(info.value.body)


async def test_image_without_content_length_is_capped_while_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gemini_module, "MAX_IMAGE_BYTES", 1000)
    sent: list[httpx.Request] = []

    async def body() -> Any:
        for _ in range(10):
            yield b"\0" * 300

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=body(), headers={"content-type": "image/png"})

    p = GeminiProvider(
        api_key=Secret(KEY), http=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )
    content = [{"type": "image_url", "image_url": {"url": "https://img.test/endless.png"}}]
    with pytest.raises(errors.BadRequestError, match="byte limit"):
        await p.chat(chat(messages=[{"role": "user", "content": content}]), T)
    assert [r.method for r in sent] == ["GET"]
    assert "content-length" not in sent[0].headers


# --- contract additions: thought signatures, silently-droppable fields --------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_thought_signature_survives_a_tool_round_trip() -> None:
    up = Upstream(body=fixture("chat_thought_signature.json"))
    p = provider(up)
    resp = await p.chat(chat(tools=[WEATHER]), T)
    call = resp.tool_calls[0]
    assert call.extra_content == {"google": {"thought_signature": "c2lnLW9zbG8="}}
    # the caller sends the assistant turn back (as an OpenAI client would, JSON round trip)
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        orjson.loads(resp.message.model_dump_json(exclude_none=True)),
        {"role": "tool", "tool_call_id": call.id, "content": "4C"},
    ]
    await p.chat(chat(messages=history, tools=[WEATHER]), T)
    model_turn = up.json["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnLW9zbG8="


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
                                "image_url": {
                                    "url": "data:image/png;base64,AAAA",
                                    "detail": "high",
                                },
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.detail",
        ),
    ],
)
async def test_fields_gemini_cannot_carry_are_refused_by_name(
    kw: dict[str, Any], param: str
) -> None:
    up = Upstream(body=fixture("chat_text.json"))
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(**kw), T)
    assert info.value.param == param and param in str(info.value)
    assert up.requests == []
