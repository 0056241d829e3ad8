"""The official SDKs against the gateway, every client protocol against every provider protocol."""

from __future__ import annotations

import anthropic
import httpx
import openai
import orjson
import pytest
from tests.gateway.conftest import MASTER, Gateway

CHAT_MODELS = ["sim-gpt", "sim-claude", "sim-gemini"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def oai(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)


@pytest.fixture
def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_sdk_chat_and_stream(oai: openai.OpenAI, model: str) -> None:
    whole = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert whole.choices[0].message.content
    assert whole.usage is not None and whole.usage.total_tokens > 0
    text = ""
    usage_chunks = 0
    for chunk in oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage_chunks += 1
    assert text == whole.choices[0].message.content
    assert usage_chunks == 1


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_sdk_streamed_parallel_tool_calls(oai: openai.OpenAI, model: str) -> None:
    calls: dict[int, dict[str, str]] = {}
    for chunk in oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Oslo and Paris?"}],
        tools=[WEATHER],
        stream=True,
    ):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            slot = calls.setdefault(tc.index, {"name": "", "args": ""})
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["args"] += tc.function.arguments
    cities = sorted(orjson.loads(c["args"])["city"] for c in calls.values())
    assert cities == ["Oslo", "Paris"]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_sdk_json_schema(oai: openai.OpenAI, model: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    resp = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Capital of Norway? JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert "city" in orjson.loads(resp.choices[0].message.content or "")


@pytest.mark.parametrize("model", ["sim-embed", "sim-gemini-embed"])
def test_openai_sdk_embeddings_base64_default(oai: openai.OpenAI, model: str) -> None:
    default = oai.embeddings.create(model=model, input=["a b", "c d"])
    floats = oai.embeddings.create(model=model, input=["a b", "c d"], encoding_format="float")
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)


async def test_openai_async_sdk(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
    resp = await client.chat.completions.create(
        model="sim-claude", messages=[{"role": "user", "content": "Hi"}]
    )
    assert resp.choices[0].message.content
    await client.close()


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_sdk_messages_and_stream(claude: anthropic.Anthropic, model: str) -> None:
    msg = claude.messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text
    with claude.messages.stream(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    ) as stream:
        streamed = "".join(stream.text_stream)
    assert streamed == msg.content[0].text


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_sdk_tool_use_streamed(claude: anthropic.Anthropic, model: str) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]  # type: ignore[index]
    with claude.messages.stream(
        model=model,
        max_tokens=300,
        tools=tools,
        messages=[{"role": "user", "content": "Weather in Oslo and Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert sorted(b.input["city"] for b in uses) == ["Oslo", "Paris"]  # type: ignore[union-attr,index]
    assert final.stop_reason == "tool_use"


def test_errors_are_in_the_callers_protocol(
    gateway: Gateway, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "sim-gpt" in str(nf.value)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    bad = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="aiw-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="sim-gpt", messages=[{"role": "user", "content": "x"}])
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(
        f"{gateway.url}/v1/messages",
        content=b"{}",
        headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "sim-gpt",
            "messages": [{"role": "user", "content": "x"}],
            "base_url": "http://169.254.169.254/",
        },
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 400 and "base_url" in r.text


def test_body_limit_and_health(gateway: Gateway) -> None:
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b"x" * (21 * 1024 * 1024),
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 413
    assert httpx.get(f"{gateway.url}/health/live").status_code == 200
    ready = httpx.get(f"{gateway.url}/health/ready")
    assert ready.status_code == 200 and ready.json()["store"] is True
    models = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {MASTER}"})
    assert "sim-claude" in {m["id"] for m in models.json()["data"]}
