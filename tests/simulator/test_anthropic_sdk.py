"""The official ``anthropic`` SDK against the simulator."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from aiwire.simulator import SimulatorServer

MODEL = "claude-sim-1"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
}


def test_text_message(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        system=[{"type": "text", "text": "Be terse."}],
        messages=[{"role": "user", "content": "Why do retries help?"}],
    )
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.content[0].type == "text" and "Why do retries help" in msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_read_input_tokens == 0 == msg.usage.cache_creation_input_tokens
    assert msg._request_id and msg._request_id.startswith("req_")


def test_stop_sequence_and_max_tokens(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        stop_sequences=["reply"],
        messages=[{"role": "user", "content": "hello"}],
    )
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "reply"
    assert msg.content[0].type == "text" and msg.content[0].text == "Simulated "
    short = claude.messages.create(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hello"}]
    )
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens <= 2


def test_tool_use(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = next(b for b in msg.content if b.type == "tool_use")
    assert isinstance(block.input, dict) and block.input["city"] == "Oslo"
    jsonschema.validate(block.input, WEATHER["input_schema"])
    assert block.id.startswith("toolu_")


def test_stream_with_tools_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What is the weather in Oslo and Paris?"}],
    ) as stream:
        partial = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [
        {"city": "Oslo", "days": uses[0].input["days"]},
        {"city": "Paris", "days": uses[1].input["days"]},
    ]
    assert len(partial) >= 4
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0


def test_text_stream_matches_create(claude: anthropic.Anthropic) -> None:
    kwargs: Any = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Tell me a story"}],
    }
    whole = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
    assert len(pieces) > 3
    assert whole.content[0].type == "text" and "".join(pieces) == whole.content[0].text


def test_tool_result_round_trip(claude: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = claude.messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=messages)
    use = next(b for b in first.content if b.type == "tool_use")
    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Oslo: 4C rain"}],
        }
    )
    final = claude.messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=messages)
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and "Oslo: 4C rain" in final.content[0].text


def test_missing_tool_result_is_400(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result`"):
        claude.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                    ],
                },
                {"role": "user", "content": "never mind"},
            ],
        )


def test_count_tokens_matches_usage(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "count these tokens please"}]
    counted = claude.messages.count_tokens(model=MODEL, messages=messages)
    msg = claude.messages.create(model=MODEL, max_tokens=50, messages=messages)
    assert counted.input_tokens == msg.usage.input_tokens > 0


def test_overloaded_529(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError) as info:
        claude.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-aiwire-sim-fault": "529"},
        )
    assert info.value.status_code == 529
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": info.value.request_id,
    }


def test_rate_limit_headers_on_success(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) > 0
    assert raw.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")


def test_missing_max_tokens_raw(sim: SimulatorServer) -> None:
    resp = httpx.post(
        f"{sim.url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert body["request_id"] == resp.headers["request-id"]


def test_missing_headers_raw(sim: SimulatorServer) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    no_key = httpx.post(
        f"{sim.url}/v1/messages", headers={"anthropic-version": "2023-06-01"}, json=body
    )
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    no_version = httpx.post(f"{sim.url}/v1/messages", headers={"x-api-key": "k"}, json=body)
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]
    hot = httpx.post(
        f"{sim.url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={**body, "temperature": 1.5},
    )
    assert hot.status_code == 400 and "temperature" in hot.json()["error"]["message"]
