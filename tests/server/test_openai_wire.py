"""The OpenAI client protocol: parsing requests, and rendering answers, streams and embeddings
that the official openai SDK parses (through a mock transport: no network, no server)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion
from tests.server.wire_support import Recorder, adapter_chunks, sse_recorder

from aiwire import errors
from aiwire.server import openai_wire
from aiwire.server.openai_wire import (
    StreamRenderer,
    parse_chat,
    parse_embeddings,
    render_chat,
    render_embeddings,
)
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingResponse,
    EmbeddingUsage,
    FunctionCall,
    Message,
    StreamAccumulator,
    ToolCall,
    Usage,
)

MakeClient = Callable[..., openai.OpenAI]


def body(**kw: Any) -> bytes:
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return orjson.dumps(kw)


def bad(raw: bytes, parse: Callable[[bytes], Any] = parse_chat) -> errors.BadRequestError:
    with pytest.raises(errors.BadRequestError) as info:
        parse(raw)
    assert info.value.status == 400
    return info.value


# --- parse_chat -------------------------------------------------------------------------------


def test_parse_chat_keeps_every_field_and_extras() -> None:
    req = parse_chat(
        body(
            messages=[
                {"role": "system", "content": "Be terse."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "look", "arguments": '{"q":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            ],
            tools=[{"type": "function", "function": {"name": "look", "parameters": {}}}],
            tool_choice={"type": "function", "function": {"name": "look"}},
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=99,
            reasoning_effort="low",
        )
    )
    assert isinstance(req, ChatRequest)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].parts[1].type == "image_url"
    assert req.messages[2].tool_calls is not None
    assert req.messages[2].tool_calls[0].function.arguments == '{"q":1}'
    assert req.n == 2 and req.stream is True  # n > 1 with stream is allowed
    assert req.stream_options is not None and req.stream_options.include_usage is True
    assert req.output_limit == 99
    assert req.model_extra == {"reasoning_effort": "low"}


def test_malformed_json_names_the_position() -> None:
    err = bad(b'{"model": "m", "messages": [}')
    assert "parse the JSON body" in err.message
    assert "line 1 column" in err.message


@pytest.mark.parametrize("raw", [b"[]", b'"hi"', b"3", b"null"])
def test_body_must_be_an_object(raw: bytes) -> None:
    assert "must be a JSON object" in bad(raw).message


def test_validation_error_names_the_field_path() -> None:
    err = bad(body(messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]))
    assert err.param == "messages[1].role"
    assert "'messages[1].role'" in err.message
    assert err.code == "invalid_value"


def test_validation_error_path_skips_union_tags() -> None:
    err = bad(body(messages=[{"role": "user", "content": [{"type": "text"}]}]))
    assert err.param == "messages[0].content[0].text"
    assert err.code == "missing_required_parameter"

    err = bad(body(temperature="hot"))
    assert err.param == "temperature"
    assert err.code == "invalid_type"


def test_missing_required_fields_and_empty_messages() -> None:
    err = bad(orjson.dumps({"messages": [{"role": "user", "content": "x"}]}))
    assert err.param == "model"
    assert err.message == "Missing required parameter: 'model'."
    assert bad(body(messages=[])).param == "messages"


BRIEF_FIELDS = [
    "base_url",
    "api_base",
    "api_key",
    "api_version",
    "azure_endpoint",
    "custom_llm_provider",
    "extra_headers",
    "upstream",
]


@pytest.mark.parametrize("field", BRIEF_FIELDS)
def test_a_client_cannot_choose_the_upstream(field: str) -> None:
    err = bad(body(**{field: "https://evil.example/v1"}))
    assert err.code == "unsupported_parameter"
    assert err.param == field
    nested = bad(body(extra_body={field: "sk-client-key"}))
    assert nested.code == "unsupported_parameter"
    assert nested.param == f"extra_body.{field}"
    emb = bad(orjson.dumps({"model": "e", "input": "x", field: "y"}), parse_embeddings)
    assert emb.param == field


def test_upstream_fields_are_checked_before_validation() -> None:
    # Even an otherwise invalid body is refused for its upstream field first: nothing of the
    # client's choice of upstream is ever looked at further.
    err = bad(orjson.dumps({"api_key": "sk-x"}))
    assert err.code == "unsupported_parameter"


def test_parse_embeddings() -> None:
    req = parse_embeddings(orjson.dumps({"model": "e", "input": ["a", "b"], "dimensions": 8}))
    assert req.inputs == ["a", "b"] and req.dimensions == 8
    err = bad(orjson.dumps({"model": "e", "input": [1, 2]}), parse_embeddings)
    assert err.param is not None and err.param.startswith("input")
    assert bad(b"{", parse_embeddings).code == "invalid_json"


# --- render_chat ------------------------------------------------------------------------------


def text_response() -> ChatResponse:
    return ChatResponse(
        id="chatcmpl-1",
        created=1700000000,
        model="gpt-4o-mini-2024-07-18",
        choices=[Choice(message=Message(role="assistant", content="Hello!"), finish_reason="stop")],
        usage=Usage.of(82, 17, cached_input_tokens=64),
        system_fingerprint="fp_1",
        provider="openai-main",
        deployment="eu",
    )


def tool_response() -> ChatResponse:
    calls = [
        ToolCall(
            id="call_1", function=FunctionCall(name="get_weather", arguments='{"city":"Oslo"}')
        ),
        ToolCall(
            id="call_2",
            function=FunctionCall(name="get_time", arguments="{}"),
            extra_content={"google": {"thought_signature": "c2ln"}},
        ),
    ]
    return ChatResponse(
        id="chatcmpl-2",
        created=1700000001,
        model="m",
        choices=[
            Choice(
                message=Message(role="assistant", content=None, tool_calls=calls),
                finish_reason="tool_calls",
            )
        ],
        usage=Usage.of(10, 5),
    )


@pytest.mark.parametrize("make", [text_response, tool_response])
def test_render_chat_equals_the_pydantic_dump(make: Callable[[], ChatResponse]) -> None:
    resp = make()
    rendered = orjson.loads(render_chat(resp))
    expected = resp.model_dump(mode="json", exclude_none=True)
    if resp.tool_calls:
        expected["choices"][0]["message"]["content"] = None
    assert rendered == expected
    assert "provider" not in rendered and "deployment" not in rendered


def test_render_chat_is_an_sdk_chat_completion() -> None:
    text = ChatCompletion.model_validate(orjson.loads(render_chat(text_response())))
    assert text.choices[0].message.content == "Hello!"
    assert text.usage is not None and text.usage.prompt_tokens_details is not None
    assert text.usage.prompt_tokens_details.cached_tokens == 64

    raw = orjson.loads(render_chat(tool_response()))
    message = raw["choices"][0]["message"]
    assert "content" in message and message["content"] is None
    tools = ChatCompletion.model_validate(raw)
    calls = tools.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert tools.choices[0].finish_reason == "tool_calls"


def test_render_chat_always_sends_cached_tokens() -> None:
    resp = text_response()
    resp.usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    usage = orjson.loads(render_chat(resp))["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_the_sdk_reads_a_rendered_answer(openai_client: MakeClient) -> None:
    rec = Recorder(render_chat(tool_response()))
    client = openai_client(rec)
    out = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}]
    )
    assert rec.requests[0].url.path == "/v1/chat/completions"
    assert out.id == "chatcmpl-2"
    calls = out.choices[0].message.tool_calls or []
    assert orjson.loads(calls[0].function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]


# --- streaming --------------------------------------------------------------------------------


def render_stream(chunks: list[ChatChunk], include_usage: bool | None) -> bytes:
    options = {"stream_options": {"include_usage": include_usage}} if include_usage else {}
    renderer = StreamRenderer(ChatRequest(model="client-model", messages=[], **options))
    return b"".join(renderer.render(c) for c in chunks) + renderer.done()


def sdk_stream(
    make: MakeClient, raw: bytes, include_usage: bool | None
) -> list[openai.types.chat.ChatCompletionChunk]:
    client = make(sse_recorder(raw))
    kwargs: dict[str, Any] = {}
    if include_usage is not None:
        kwargs["stream_options"] = {"include_usage": include_usage}
    stream = client.chat.completions.create(
        model="client-model",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        **kwargs,
    )
    return list(stream)


def data_lines(raw: bytes) -> list[bytes]:
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") and e.count(b"\n") == 0 for e in events)
    return [e[len(b"data: ") :] for e in events]


TEXT_STREAMS = [
    ("openai", "stream_text.sse", "Hello! How can I help?", Usage.of(82, 17, 64)),
    ("anthropic", "stream_text.sse", "Hello! How can I help?", Usage.of(2112, 25, 2000)),
    ("gemini", "stream_text.sse", "Hello! How can I help?", Usage.of(120, 40, 64)),
]


@pytest.mark.parametrize(("adapter", "fixture", "text", "usage"), TEXT_STREAMS)
@pytest.mark.parametrize("include_usage", [True, False, None])
def test_text_stream_through_the_sdk(
    openai_client: MakeClient,
    adapter: str,
    fixture: str,
    text: str,
    usage: Usage,
    include_usage: bool | None,
) -> None:
    chunks = adapter_chunks(adapter, fixture)
    raw = render_stream(chunks, include_usage)
    payloads = data_lines(raw)
    assert payloads[-1] == b"[DONE]"
    decoded = [orjson.loads(p) for p in payloads[:-1]]
    assert len({d["id"] for d in decoded}) == 1  # one id for the whole stream

    received = sdk_stream(openai_client, raw, include_usage)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == text
    finishes = [c.choices[0].finish_reason for c in received if c.choices]
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"
    with_usage = [c for c in received if c.usage is not None]
    if include_usage:
        assert all("usage" in d for d in decoded)  # `"usage": null` on every other chunk
        assert len(with_usage) == 1 and received[-1] is with_usage[0]
        assert received[-1].choices == []
        got = with_usage[0].usage
        assert got is not None and got.prompt_tokens == usage.prompt_tokens
        assert got.completion_tokens == usage.completion_tokens
        assert got.prompt_tokens_details is not None
        assert got.prompt_tokens_details.cached_tokens == usage.cached_input_tokens
    else:
        assert with_usage == []
        assert all("usage" not in d for d in decoded)
        assert all(d["choices"] for d in decoded)  # no choices-less usage chunk either


TOOL_STREAMS = [
    ("openai", "stream_tool_calls.sse"),  # fragments of two calls interleaved by index
    ("anthropic", "stream_tool_use.sse"),  # text, then calls; usage on the finish chunk
    ("gemini", "stream_function_call.sse"),  # whole calls, two in one chunk, extra_content
]


@pytest.mark.parametrize(("adapter", "fixture"), TOOL_STREAMS)
def test_tool_call_stream_through_the_sdk(
    openai_client: MakeClient, adapter: str, fixture: str
) -> None:
    chunks = adapter_chunks(adapter, fixture)
    expected = StreamAccumulator()
    for c in chunks:
        expected.add(c)
    want = expected.response()

    received = sdk_stream(openai_client, render_stream(chunks, True), True)
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for chunk in received:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""
    assert "".join(text) == want.text
    got = [(s["id"], s["name"], orjson.loads(s["arguments"])) for _, s in sorted(calls.items())]
    assert got == [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in want.tool_calls
    ]
    assert len(got) >= 2
    # exactly one closing chunk, with the upstream's usage (the OpenAI fixture reports none)
    assert [c for c in received if not c.choices] == [received[-1]]
    usage = received[-1].usage
    assert (usage.total_tokens if usage else None) == (
        want.usage.total_tokens if want.usage else None
    )
    assert (want.usage is None) == (adapter == "openai")


def test_gemini_thought_signature_reaches_the_client() -> None:
    chunks = adapter_chunks("gemini", "stream_function_call.sse")
    raw = render_stream(chunks, False)
    first = orjson.loads(data_lines(raw)[0])
    call = first["choices"][0]["delta"]["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": "c2lnbmF0dXJl"}}


def test_usage_on_the_finish_chunk_moves_to_the_closing_chunk() -> None:
    finish = ChatChunk(
        id="c1",
        model="m",
        choices=[ChunkChoice(delta=Delta(), finish_reason="stop")],
        usage=Usage.of(5, 6),
    )
    renderer = StreamRenderer(
        ChatRequest(model="m", messages=[], stream_options={"include_usage": True})
    )
    line = orjson.loads(data_lines(renderer.render(finish))[0])
    assert line["usage"] is None and line["choices"][0]["finish_reason"] == "stop"
    closing, done = data_lines(renderer.done())
    assert orjson.loads(closing)["choices"] == []
    assert orjson.loads(closing)["usage"]["total_tokens"] == 11
    assert done == b"[DONE]"


def test_a_usage_only_chunk_renders_nothing() -> None:
    renderer = StreamRenderer(ChatRequest(model="m", messages=[]))
    assert renderer.render(ChatChunk(id="c", model="m", usage=Usage.of(1, 2))) == b""
    assert renderer.done() == b"data: [DONE]\n\n"


def test_asked_for_usage_but_none_came() -> None:
    renderer = StreamRenderer(
        ChatRequest(model="m", messages=[], stream_options={"include_usage": True})
    )
    renderer.render(ChatChunk(id="c", model="m", choices=[ChunkChoice(delta=Delta(content="x"))]))
    closing = orjson.loads(data_lines(renderer.done())[0])
    assert closing["choices"] == [] and closing["usage"] is None


def test_mid_stream_error_raises_in_the_sdk(openai_client: MakeClient) -> None:
    chunks = adapter_chunks("openai", "stream_text.sse")[:2]
    renderer = StreamRenderer(ChatRequest(model="m", messages=[]))
    raw = b"".join(renderer.render(c) for c in chunks)
    raw += renderer.error(errors.OverloadedError("upstream overloaded", retry_after=2))
    payload = orjson.loads(data_lines(raw)[-1])
    assert payload == {
        "error": {
            "message": "upstream overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": None,
        }
    }
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in sdk_stream(openai_client, raw, None):
            received.append(chunk.choices[0].delta.content or "")
    assert "upstream overloaded" in str(info.value)


def test_an_unexpected_exception_mid_stream_says_nothing_of_itself() -> None:
    renderer = StreamRenderer(ChatRequest(model="m", messages=[]))
    raw = renderer.error(KeyError("secret internal detail"))
    assert b"secret" not in raw
    assert orjson.loads(data_lines(raw)[0])["error"]["type"] == "api_error"


# --- embeddings -------------------------------------------------------------------------------

VECTORS = [[0.5, -0.25, 1.0, 0.1], [3.0, 0.0, -1.5, 1 / 3]]


def embedding_response() -> EmbeddingResponse:
    return EmbeddingResponse(
        data=[Embedding(index=i, embedding=v) for i, v in enumerate(VECTORS)],
        model="text-embedding-3-small",
        usage=EmbeddingUsage(prompt_tokens=8, total_tokens=8),
    )


def test_base64_is_little_endian_float32() -> None:
    out = orjson.loads(render_embeddings(embedding_response(), "base64"))
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert raw == struct.pack("<4f", *VECTORS[0])


def test_embeddings_through_the_sdk_default_base64(openai_client: MakeClient) -> None:
    def handler(request: Any) -> Any:
        asked = orjson.loads(request.content)
        assert asked["encoding_format"] == "base64"  # the SDK's default
        req = parse_embeddings(request.content)
        return Recorder(render_embeddings(embedding_response(), req.encoding_format))(request)

    out = openai_client(handler).embeddings.create(model="e", input=["a", "b"])
    got = [d.embedding for d in out.data]
    assert len(got) == 2
    for g, want in zip(got, VECTORS, strict=True):
        assert g == pytest.approx(want, rel=1e-6)  # float32 precision
    assert out.usage.prompt_tokens == 8


def test_embeddings_floats_when_asked(openai_client: MakeClient) -> None:
    rec = Recorder(render_embeddings(embedding_response(), "float"))
    out = openai_client(rec).embeddings.create(model="e", input="a", encoding_format="float")
    assert [d.embedding for d in out.data] == VECTORS  # exact: no float32 round trip
    assert orjson.loads(rec.requests[0].content)["encoding_format"] == "float"


def test_float_rendering_is_the_default() -> None:
    assert (
        orjson.loads(render_embeddings(embedding_response()))["data"][1]["embedding"]
        == (VECTORS[1])
    )
    assert openai_wire.encode_base64([1.0]) == base64.b64encode(struct.pack("<f", 1.0)).decode()


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("fingerprint", ["fp_9", None])
def test_the_text_fast_path_equals_the_general_rendering(
    include_usage: bool, fingerprint: str | None
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    renderer = StreamRenderer(ChatRequest(model="m", messages=[], **options))
    text = ChatChunk(
        id="chatcmpl-z",
        created=7,
        model='m "quoted"',
        system_fingerprint=fingerprint,
        choices=[ChunkChoice(delta=Delta(content='a "b"\n\u00e9'))],
    )
    fast = renderer.render(text)
    general = renderer.render_general(text)
    assert fast.startswith(b"data: ") and fast.endswith(b"}\n\n")
    assert orjson.loads(fast[6:]) == orjson.loads(general[6:])
    assert ("usage" in orjson.loads(fast[6:])) is include_usage
