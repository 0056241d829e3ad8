"""The protocol-independent generator, fault grammar and token buckets, without HTTP."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel, Field

from aiwire.simulator.config import ModelLimit
from aiwire.simulator.engine import (
    GenerationRequest,
    Tool,
    capitalised_words,
    count_tokens,
    generate,
)
from aiwire.simulator.faults import FaultBook, FaultSpecError, parse_fault
from aiwire.simulator.limits import RateLimiter
from aiwire.simulator.wire import split_json, split_text


class Address(BaseModel):
    street: str
    zip_code: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=99)
    score: float = Field(gt=0, lt=1)
    email: str = Field(json_schema_extra={"format": "email"})
    born: str = Field(json_schema_extra={"format": "date-time"})
    role: Literal["admin", "user"]
    nickname: str | None = None
    address: Address
    history: list[Address] = Field(min_length=2)
    labels: dict[str, int] = {}


SCHEMAS: list[dict[str, Any]] = [
    Person.model_json_schema(),
    {
        "type": "object",
        "properties": {
            "ids": {
                "type": "array",
                "uniqueItems": True,
                "minItems": 3,
                "items": {"type": "integer"},
            }
        },
        "required": ["ids"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "v": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            "c": {"const": "fixed"},
            "t": {"type": ["string", "null"], "format": "uuid"},
        },
        "required": ["v", "c", "t"],
    },
    {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 1},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "multipleOf": 5}}, "required": ["b"]},
        ]
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_output_validates(schema: dict[str, Any]) -> None:
    gen = generate(
        GenerationRequest(last_user_text="Make one for Alice in Berlin", output_schema=schema)
    )
    doc = orjson.loads(gen.text)
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    assert gen.finish == "stop"


def test_gemini_upper_case_schema_values() -> None:
    from aiwire.simulator.gemini_api import _upper_schema

    schema = {
        "type": "OBJECT",
        "properties": {
            "n": {"type": "INTEGER"},
            "xs": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
        "required": ["n", "xs"],
    }
    doc = orjson.loads(generate(GenerationRequest(output_schema=_upper_schema(schema))).text)
    assert isinstance(doc["n"], int) and isinstance(doc["xs"], list)


def test_text_is_deterministic_and_sized() -> None:
    req = GenerationRequest(last_user_text="Tell me about reliable integrations today please")
    a, b = generate(req), generate(req)
    assert a == b
    assert a.text.startswith("Simulated reply to: Tell me about reliable integrations today")
    assert 15 <= a.output_tokens <= 45 and a.output_tokens == count_tokens(a.text)
    other = generate(GenerationRequest(last_user_text="Something else entirely"))
    assert other.text != a.text


def test_stop_and_max_tokens() -> None:
    stopped = generate(GenerationRequest(last_user_text="hello", stop=["to:"]))
    assert stopped.text == "Simulated reply " and stopped.stop_sequence == "to:"
    assert stopped.finish == "stop"
    cut = generate(GenerationRequest(last_user_text="hello", max_tokens=4))
    assert cut.finish == "length" and cut.output_tokens <= 4 and cut.stop_sequence is None


def test_tool_modes() -> None:
    weather = Tool(
        "get_weather",
        "",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    )
    stock = Tool(
        "lookupStockPrice",
        "",
        {
            "type": "object",
            "properties": {"ticker": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        },
    )
    tools = [weather, stock]
    auto = generate(GenerationRequest(last_user_text="What is the weather in Oslo?", tools=tools))
    assert [(c.name, c.arguments["city"]) for c in auto.tool_calls] == [("get_weather", "Oslo")]
    assert auto.finish == "tool_calls" and auto.text == ""
    camel = generate(GenerationRequest(last_user_text="stock price of Acme", tools=tools))
    assert [c.name for c in camel.tool_calls] == ["lookupStockPrice"]
    assert camel.tool_calls[0].arguments["ticker"] == "Acme"
    none = generate(
        GenerationRequest(last_user_text="weather in Oslo", tools=tools, tool_mode="none")
    )
    assert not none.tool_calls and none.text
    named = generate(
        GenerationRequest(last_user_text="hi", tools=tools, tool_mode="named:lookupStockPrice")
    )
    assert [c.name for c in named.tool_calls] == ["lookupStockPrice"]
    required = generate(GenerationRequest(last_user_text="hi", tools=tools, tool_mode="required"))
    assert [c.name for c in required.tool_calls] == ["get_weather"]
    pair = generate(GenerationRequest(last_user_text="weather in Oslo and Paris", tools=tools))
    assert [c.arguments["city"] for c in pair.tool_calls] == ["Oslo", "Paris"]
    single = generate(
        GenerationRequest(
            last_user_text="weather in Oslo and Paris", tools=tools, parallel_tools=False
        )
    )
    assert len(single.tool_calls) == 1
    answered = generate(
        GenerationRequest(last_user_text="weather in Oslo", tools=tools, tool_results=["Oslo: 4C"])
    )
    assert not answered.tool_calls and "Oslo: 4C" in answered.text
    assert auto.call_id("call_", 0) != auto.call_id("call_", 1)


def test_capitalised_words_skip_sentence_starts() -> None:
    assert capitalised_words("What is the weather in Oslo? Paris too. And Rome") == ["Oslo", "Rome"]


def test_json_mode_without_schema() -> None:
    doc = orjson.loads(generate(GenerationRequest(last_user_text="x", json_mode=True)).text)
    assert isinstance(doc, dict) and doc["answer"]


def test_split_helpers() -> None:
    text = "Simulated reply to: a verylongwordthatkeepsgoingon."
    assert "".join(split_text(text)) == text and all(len(p) <= 16 for p in split_text(text))
    assert len(split_json('{"a":1}')) >= 2 and "".join(split_json('{"a":1}')) == '{"a":1}'


def test_fault_grammar_and_times() -> None:
    f = parse_fault("drop;times=2;after=3;retry_after=0.5")
    assert (f.kind, f.times, f.after, f.retry_after) == ("drop", 2, 3, 0.5)
    assert parse_fault("malformed").stream_after() == 2
    assert parse_fault("hang").stream_after() is None
    with pytest.raises(FaultSpecError):
        parse_fault("418")
    with pytest.raises(FaultSpecError):
        parse_fault("429;sometimes=1")
    book = FaultBook({"m": "503;times=1"})
    assert book.pick(None, None, "m") is not None and book.pick(None, None, "m") is None
    assert book.pick("500;times=1", "a", "x") is not None
    assert book.pick("500;times=1", "a", "x") is None
    assert book.pick("500;times=1", "b", "x") is not None  # another scope has its own count
    with pytest.raises(FaultSpecError):
        FaultBook({"m": "nope"})


def test_token_bucket_refills_continuously() -> None:
    now = [0.0]
    limiter = RateLimiter({"m": ModelLimit(rpm=60, tpm=1000)}, clock=lambda: now[0])
    for _ in range(60):
        assert limiter.admit("openai", "m", 10, 10) is None
    refusal = limiter.admit("openai", "m", 10, 10)
    assert refusal is not None and refusal.dimension == "requests"
    assert refusal.retry_after == pytest.approx(1.0)
    now[0] += 1.0  # one request's worth refilled (60/min)
    assert limiter.admit("openai", "m", 10, 10) is None
    headers = limiter.headers("openai", "m")
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"
    assert limiter.headers("gemini", "m") == {}
    assert "anthropic-ratelimit-output-tokens-reset" in limiter.headers("anthropic", "m")
