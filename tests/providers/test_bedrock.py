"""Bedrock adapter against payloads written from Bedrock's documented shapes (fixtures/bedrock):
Converse requests and answers, ConverseStream event streams, errors, and embeddings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.cloud import isolate_aws
from tests.providers.support import FIXTURES, T, Upstream, fold, read_fixture

from aiwire import errors
from aiwire.providers.base import FEATURES, Support
from aiwire.providers.bedrock import BedrockProvider
from aiwire.secrets import Secret
from aiwire.simulator.bedrock_api import encode_message
from aiwire.types import ChatChunk, ChatRequest, EmbeddingRequest

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleS0xMjM0NTY="
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "top_song",
        "description": "The most popular song on a radio station",
        "parameters": {
            "type": "object",
            "properties": {"sign": {"type": "string"}},
            "required": ["sign"],
        },
    },
}


@pytest.fixture(autouse=True)
def no_machine_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


def fixture(name: str) -> bytes:
    return read_fixture("bedrock", name)


def frames(name: str) -> bytes:
    """A ConverseStream body: each line of a .jsonl fixture as one event-stream message."""
    out = b""
    for line in (FIXTURES / "bedrock" / name).read_text().splitlines():
        item = json.loads(line)
        if "event" in item:
            headers = {
                ":event-type": item["event"],
                ":content-type": "application/json",
                ":message-type": "event",
            }
        else:
            headers = {
                ":exception-type": item["exception"],
                ":content-type": "application/json",
                ":message-type": "exception",
            }
        out += encode_message(headers, orjson.dumps(item["payload"]))
    return out


class Pieces(httpx.AsyncByteStream):
    """A body delivered in pieces of ``size`` bytes (cutting messages anywhere), optionally
    breaking off with a network error after ``cut`` bytes."""

    def __init__(self, data: bytes, size: int = 7, cut: int | None = None) -> None:
        self.data, self.size, self.cut = data, size, cut

    async def __aiter__(self) -> AsyncIterator[bytes]:
        end = len(self.data) if self.cut is None else self.cut
        for i in range(0, end, self.size):
            yield self.data[i : min(i + self.size, end)]
        if self.cut is not None:
            raise httpx.ReadError("connection reset by peer")


def stream_upstream(
    data: bytes, *, size: int = 7, cut: int | None = None, seen: list[httpx.Request] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(
            200,
            headers={"content-type": "application/vnd.amazon.eventstream"},
            stream=Pieces(data, size, cut),
        )

    return handler


def provider(up: Callable[[httpx.Request], httpx.Response], **kw: Any) -> BedrockProvider:
    kw.setdefault("options", {"region": "us-east-1"})
    return BedrockProvider(
        name="bed",
        api_key=Secret(API_KEY),
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
        **kw,
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", MODEL)
    return ChatRequest(**kw)


async def collect(p: BedrockProvider, request: ChatRequest) -> list[ChatChunk]:
    return [c async for c in p.stream(request, T)]


# --- request translation ----------------------------------------------------------------------


async def test_text_chat_url_auth_body_and_response() -> None:
    up = Upstream(body=fixture("converse_text.json"), headers={"x-amzn-RequestId": "req-1"})
    request = chat(
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Why retry?"},
        ],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=256,
        stop=["END"],
    )
    resp = await provider(up).chat(request, T)
    sent = up.posts[0]
    assert str(sent.url) == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
    )
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert up.json == {
        "messages": [{"role": "user", "content": [{"text": "Why retry?"}]}],
        "system": [{"text": "Be terse."}, {"text": "Answer in English."}],
        "inferenceConfig": {
            "maxTokens": 256,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }
    assert resp.text == "Here is a short answer: retries with backoff keep integrations calm."
    assert (resp.finish_reason, resp.model, resp.provider, resp.request_id) == (
        "stop",
        MODEL,
        "bed",
        "req-1",
    )
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (
        125,
        60,
        185,
    )


async def test_tool_round_trip_history_merging_and_tool_results() -> None:
    up = Upstream(body=fixture("converse_text.json"))
    messages = [
        {"role": "user", "content": "Top songs on WZPZ and WKRP?"},
        {"role": "user", "content": "Quickly please."},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "tooluse_a",
                    "type": "function",
                    "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'},
                },
                {
                    "id": "tooluse_b",
                    "type": "function",
                    "function": {"name": "top_song", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "tooluse_b", "content": "Elemental Hotel"},
        {"role": "tool", "tool_call_id": "tooluse_a", "content": '{"song": "Never", "plays": 3}'},
        {"role": "user", "content": "Thanks!"},
    ]
    await provider(up).chat(chat(messages=messages, tools=[WEATHER], tool_choice="auto"), T)
    assert up.json["messages"] == [
        {
            "role": "user",
            "content": [{"text": "Top songs on WZPZ and WKRP?"}, {"text": "Quickly please."}],
        },
        {
            "role": "assistant",
            "content": [
                {"text": "Checking."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_a",
                        "name": "top_song",
                        "input": {"sign": "WZPZ"},
                    }
                },
                {"toolUse": {"toolUseId": "tooluse_b", "name": "top_song", "input": {}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_b",
                        "content": [{"text": "Elemental Hotel"}],
                        "status": "success",
                    }
                },
                {
                    "toolResult": {
                        "toolUseId": "tooluse_a",
                        "content": [{"json": {"song": "Never", "plays": 3}}],
                        "status": "success",
                    }
                },
                {"text": "Thanks!"},
            ],
        },
    ]
    assert up.json["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "top_song",
                    "description": "The most popular song on a radio station",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "top_song"}}, {"tool": {"name": "top_song"}}),
    ],
)
async def test_tool_choice(choice: Any, expected: Any) -> None:
    up = Upstream(body=fixture("converse_text.json"))
    await provider(up).chat(chat(tools=[WEATHER], tool_choice=choice), T)
    assert up.json["toolConfig"].get("toolChoice") == expected


async def test_tool_choice_none_leaves_the_tools_out() -> None:
    up = Upstream(body=fixture("converse_text.json"))
    await provider(up).chat(chat(tools=[WEATHER], tool_choice="none"), T)
    assert "toolConfig" not in up.json


@pytest.mark.parametrize(
    ("kw", "param"),
    [({"tools": [WEATHER], "tool_choice": "none"}, "tool_choice"), ({}, "tools")],
)
async def test_tool_history_without_offered_tools_is_refused_before_sending(
    kw: dict[str, Any], param: str
) -> None:
    up = Upstream(body=fixture("converse_text.json"))
    messages = [
        {"role": "user", "content": "Top song on WZPZ?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "top_song", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Elemental Hotel"},
    ]
    with pytest.raises(errors.BadRequestError, match="requires the tools") as info:
        await provider(up).chat(chat(messages=messages, **kw), T)
    assert info.value.param == param and not up.requests


async def test_strict_tools_and_images_as_bytes() -> None:
    up = Upstream(body=fixture("converse_text.json"))
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    content = [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/jpg;base64,{PNG_B64[:20]}\n{PNG_B64[20:]}"},
        },
    ]
    await provider(up).chat(
        chat(messages=[{"role": "user", "content": content}], tools=[strict]), T
    )
    assert up.json["messages"][0]["content"][1] == {
        "image": {"format": "jpeg", "source": {"bytes": PNG_B64}}
    }
    assert up.json["toolConfig"]["tools"][0]["toolSpec"]["strict"] is True


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"n": 2}, "n"),
        ({"presence_penalty": 0.1}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"user": "u-1"}, "user"),
        ({"parallel_tool_calls": False, "tools": [WEATHER]}, "parallel_tool_calls"),
        (
            {"messages": [{"role": "user", "name": "ann", "content": "Hi"}]},
            "messages[0].name",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url",
        ),
        ({"guardrailConfig": {"guardrailIdentifier": "g"}}, "guardrailConfig"),
    ],
)
async def test_what_bedrock_cannot_honour_is_refused_by_name(
    kw: dict[str, Any], param: str
) -> None:
    up = Upstream(body=fixture("converse_text.json"))
    with pytest.raises(errors.BadRequestError) as info:
        await provider(up).chat(chat(**kw), T)
    assert info.value.param == param and not up.requests


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("data:image/bmp;base64,Qk0=", "png, jpeg, gif and webp"),
        ("data:image/png,notbase64", "data:<mime>;base64"),
    ],
)
async def test_images_bedrock_cannot_take_are_refused_clearly(url: str, match: str) -> None:
    up = Upstream()
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(errors.BadRequestError, match=match):
        await provider(up).chat(chat(messages=[{"role": "user", "content": content}]), T)
    assert not up.requests


def test_capability_declarations() -> None:
    caps = BedrockProvider.capabilities
    assert set(caps.features) <= set(FEATURES)
    assert caps.support("json_schema") is Support.EMULATED
    assert caps.support("image_url") is Support.REFUSED
    assert caps.support("embeddings") is Support.SUPPORTED


async def test_model_ids_are_path_encoded_except_colons() -> None:
    up = Upstream(body=fixture("converse_text.json"))
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    await provider(up, base_url="https://vpce.example.test").chat(chat(model=arn), T)
    assert up.posts[0].url.raw_path == (
        b"/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fabc123"
        b"/converse"
    )


# --- answers ----------------------------------------------------------------------------------


async def test_parallel_tool_calls_with_their_ids() -> None:
    up = Upstream(body=fixture("converse_tool_use.json"))
    resp = await provider(up).chat(chat(tools=[WEATHER]), T)
    assert resp.finish_reason == "tool_calls"
    assert resp.text == "I'll look up both stations."
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in resp.tool_calls] == [
        ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "top_song", {"sign": "WZPZ"}),
        ("tooluse_Q2cLbXS0ScWz0GwA1a2Xw", "top_song", {"sign": "WKRP"}),
    ]


@pytest.mark.parametrize(
    ("name", "prompt", "cached", "total"),
    [("converse_cache_usage.json", 1148, 0, 1448), ("converse_cache_read.json", 1150, 1134, 1400)],
)
async def test_cache_tokens_count_as_prompt_tokens(
    name: str, prompt: int, cached: int, total: int
) -> None:
    resp = await provider(Upstream(body=fixture(name))).chat(chat(), T)
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.cached_input_tokens) == (prompt, cached)
    assert resp.usage.total_tokens == total  # matches Bedrock's totalTokens


async def test_reasoning_blocks_are_not_answer_text() -> None:
    resp = await provider(Upstream(body=fixture("converse_reasoning.json"))).chat(chat(), T)
    assert resp.text == "42"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("a_reason_from_the_future", "stop"),
    ],
)
async def test_stop_reasons(reason: str, expected: str) -> None:
    body = orjson.loads(fixture("converse_text.json"))
    body["stopReason"] = reason
    resp = await provider(Upstream(body=orjson.dumps(body))).chat(chat(), T)
    assert resp.finish_reason == expected


@pytest.mark.parametrize("reason", ["malformed_model_output", "malformed_tool_use"])
async def test_malformed_output_is_a_retryable_server_error(reason: str) -> None:
    body = orjson.loads(fixture("converse_text.json"))
    body["stopReason"] = reason
    with pytest.raises(errors.ServerError) as info:
        await provider(Upstream(body=orjson.dumps(body))).chat(chat(), T)
    assert info.value.retryable and info.value.code == reason


async def test_json_schema_is_a_forced_tool_whose_input_is_the_answer() -> None:
    up = Upstream(body=fixture("converse_json_tool.json"))
    schema = {"type": "object", "properties": {"category": {"type": "string"}}}
    resp = await provider(up).chat(
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "ticket", "schema": schema},
            }
        ),
        T,
    )
    assert up.json["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "ticket",
                    "description": "Answer by calling this tool with the response JSON.",
                    "inputSchema": {"json": schema},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "ticket"}},
    }
    assert json.loads(resp.text) == {"category": "billing", "urgent": True}
    assert resp.finish_reason == "stop" and not resp.tool_calls


async def test_json_object_uses_a_generic_forced_tool_and_refuses_tools_alongside() -> None:
    up = Upstream(body=fixture("converse_text.json"))
    await provider(up).chat(chat(response_format={"type": "json_object"}), T)
    assert up.json["toolConfig"]["toolChoice"] == {"tool": {"name": "response"}}
    with pytest.raises(errors.BadRequestError, match="cannot be combined"):
        await provider(up).chat(chat(response_format={"type": "json_object"}, tools=[WEATHER]), T)


async def test_a_body_that_is_not_a_converse_answer_is_a_server_error() -> None:
    with pytest.raises(errors.ServerError, match="not a Converse response"):
        await provider(Upstream(body=b'{"output": {}}')).chat(chat(), T)


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_stream_folds_to_the_non_stream_answer(size: int) -> None:
    seen: list[httpx.Request] = []
    p = provider(stream_upstream(frames("stream_text.jsonl"), size=size, seen=seen))
    chunks = await collect(p, chat())
    assert seen[0].url.path.endswith("/converse-stream")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # usage closes the stream
    streamed = fold(chunks)
    whole = await provider(Upstream(body=fixture("converse_text.json"))).chat(chat(), T)
    assert streamed.text == whole.text
    assert streamed.finish_reason == whole.finish_reason == "stop"
    assert streamed.usage == whole.usage


async def test_streamed_tool_calls_fold_to_the_non_stream_answer() -> None:
    chunks = await collect(
        provider(stream_upstream(frames("stream_tool_use.jsonl"))), chat(tools=[WEATHER])
    )
    streamed = fold(chunks)
    whole = await provider(Upstream(body=fixture("converse_tool_use.json"))).chat(
        chat(tools=[WEATHER]), T
    )
    assert streamed.text == whole.text

    def calls(resp: Any) -> list[tuple[str, str, Any]]:
        return [(c.id, c.function.name, json.loads(c.function.arguments)) for c in resp.tool_calls]

    assert calls(streamed) == calls(whole) and len(calls(whole)) == 2
    assert streamed.finish_reason == "tool_calls" and streamed.usage == whole.usage


async def test_streamed_json_tool_arrives_as_content() -> None:
    chunks = await collect(
        provider(stream_upstream(frames("stream_json_tool.jsonl"))),
        chat(response_format={"type": "json_schema", "json_schema": {"name": "ticket"}}),
    )
    streamed = fold(chunks)
    assert json.loads(streamed.text) == {"category": "billing", "urgent": True}
    assert streamed.finish_reason == "stop" and not streamed.tool_calls


async def test_streamed_reasoning_is_not_answer_text() -> None:
    streamed = fold(
        await collect(provider(stream_upstream(frames("stream_reasoning.jsonl"))), chat())
    )
    assert streamed.text == "42"


@pytest.mark.parametrize(
    ("name", "cls", "status"),
    [
        ("stream_throttled.jsonl", errors.RateLimitError, 429),
        ("stream_model_error.jsonl", errors.ServerError, 424),
        ("stream_too_long.jsonl", errors.ContextWindowExceededError, 400),
    ],
)
async def test_exceptions_inside_the_stream_are_typed(
    name: str, cls: type[errors.ProviderError], status: int
) -> None:
    got: list[ChatChunk] = []
    with pytest.raises(cls) as info:
        async for chunk in provider(stream_upstream(frames(name))).stream(chat(), T):
            got.append(chunk)
    assert info.value.status == status and info.value.provider == "bed"
    if name == "stream_throttled.jsonl":
        assert fold(got).text == "Here is" and info.value.retryable


async def test_a_stream_without_message_stop_is_incomplete() -> None:
    with pytest.raises(errors.IncompleteStreamError, match="messageStop"):
        await collect(provider(stream_upstream(frames("stream_truncated.jsonl"))), chat())


async def test_a_cut_connection_is_incomplete_unless_the_answer_was_already_whole() -> None:
    data = frames("stream_text.jsonl")
    with pytest.raises(errors.IncompleteStreamError, match="cut"):
        await collect(provider(stream_upstream(data, cut=len(data) // 2)), chat())
    # cut inside the closing metadata event: the answer is whole, only its usage is lost
    metadata = frames_tail("metadata")
    assert data.endswith(metadata)
    cut = len(data) - len(metadata) + 5
    streamed = fold(await collect(provider(stream_upstream(data, cut=cut)), chat()))
    assert streamed.finish_reason == "stop" and streamed.usage is None
    assert streamed.text.endswith("calm.")


def frames_tail(event: str) -> bytes:
    """The encoded last message of stream_text.jsonl (its ``event``)."""
    line = (FIXTURES / "bedrock" / "stream_text.jsonl").read_text().splitlines()[-1]
    item = json.loads(line)
    assert item["event"] == event
    headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(item["payload"]))


async def test_a_corrupt_message_is_a_retryable_server_error() -> None:
    data = bytearray(frames("stream_text.jsonl"))
    data[60] ^= 0x20
    with pytest.raises(errors.ServerError, match="corrupt event stream") as info:
        await collect(provider(stream_upstream(bytes(data))), chat())
    assert info.value.retryable


async def test_events_read_together_with_a_corrupt_one_are_delivered_before_the_error() -> None:
    """One network read may carry good events and then a corrupt one: the good ones reach the
    caller first, so the router knows part of the answer went out and does not retry."""
    data = bytearray(frames("stream_text.jsonl"))
    data[-10] ^= 0x20  # inside the last message (metadata)
    got: list[ChatChunk] = []
    with pytest.raises(errors.ServerError, match="corrupt event stream"):
        async for chunk in provider(stream_upstream(bytes(data), size=len(data))).stream(chat(), T):
            got.append(chunk)
    assert fold(got).text.endswith("calm.") and fold(got).finish_reason == "stop"


async def test_malformed_output_ends_the_stream_with_a_server_error() -> None:
    with pytest.raises(errors.ServerError, match="malformed_model_output"):
        await collect(provider(stream_upstream(frames("stream_malformed_output.jsonl"))), chat())


async def test_an_error_status_before_the_stream_is_mapped() -> None:
    up = Upstream(
        429, b'{"message":"Too many requests"}', {"x-amzn-ErrorType": "ThrottlingException"}
    )
    with pytest.raises(errors.RateLimitError):
        await collect(provider(up), chat())


# --- errors -----------------------------------------------------------------------------------

ERROR_CASES = json.loads(fixture("errors.json"))["cases"]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["name"] for c in ERROR_CASES])
async def test_error_bodies_map_to_typed_errors(case: dict[str, Any]) -> None:
    headers = {"x-amzn-RequestId": "rid-9"}
    if case["type"]:
        headers["x-amzn-ErrorType"] = case["type"]
    body = case.get("text", "").encode() if case["body"] is None else orjson.dumps(case["body"])
    with pytest.raises(errors.ProviderError) as info:
        await provider(Upstream(case["status"], body, headers)).chat(chat(), T)
    e = info.value
    assert type(e).__name__ == case["expect"]
    assert e.retryable is case["retryable"]
    assert (e.status, e.provider, e.model, e.request_id) == (case["status"], "bed", MODEL, "rid-9")
    if case["body"] is not None:
        message = case["body"].get("message") or case["body"].get("Message")
        assert message in e.message


async def test_credentials_never_reach_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-Value/With+Chars")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value-123456")
    echo = b'{"message": "bad token session-token-value-123456 and s3cr3t-Value/With+Chars"}'
    up = Upstream(403, echo, {"x-amzn-ErrorType": "UnrecognizedClientException"})
    p = BedrockProvider(
        name="bed",
        options={"region": "us-east-1"},
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
    )
    with pytest.raises(errors.AuthenticationError) as info:
        await p.chat(chat(), T)
    texts = [str(info.value), repr(info.value), repr(info.value.body), repr(p)]
    for secret in ("s3cr3t-Value/With+Chars", "session-token-value-123456", "AKIAIOSFODNN7EXAMPLE"):
        assert all(secret not in t for t in texts)
    bearer = provider(Upstream(401, f'{{"message":"key {API_KEY} revoked"}}'.encode()))
    with pytest.raises(errors.AuthenticationError) as info2:
        await bearer.chat(chat(), T)
    assert API_KEY not in str(info2.value) and API_KEY not in repr(info2.value.body)


# --- embeddings -------------------------------------------------------------------------------


def embedding_upstream(calls: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        calls.append({"path": request.url.path, "body": body})
        if "inputText" in body:
            vec = [float(len(body["inputText"])), 0.5]
            return httpx.Response(200, json={"embedding": vec, "inputTextTokenCount": 3})
        vectors = [[float(len(t)), 1.0] for t in body["texts"]]
        return httpx.Response(200, json={"embeddings": vectors, "id": "e1", "texts": body["texts"]})

    return handler


async def test_titan_embeds_one_text_per_call_with_dimensions() -> None:
    calls: list[dict[str, Any]] = []
    req = EmbeddingRequest(
        model="amazon.titan-embed-text-v2:0", input=["ab", "abcd"], dimensions=256
    )
    resp = await provider(embedding_upstream(calls)).embed(req, T)
    assert sorted(c["body"]["inputText"] for c in calls) == ["ab", "abcd"]
    assert all(c["body"]["dimensions"] == 256 for c in calls)
    assert calls[0]["path"] == "/model/amazon.titan-embed-text-v2:0/invoke"
    assert resp.vectors == [[2.0, 0.5], [4.0, 0.5]]  # in input order
    assert resp.usage.prompt_tokens == 6 and resp.provider == "bed"


async def test_cohere_embeds_in_batches_of_96() -> None:
    calls: list[dict[str, Any]] = []
    texts = [f"text {i}" for i in range(100)]
    resp = await provider(
        embedding_upstream(calls),
        options={"region": "us-east-1", "cohere_input_type": "search_query"},
    ).embed(EmbeddingRequest(model="cohere.embed-english-v3", input=texts), T)
    assert [len(c["body"]["texts"]) for c in calls] == [96, 4]
    assert calls[0]["body"]["input_type"] == "search_query"
    assert len(resp.vectors) == 100 and resp.vectors[99] == [float(len("text 99")), 1.0]


@pytest.mark.parametrize(
    ("req", "param"),
    [
        ({"model": "amazon.titan-embed-text-v1", "dimensions": 256}, "dimensions"),
        ({"model": "amazon.titan-embed-text-v2:0", "dimensions": 300}, "dimensions"),
        ({"model": "cohere.embed-english-v3", "dimensions": 256}, "dimensions"),
        ({"model": "amazon.titan-embed-text-v2:0", "user": "u"}, "user"),
        ({"model": "amazon.titan-embed-text-v2:0", "truncate": "END"}, "truncate"),
        ({"model": "anthropic.claude-3-haiku-20240307-v1:0"}, "model"),
    ],
)
async def test_embedding_requests_bedrock_cannot_honour_are_refused(
    req: dict[str, Any], param: str
) -> None:
    calls: list[dict[str, Any]] = []
    with pytest.raises(errors.BadRequestError) as info:
        await provider(embedding_upstream(calls)).embed(EmbeddingRequest(input="x", **req), T)
    assert info.value.param == param and not calls
