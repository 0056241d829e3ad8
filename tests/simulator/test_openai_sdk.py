"""The official ``openai`` SDK (sync, async and Azure) against the simulator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from aiwire.simulator import SimulatorServer

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TICKET = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "summary": {"type": "string", "minLength": 3},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "count": {"type": "integer", "minimum": 3, "maximum": 7},
        "due": {"type": "string", "format": "date"},
        "contact": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"],
            "additionalProperties": False,
        },
    },
    "required": ["category", "summary", "urgent", "tags", "count", "due", "contact"],
    "additionalProperties": False,
}


def test_chat_non_stream(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about reliable integrations."},
        ],
    )
    choice = resp.choices[0]
    assert choice.message.content and choice.message.content.startswith("Simulated reply to:")
    assert "reliable integrations" in choice.message.content
    assert choice.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp._request_id  # x-request-id header


def test_max_tokens_truncates_with_length(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=3
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens <= 3


def test_stream_text_equals_non_stream(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Stream me something"}]
    whole = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    assert len(chunks) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_parallel_tool_calls(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the weather in Oslo and Paris?"}],
        tools=[WEATHER],
    ) as stream:
        fragments = sum(1 for ev in stream if ev.type == "tool_calls.function.arguments.delta")
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert fragments >= 4  # arguments arrive in several fragments per call
    args = [json.loads(c.function.arguments) for c in calls]
    for a in args:
        jsonschema.validate(a, WEATHER["function"]["parameters"])
    assert [a["city"] for a in args] == ["Oslo", "Paris"]
    assert len({c.id for c in calls}) == 2


def test_tool_round_trip_answers_in_text(oai: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    call = (first.choices[0].message.tool_calls or [])[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Oslo: 4C rain"})
    final = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert "Oslo: 4C rain" in (final.choices[0].message.content or "")


def test_tool_message_with_unknown_id_is_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nope", "content": "x"},
            ],
        )
    assert info.value.param is not None and "messages" in info.value.param


def test_json_schema_output_is_valid(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Classify: my invoice is wrong, a billing bug"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "ticket", "schema": TICKET, "strict": True},
        },
    )
    doc = json.loads(resp.choices[0].message.content or "")
    jsonschema.validate(doc, TICKET, format_checker=jsonschema.FormatChecker())
    assert doc["category"] in ("billing", "bug")


def test_embeddings_base64_default_equals_float(oai: openai.OpenAI) -> None:
    b64 = oai.embeddings.create(model="text-embedding-3-small", input=["refund my order", "x"])
    flt = oai.embeddings.create(
        model="text-embedding-3-small", input="refund my order", encoding_format="float"
    )
    assert len(b64.data) == 2 and b64.usage.prompt_tokens > 0
    assert b64.data[0].embedding == pytest.approx(flt.data[0].embedding, abs=1e-7)
    assert sum(v * v for v in flt.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    small = oai.embeddings.create(model="text-embedding-3-small", input="x", dimensions=8)
    assert len(small.data[0].embedding) == 8


def test_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert oai.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


def test_injected_429(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-aiwire-sim-fault": "429;retry_after=0"},
        )
    err = info.value
    assert err.response.headers["retry-after"] == "0"
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.code == "rate_limit_exceeded"


def test_injected_401_and_expired_key(sim: SimulatorServer, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-aiwire-sim-fault": "401"},
        )
    expired = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="expired-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        expired.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )


def test_drop_mid_stream_raises(oai: openai.OpenAI) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError) as info:
        for chunk in oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me a long story please"}],
            stream=True,
            extra_headers={"x-aiwire-sim-fault": "drop;after=2"},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert len(got) == 2
    assert "incomplete chunked read" in str(info.value.__cause__)  # the body was cut short


def test_injected_500_is_retried_by_the_sdk(sim: SimulatorServer) -> None:
    client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-test", max_retries=2)
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-aiwire-sim-fault": "500;times=1", "x-aiwire-sim-scope": "sdk-retry"},
    )
    assert resp.choices[0].message.content


async def test_async_client_stream(sim: SimulatorServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="sk-test", max_retries=0)
    async with client:
        whole = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "async hello"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "async hello"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == whole.choices[0].message.content


def test_azure_openai(sim: SimulatorServer) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=sim.url, api_version="2024-10-21", api_key="k", max_retries=0
    )
    resp = client.chat.completions.create(
        model="my-gpt4o-deployment", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert resp.model == "my-gpt4o-deployment"
    assert "hello azure" in (resp.choices[0].message.content or "")
    chunks = list(
        client.chat.completions.create(
            model="my-gpt4o-deployment",
            messages=[{"role": "user", "content": "hello azure"}],
            stream=True,
        )
    )
    assert chunks[0].choices == []  # Azure's prompt_filter_results chunk comes first
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == resp.choices[0].message.content
    emb = client.embeddings.create(model="my-embedding-deployment", input="hi")
    assert len(emb.data[0].embedding) == 256
