"""Hugging Face adapter: the OpenAI-compatible routes (Inference Providers, TGI's Messages API)
and TGI's native /generate and /generate_stream, against TGI's documented payloads."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from tests.providers.support import T, Upstream, fold, read_fixture

from aiwire import errors
from aiwire.providers.base import FEATURES, Support
from aiwire.providers.huggingface import HuggingFaceProvider
from aiwire.providers.registry import provider_class
from aiwire.providers.tgi import TGIProvider, render
from aiwire.secrets import Secret
from aiwire.types import ChatChunk, ChatRequest, EmbeddingRequest, Message

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TOKEN = "hf_TESTtokenABCDEFGHIJKLMNOPQRSTUVWXYZ01"
W = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def fixture(name: str) -> bytes:
    return read_fixture("huggingface", name)


@pytest.fixture(autouse=True)
def no_machine_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


def hf(up: Upstream, **kw: Any) -> HuggingFaceProvider:
    kw.setdefault("api_key", Secret(TOKEN))
    return HuggingFaceProvider(
        name="hf", http=httpx.AsyncClient(transport=httpx.MockTransport(up)), **kw
    )


def native(up: Upstream, template: str = "chatml", **options: Any) -> HuggingFaceProvider:
    return hf(
        up,
        base_url="https://tgi.internal.test",
        api_key=None,
        options={"api": "native", "chat_template": template, **options},
    )


def chat(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Hi"}])
    kw.setdefault("model", MODEL)
    return ChatRequest(**kw)


async def collect(p: HuggingFaceProvider, request: ChatRequest) -> list[ChatChunk]:
    return [c async for c in p.stream(request, T)]


# --- tokens and URLs --------------------------------------------------------------------------


async def test_router_default_url_and_hf_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    up = Upstream(body=fixture("chat_router.json"))
    p = HuggingFaceProvider(http=httpx.AsyncClient(transport=httpx.MockTransport(up)))
    resp = await p.chat(chat(), T)
    sent = up.posts[0]
    assert str(sent.url) == "https://router.huggingface.co/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert up.json["model"] == MODEL
    assert resp.text == "Retries with backoff keep integrations calm."
    assert (p.name, resp.provider, resp.usage.total_tokens if resp.usage else 0) == (
        "huggingface",
        "huggingface",
        50,
    )


def test_older_token_variable_and_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ConfigError, match="HF_TOKEN"):
        HuggingFaceProvider(name="hf")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    p = HuggingFaceProvider(name="hf")
    assert p.api_key is not None and p.api_key.source == "env:HUGGING_FACE_HUB_TOKEN"


@pytest.mark.parametrize(
    ("base_url", "gets_token"),
    [
        ("https://xyz123.us-east-1.aws.endpoints.huggingface.cloud/v1", True),
        ("https://router.huggingface.co/hf-inference/v1", True),
        ("https://someone.hf.space/v1", False),  # a Space runs its owner's code
        ("http://127.0.0.1:8080/v1", False),  # a self-hosted TGI
        ("https://huggingface.co.attacker.test/v1", False),
    ],
)
def test_the_environment_token_goes_only_to_hugging_face_hosts(
    monkeypatch: pytest.MonkeyPatch, base_url: str, gets_token: bool
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    p = HuggingFaceProvider(name="hf", base_url=base_url)
    assert (p.api_key is not None) is gets_token


def test_native_mode_is_another_class_of_the_same_type() -> None:
    p = native(Upstream())
    assert type(p) is TGIProvider and p.type == "huggingface"
    assert p.passthrough is False and p.passes_unknown_params is False
    assert type(hf(Upstream())) is HuggingFaceProvider and HuggingFaceProvider.passthrough
    assert provider_class("huggingface") is HuggingFaceProvider


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"options": {"api": "grpc"}}, "options.api"),
        ({"options": {"api": "native"}}, "base_url"),
        (
            {"options": {"api": "native", "chat_template": "jinja"}, "base_url": "http://t"},
            "chat_template",
        ),
    ],
)
def test_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match):
        HuggingFaceProvider(name="hf", api_key=Secret(TOKEN), **kw)


# --- OpenAI-compatible routes -------------------------------------------------------------------


async def test_tool_call_stream_and_usage_chunk() -> None:
    up = Upstream(body=fixture("stream_router_tool_calls.sse"), sse=True)
    streamed = fold(await collect(hf(up), chat(tools=[W])))
    assert up.json["stream"] is True and up.json["stream_options"] == {"include_usage": True}
    assert streamed.finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in streamed.tool_calls] == [{"city": "Oslo"}]
    assert streamed.usage is not None and streamed.usage.total_tokens == 199


async def test_text_stream_folds_to_the_non_stream_answer() -> None:
    whole = await hf(Upstream(body=fixture("chat_router.json"))).chat(chat(), T)
    up = Upstream(body=fixture("stream_router_text.sse"), sse=True)
    streamed = fold(await collect(hf(up), chat()))
    assert (streamed.text, streamed.finish_reason, streamed.usage) == (
        whole.text,
        whole.finish_reason,
        whole.usage,
    )


async def test_vendor_parameters_pass_through() -> None:
    up = Upstream(body=fixture("chat_router.json"))
    await hf(up).chat(chat(top_k=40, repetition_penalty=1.1), T)
    assert up.json["top_k"] == 40 and up.json["repetition_penalty"] == 1.1


@pytest.mark.parametrize(
    ("name", "status", "cls", "retryable"),
    [
        ("error_validation_context.json", 422, errors.ContextWindowExceededError, False),
        ("error_validation.json", 422, errors.BadRequestError, False),
        ("error_overloaded.json", 429, errors.OverloadedError, True),
        ("error_loading.json", 503, errors.OverloadedError, True),
        ("error_generation.json", 500, errors.ServerError, True),
        ("error_402_credits.json", 402, errors.PermissionDeniedError, False),
        ("error_401.json", 401, errors.AuthenticationError, False),
        ("error_404_model.json", 404, errors.NotFoundError, False),
    ],
)
async def test_tgi_and_router_errors_are_typed(
    name: str, status: int, cls: type[errors.ProviderError], retryable: bool
) -> None:
    with pytest.raises(cls) as info:
        await hf(Upstream(status, fixture(name))).chat(chat(), T)
    e = info.value
    assert type(e) is cls and e.status == status and e.retryable is retryable
    if name == "error_loading.json":
        assert e.retry_after == 20.0
    if name == "error_validation_context.json":
        assert e.code == "validation"


async def test_an_error_event_inside_the_stream_is_typed() -> None:
    up = Upstream(body=fixture("stream_router_error.sse"), sse=True)
    got: list[ChatChunk] = []
    with pytest.raises(errors.ServerError, match="CUDA out of memory") as info:
        async for chunk in hf(up).stream(chat(), T):
            got.append(chunk)
    assert fold(got).text == "Retries" and info.value.status == 500


async def test_the_token_never_reaches_errors() -> None:
    body = orjson.dumps({"error": f"token {TOKEN} is not valid"})
    with pytest.raises(errors.AuthenticationError) as info:
        await hf(Upstream(401, body)).chat(chat(), T)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_capabilities_cover_every_feature_and_explain_native_mode() -> None:
    caps = HuggingFaceProvider.capabilities
    assert all(caps.support(f) is Support.SUPPORTED for f in FEATURES)
    assert "options.api: native" in caps.notes["chat"]


# --- native TGI -------------------------------------------------------------------------------


def test_templates_render_the_conversation() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello!"),
        Message(role="user", content="Why retry?"),
    ]
    assert render(messages, "chatml") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhy retry?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render(messages[:2], "llama3") == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render([Message(role="user", content="Once upon a time")], "raw") == "Once upon a time"


async def test_native_generate_request_and_answer() -> None:
    up = Upstream(
        body=fixture("generate.json"),
        headers={"x-prompt-tokens": "7", "x-generated-tokens": "15", "x-request-id": "r1"},
    )
    resp = await native(up).chat(
        chat(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
            max_tokens=64,
            temperature=0.7,
            top_p=0.95,
            stop=["\n\n"],
            seed=42,
            frequency_penalty=0.2,
        ),
        T,
    )
    assert str(up.posts[0].url) == "https://tgi.internal.test/generate"
    assert "authorization" not in up.posts[0].headers  # a self-hosted server gets no HF token
    assert up.json == {
        "inputs": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n",
        "parameters": {
            "details": True,
            "max_new_tokens": 64,
            "temperature": 0.7,
            "do_sample": True,
            "top_p": 0.95,
            "stop": ["\n\n"],
            "seed": 42,
            "frequency_penalty": 0.2,
        },
    }
    assert resp.text == " Deep learning is a subset of machine learning that uses neural networks."
    assert resp.finish_reason == "stop" and resp.request_id == "r1"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (7, 15)


@pytest.mark.parametrize(
    ("kw", "params"),
    [
        ({"temperature": 0}, {"details": True}),  # greedy is TGI's default
        ({"top_p": 1.0}, {"details": True}),  # keeps every token: no-op, which TGI refuses
        (
            {"response_format": {"type": "json_object"}},
            {"details": True, "grammar": {"type": "json", "value": {"type": "object"}}},
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "t", "schema": {"type": "object", "required": ["a"]}},
                }
            },
            {
                "details": True,
                "grammar": {"type": "json", "value": {"type": "object", "required": ["a"]}},
            },
        ),
    ],
)
async def test_native_parameter_mapping(kw: dict[str, Any], params: dict[str, Any]) -> None:
    up = Upstream(body=fixture("generate.json"))
    await native(up, "raw").chat(chat(**kw), T)
    assert up.json["parameters"] == params and up.json["inputs"] == "Hi"


async def test_default_max_tokens_option() -> None:
    up = Upstream(body=fixture("generate.json"))
    await native(up, "raw", default_max_tokens=300).chat(chat(), T)
    assert up.json["parameters"]["max_new_tokens"] == 300


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"tools": [W]}, "tools"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"user": "u"}, "user"),
        ({"top_k": 5}, "top_k"),
        ({"top_p": 0}, "top_p"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "messages",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                ]
            },
            "messages[1]",
        ),
    ],
)
async def test_native_refuses_what_tgi_cannot_do_by_name(kw: dict[str, Any], param: str) -> None:
    up = Upstream(body=fixture("generate.json"))
    with pytest.raises(errors.BadRequestError) as info:
        await native(up, "raw").chat(chat(**kw), T)
    assert info.value.param == param and not up.requests


async def test_native_stream_skips_special_tokens_and_folds_to_the_answer() -> None:
    up = Upstream(body=fixture("generate_stream.sse"), sse=True, headers={"x-prompt-tokens": "9"})
    chunks = await collect(native(up, "raw"), chat())
    assert str(up.posts[0].url) == "https://tgi.internal.test/generate_stream"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    streamed = fold(chunks)
    whole = await native(Upstream(body=fixture("generate.json")), "raw").chat(chat(), T)
    assert streamed.text == whole.text and "</s>" not in streamed.text
    assert streamed.finish_reason == "stop"
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (7, 15)  # details win


async def test_native_stream_errors() -> None:
    up = Upstream(body=fixture("generate_stream_error.sse"), sse=True)
    with pytest.raises(errors.ServerError, match="CUDA"):
        await collect(native(up, "raw"), chat())
    up = Upstream(body=fixture("generate_stream_truncated.sse"), sse=True)
    with pytest.raises(errors.IncompleteStreamError, match="generated_text"):
        await collect(native(up, "raw"), chat())
    up = Upstream(422, fixture("error_validation_context.json"))
    with pytest.raises(errors.ContextWindowExceededError):
        await collect(native(up, "raw"), chat())


async def test_native_has_no_embeddings_or_pass_through() -> None:
    p = native(Upstream())
    with pytest.raises(errors.BadRequestError, match="Text Embeddings Inference"):
        await p.embed(EmbeddingRequest(model="m", input="x"), T)
    with pytest.raises(NotImplementedError):
        await p.chat_raw(chat(), T)
