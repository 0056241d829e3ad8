"""The Anthropic client protocol: parsing Messages requests, and rendering messages and event
streams that the official anthropic SDK parses (through a mock transport)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import orjson
import pytest
from tests.server.wire_support import Recorder, adapter_chunks, sse_recorder

from aiwire import errors
from aiwire.providers.anthropic import to_anthropic
from aiwire.server.anthropic_wire import AnthropicStreamRenderer, parse_messages, render_message
from aiwire.types import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    Message,
    StreamAccumulator,
    ToolCall,
    ToolCallDelta,
    Usage,
)

MakeClient = Callable[..., anthropic.Anthropic]
PNG = "iVBORw0KGgo="

CONVERSATION: dict[str, Any] = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be terse."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo was taken, and in Paris?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://img.test/b.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
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
                    "input": {"city": "Paris", "units": ["c"]},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hurry up."},  # text before results: results move first
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "4°C, rain"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [
                        {"type": "text", "text": "station down"},
                        {"type": "text", "text": "retry later"},
                    ],
                    "is_error": True,
                },
            ],
        },
        {"role": "assistant", "content": "Oslo: 4°C and rain. Paris is unavailable."},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        }
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["\n\nEND"],
    "temperature": 0.2,
    "top_p": 0.9,
    "metadata": {"user_id": "u-123"},
    "stream": True,
    "service_tier": "auto",
}


def bad(body: dict[str, Any]) -> errors.BadRequestError:
    with pytest.raises(errors.BadRequestError) as info:
        parse_messages(orjson.dumps(body))
    assert info.value.status == 400
    return info.value


def minimal(**kw: Any) -> dict[str, Any]:
    return {
        "model": "claude",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
        **kw,
    }


# --- parse_messages ---------------------------------------------------------------------------


def test_a_multi_turn_tool_conversation_becomes_canonical() -> None:
    req = parse_messages(orjson.dumps(CONVERSATION))
    got = [m.model_dump(exclude_none=True) for m in req.messages]
    assert got == [
        {"role": "system", "content": "You are a weather bot.\n\nBe terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo was taken, and in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://img.test/b.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris","units":["c"]}',
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "4°C, rain"},
        {
            "role": "tool",
            "tool_call_id": "toolu_02",
            "content": "Error: station down\nretry later",
        },
        {"role": "user", "content": "Hurry up."},
        {"role": "assistant", "content": "Oslo: 4°C and rain. Paris is unavailable."},
        {"role": "user", "content": "Thanks"},
    ]
    assert req.model == "claude-sonnet-4-20250514"
    assert req.max_tokens == 1024
    assert req.stop == ["\n\nEND"]
    assert (req.temperature, req.top_p, req.user) == (0.2, 0.9, "u-123")
    assert req.stream is True
    assert req.stream_options is not None and req.stream_options.include_usage is True
    assert req.tool_choice == "required"
    assert req.parallel_tool_calls is False
    assert req.tools is not None
    fn = req.tools[0].function
    assert (fn.name, fn.description) == ("get_weather", "Current weather")
    assert fn.parameters == CONVERSATION["tools"][0]["input_schema"]
    assert req.model_extra == {}  # nothing unknown slipped through


def test_parse_then_the_anthropic_adapter_gives_the_conversation_back() -> None:
    """The mirror property: client Anthropic → canonical → upstream Anthropic keeps the turns
    (modulo the documented joins of system blocks and tool-result text)."""
    req = parse_messages(orjson.dumps(CONVERSATION))
    upstream = to_anthropic(req, default_max_tokens=1, stream=True).body
    assert upstream["system"] == "You are a weather bot.\n\nBe terse."
    assert upstream["max_tokens"] == 1024
    assert upstream["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    turns = upstream["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG,
    }
    assert turns[1]["content"][1:] == CONVERSATION["messages"][1]["content"][1:]
    results = turns[2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    assert results[0]["tool_use_id"] == "toolu_01" and results[0]["content"] == "4°C, rain"


def test_tool_choice_variants() -> None:
    for choice, want in [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ]:
        req = parse_messages(orjson.dumps(minimal(tool_choice=choice)))
        got = req.tool_choice if isinstance(req.tool_choice, str) else req.tool_choice.model_dump()
        assert got == want
        assert req.parallel_tool_calls is None
    assert bad(minimal(tool_choice={"type": "maybe"})).param == "tool_choice.type"


def test_missing_max_tokens_is_refused() -> None:
    body = minimal()
    del body["max_tokens"]
    err = bad(body)
    assert err.param == "max_tokens"
    assert "max_tokens" in err.message
    assert bad(minimal(max_tokens=0)).param == "max_tokens"
    assert bad(minimal(max_tokens="10")).param == "max_tokens"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 5),
        ("thinking", {"type": "enabled", "budget_tokens": 2048}),
        ("output_config", {"effort": "high"}),
        ("inference_geo", "eu"),
        ("api_key", "sk-ant-client"),
        ("base_url", "https://evil.test"),
    ],
)
def test_unsupported_fields_are_refused_by_name(field: str, value: Any) -> None:
    err = bad(minimal(**{field: value}))
    assert err.param == field
    assert err.code == "unsupported_parameter"
    assert field in err.message


def test_harmless_hints_are_accepted() -> None:
    req = parse_messages(
        orjson.dumps(
            minimal(
                service_tier="standard_only",
                cache_control={"type": "ephemeral"},
                thinking={"type": "disabled"},
            )
        )
    )
    assert req.model_extra == {}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {}}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "thinking", "thinking": ""}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
        ),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"metadata": {"user_id": "u", "tenant": "t"}}, "metadata.tenant"),
        ({"temperature": "warm"}, "temperature"),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source.type",
        ),
    ],
)
def test_invalid_requests_name_the_field(change: dict[str, Any], param: str) -> None:
    err = bad(minimal(**change))
    assert err.param == param
    assert param in err.message


def test_malformed_json() -> None:
    with pytest.raises(errors.BadRequestError) as info:
        parse_messages(b'{"model": ')
    assert "line 1" in info.value.message


# --- render_message ---------------------------------------------------------------------------


def response(
    *calls: ToolCall, text: str = "Let me check.", finish: Any = "tool_calls"
) -> ChatResponse:
    return ChatResponse(
        id="chatcmpl-abc",
        model="gpt-4o-2024-08-06",
        choices=[
            Choice(
                message=Message(
                    role="assistant", content=text or None, tool_calls=list(calls) or None
                ),
                finish_reason=finish,
            )
        ],
        usage=Usage.of(100, 20, cached_input_tokens=60),
    )


OSLO = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city":"Oslo"}'))


def test_the_sdk_parses_a_rendered_message(anthropic_client: MakeClient) -> None:
    rec = Recorder(render_message(response(OSLO), "claude-via-gateway"))
    msg = anthropic_client(rec).messages.create(
        model="claude-via-gateway",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert rec.requests[0].url.path == "/v1/messages"
    assert msg.id == "msg_chatcmpl-abc"
    assert msg.model == "claude-via-gateway"
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[0].text == "Let me check."  # type: ignore[union-attr]
    tool = msg.content[1]
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == ("call_1", "get_weather", {"city": "Oslo"})
    assert msg.usage.input_tokens == 40
    assert msg.usage.cache_read_input_tokens == 60
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg.usage.output_tokens == 20


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: Any, stop_reason: str) -> None:
    out = orjson.loads(render_message(response(text="x", finish=finish), "m"))
    assert out["stop_reason"] == stop_reason
    assert out["stop_sequence"] is None


def test_invalid_arguments_are_kept_raw_and_empty_text_sends_no_block() -> None:
    broken = ToolCall(id="toolu_9", function=FunctionCall(name="f", arguments='{"a": '))
    listy = ToolCall(id="x", function=FunctionCall(name="g", arguments="[1]"))
    out = orjson.loads(render_message(response(broken, listy, text=""), "m"))
    assert out["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"_raw": '{"a": '}},
        {"type": "tool_use", "id": "x", "name": "g", "input": {"_raw": "[1]"}},
    ]
    resp = response(text="x")
    resp.id = "msg_already"
    assert orjson.loads(render_message(resp, "m"))["id"] == "msg_already"


# --- streaming --------------------------------------------------------------------------------


def render_stream(chunks: list[ChatChunk], model: str = "claude-via-gateway") -> bytes:
    renderer = AnthropicStreamRenderer(model)
    return b"".join(renderer.render(c) for c in chunks) + renderer.finish()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        head, data = block.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        payload = orjson.loads(data[len(b"data: ") :])
        name = head[len(b"event: ") :].decode()
        assert payload["type"] == name
        out.append((name, payload))
    return out


def check_order(evs: list[tuple[str, dict[str, Any]]]) -> None:
    """Anthropic's grammar (§2.4): message_start, then blocks one at a time (start, deltas,
    stop, indices 0..n in order), then message_delta and message_stop."""
    names = [n for n, _ in evs]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    starts = _starts(evs)
    open_index: int | None = None
    next_index = 0
    for name, payload in evs[1:-2]:
        if name == "content_block_start":
            assert open_index is None and payload["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert payload["index"] == open_index
            kind = payload["delta"]["type"]
            assert (
                kind == {"text": "text_delta", "tool_use": "input_json_delta"}[starts[open_index]]
            )
        elif name == "content_block_stop":
            assert payload["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected {name}")
    assert open_index is None


def _starts(evs: list[tuple[str, dict[str, Any]]]) -> dict[int, str]:
    return {p["index"]: p["content_block"]["type"] for n, p in evs if n == "content_block_start"}


STREAMS = [
    ("anthropic", "stream_tool_use.sse"),
    ("anthropic", "stream_text.sse"),
    ("openai", "stream_text.sse"),
    ("openai", "stream_tool_calls.sse"),  # tool-call fragments interleaved by index
    ("gemini", "stream_function_call.sse"),
    ("gemini", "stream_text.sse"),
]


@pytest.mark.parametrize(("adapter", "fixture"), STREAMS)
def test_streams_through_the_sdk(anthropic_client: MakeClient, adapter: str, fixture: str) -> None:
    chunks = adapter_chunks(adapter, fixture)
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    want = acc.response()
    raw = render_stream(chunks)
    check_order(events(raw))

    client = anthropic_client(sse_recorder(raw))
    with client.messages.stream(
        model="claude-via-gateway", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == want.text
    assert final.model == "claude-via-gateway"
    assert "".join(b.text for b in final.content if b.type == "text") == want.text
    tools = [b for b in final.content if b.type == "tool_use"]
    assert [(t.id, t.name, t.input) for t in tools] == [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in want.tool_calls
    ]
    assert final.stop_reason == ("tool_use" if want.tool_calls else "end_turn")
    usage = want.usage or Usage()
    assert final.usage.output_tokens == usage.completion_tokens
    assert final.usage.input_tokens == usage.prompt_tokens - usage.cached_input_tokens
    assert final.usage.cache_read_input_tokens == usage.cached_input_tokens


def test_text_then_tools_opens_and_closes_blocks() -> None:
    evs = events(render_stream(adapter_chunks("anthropic", "stream_tool_use.sse")))
    assert [(n, p.get("index")) for n, p in evs] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert evs[4][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_01Oslo",
        "name": "get_weather",
        "input": {},
    }
    assert evs[-2][1]["usage"]["output_tokens"] == 58


def chunk(delta: Delta, finish: Any = None, usage: Usage | None = None) -> ChatChunk:
    return ChatChunk(
        id="chatcmpl-x",
        model="m",
        choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        usage=usage,
    )


def test_usage_after_the_finish_chunk_is_waited_for() -> None:
    renderer = AnthropicStreamRenderer("claude")
    out = renderer.render(chunk(Delta(role="assistant", content="Hi")))
    out += renderer.render(chunk(Delta(), "length"))
    assert b"message_delta" not in out  # deferred: usage may still come
    out += renderer.render(ChatChunk(id="chatcmpl-x", model="m", usage=Usage.of(30, 7, 10)))
    out += renderer.finish()
    evs = events(out)
    check_order(evs)
    delta = evs[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"] == {
        "output_tokens": 7,
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
    }
    assert evs[0][1]["message"]["id"] == "msg_chatcmpl-x"


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    call = ToolCallDelta(
        index=0, id="call_1", type="function", function=FunctionCallDelta(name="f", arguments="{}")
    )
    chunks = [
        chunk(Delta(tool_calls=[call])),
        chunk(Delta(content="done")),
        chunk(Delta(), "tool_calls"),
    ]
    evs = events(render_stream(chunks))
    check_order(evs)
    assert [p["content_block"]["type"] for n, p in evs if n == "content_block_start"] == [
        "tool_use",
        "text",
    ]


def test_an_empty_stream_is_still_well_formed() -> None:
    evs = events(AnthropicStreamRenderer("claude").finish())
    assert [n for n, _ in evs] == ["message_start", "message_delta", "message_stop"]


def test_mid_stream_error_raises_in_the_sdk(anthropic_client: MakeClient) -> None:
    renderer = AnthropicStreamRenderer("claude")
    raw = renderer.render(chunk(Delta(role="assistant", content="Hel")))
    raw += renderer.error(errors.OverloadedError("Overloaded"))
    assert raw.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    client = anthropic_client(sse_recorder(raw))
    with pytest.raises(anthropic.APIStatusError) as info:  # noqa: SIM117
        with client.messages.stream(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_unexpected_exceptions_are_generic_api_errors() -> None:
    raw = AnthropicStreamRenderer("claude").error(RuntimeError("db password=hunter2"))
    assert b"hunter2" not in raw
    assert events(raw)[0][1]["error"]["type"] == "api_error"
