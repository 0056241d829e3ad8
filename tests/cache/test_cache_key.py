"""The cache key: stable for the same request, different whenever the answer could differ."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from aiwire.cache import KEY_VERSION, cache_key, canonical, scope_for
from aiwire.cache.key import IGNORED_FIELDS
from aiwire.server.anthropic_wire import parse_messages
from aiwire.server.openai_wire import parse_chat
from aiwire.types import ChatRequest

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Oslo?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4°C, rain"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                },
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"picture": {"type": "string"}, "weather": {"type": "string"}},
            },
        },
    },
    "temperature": 0,
    "top_p": 1,
    "max_tokens": 200,
    "max_completion_tokens": 300,
    "stop": ["END"],
    "seed": 7,
    "n": 1,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.25,
    "logprobs": True,
    "top_logprobs": 2,
    "user": "end-user-1",
    "reasoning_effort": "low",
    "metadata": {"b": 1, "a": 2},
}


def req(data: dict[str, Any]) -> ChatRequest:
    return parse_chat(orjson.dumps(data))


def key(data: dict[str, Any], *, scope: str = "k:key1", protocol: str = "openai") -> str:
    return cache_key(scope, protocol, req(data), bool(data.get("stream")))


def changed(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting ``value`` at a dotted path (list indexes as numbers)."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _reorder(data: dict[str, Any], order: Any) -> None:
    """Rebuild ``data`` in place: the keys in ``order`` first, then the others."""
    items = {k: data[k] for k in order}
    rest = {k: v for k, v in data.items() if k not in items}
    data.clear()
    data.update(items)
    data.update(rest)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(name)


# Each of these changes what a model would answer (or what the client gets back).
SENSITIVE: dict[str, Callable[[dict[str, Any]], None]] = {
    "model": _set("model", "gpt-4o"),
    "message text": _set("messages.0.content", "Be verbose."),
    "message role": _set("messages.0.role", "developer"),
    "message name": _set("messages.0.name", "boss"),
    "a text part": _set("messages.1.content.0.text", "What is this?"),
    "an image part": _set("messages.1.content.1.image_url.url", "https://example.com/b.png"),
    "image detail": _set("messages.1.content.1.image_url.detail", "high"),
    "parts vs a string": _set("messages.1.content", "What is in this picture?"),
    "a message more": lambda d: d["messages"].append({"role": "user", "content": "and?"}),
    "message order": lambda d: d["messages"].insert(0, d["messages"].pop(1)),
    "tool call arguments": _set("messages.2.tool_calls.0.function.arguments", '{"city":"Rome"}'),
    "tool call name": _set("messages.2.tool_calls.0.function.name", "forecast"),
    "tool call id": _set("messages.2.tool_calls.0.id", "call_2"),
    "tool call extra content": _set(
        "messages.2.tool_calls.0.extra_content", {"google": {"thought_signature": "sig"}}
    ),
    "tool result": _set("messages.3.content", "30°C, sun"),
    "tool result call id": _set("messages.3.tool_call_id", "call_9"),
    "tools": _set("tools.0.function.description", "Weather now"),
    "tool parameters": _set("tools.0.function.parameters.properties.city.type", "integer"),
    "tool strict": _set("tools.0.function.strict", True),
    "no tools": _drop("tools"),
    "tool_choice": _set("tool_choice", "required"),
    "named tool_choice": _set("tool_choice", {"type": "function", "function": {"name": "weather"}}),
    "parallel_tool_calls": _set("parallel_tool_calls", False),
    "response_format": _set("response_format", {"type": "json_object"}),
    "response schema": _set("response_format.json_schema.schema.properties.weather.type", "number"),
    # Structured output follows the schema's property order: that order is part of the answer.
    "schema property order": _set(
        "response_format.json_schema.schema.properties",
        {"weather": {"type": "string"}, "picture": {"type": "string"}},
    ),
    "temperature": _set("temperature", 0.2),
    "top_p": _set("top_p", 0.9),
    "max_tokens": _set("max_tokens", 201),
    "max_completion_tokens": _set("max_completion_tokens", 301),
    "max_tokens absent": _drop("max_tokens"),
    "stop": _set("stop", ["STOP"]),
    "stop as a string": _set("stop", "END"),
    "seed": _set("seed", 8),
    "n": _set("n", 2),
    "presence_penalty": _set("presence_penalty", 0.0),
    "frequency_penalty": _set("frequency_penalty", 0.0),
    "logprobs": _set("logprobs", False),
    "top_logprobs": _set("top_logprobs", 3),
    "an unknown field": _set("reasoning_effort", "high"),
    "an unknown field more": _set("service_tier", "flex"),
    "a nested unknown value": _set("metadata", {"b": 1, "a": 3}),
}

# Each of these cannot change the answer.
IRRELEVANT: dict[str, Callable[[dict[str, Any]], None]] = {
    "user": _set("user", "end-user-2"),
    "no user": _drop("user"),
    "stream_options without a stream": _set("stream_options", {"include_usage": True}),
    "stream: false spelt out": _set("stream", False),
    "an unknown field set to null": _set("prediction", None),
    "top-level field order": lambda d: _reorder(d, reversed(list(d))),
    "unknown field order": lambda d: _reorder(
        d, [k for k in d if k not in ("metadata", "reasoning_effort")] + ["metadata"]
    ),
}


def test_the_key_is_a_sha256_that_is_the_same_every_time() -> None:
    first = key(BASE)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert key(copy.deepcopy(BASE)) == first
    assert cache_key("k:key1", "openai", req(BASE), False) == first


def test_the_canonical_form_is_pinned() -> None:
    """A change here changes every key: bump KEY_VERSION with it (old entries then miss)."""
    small = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert canonical("", "openai", req(small), False) == (
        b'[[%d,"","openai",false,false],{"model":"m","messages":[{"role":"user","content":"hi"}],'
        b'"temperature":0.0}]' % KEY_VERSION
    )
    assert cache_key("", "openai", req(small), False) == (
        "0dd302060b138ce8ee8c91973eb9793969bea9db8fe705f991401648be174f4f"
    )


@pytest.mark.parametrize("mutation", list(SENSITIVE))
def test_each_field_that_can_change_the_answer_changes_the_key(mutation: str) -> None:
    assert key(changed(SENSITIVE[mutation])) != key(BASE)


@pytest.mark.parametrize("mutation", list(IRRELEVANT))
def test_fields_that_cannot_change_the_answer_leave_the_key_alone(mutation: str) -> None:
    assert key(changed(IRRELEVANT[mutation])) == key(BASE)


def test_every_request_field_is_either_in_the_key_or_deliberately_left_out() -> None:
    """A field added to ChatRequest must be classified here (and tested above)."""
    in_key = set(ChatRequest.model_fields) - IGNORED_FIELDS
    covered = {
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens",
        "stop", "seed", "n", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
        "tools", "tool_choice", "parallel_tool_calls", "response_format",
    }  # fmt: skip
    assert in_key == covered
    assert set(IGNORED_FIELDS) == {"user", "stream", "stream_options"}


def test_scope_protocol_and_stream_are_part_of_the_key() -> None:
    request = req(BASE)
    base = cache_key("k:key1", "openai", request, False)
    assert cache_key("k:key2", "openai", request, False) != base
    assert cache_key("", "openai", request, False) != base
    assert cache_key("k:key1", "anthropic", request, False) != base
    assert cache_key("k:key1", "openai", request, True) != base


def test_include_usage_matters_only_for_a_stream() -> None:
    plain = changed(_set("stream", True))
    with_usage = changed(_set("stream", True))
    with_usage["stream_options"] = {"include_usage": True}
    without = changed(_set("stream", True))
    without["stream_options"] = {"include_usage": False}
    assert key(with_usage) != key(plain)  # the stream ends with a usage chunk, or not
    assert key(without) == key(plain)


def test_anthropic_requests_ignore_the_end_user_id() -> None:
    def body(user: str, system: str = "Be terse.") -> bytes:
        return orjson.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 100,
                "temperature": 0,
                "system": system,
                "metadata": {"user_id": user},
                "messages": [{"role": "user", "content": "Hello"}],
            }
        )

    def k(raw: bytes) -> str:
        return cache_key("", "anthropic", parse_messages(raw), False)

    assert k(body("alice")) == k(body("bob"))
    assert k(body("alice", "Be verbose.")) != k(body("alice"))


def test_integers_beyond_64_bits_in_unknown_fields_still_make_a_key() -> None:
    def k(value: int) -> str:
        raw = json.dumps(changed(_set("x_big", value))).encode()  # orjson refuses such ints
        return cache_key("", "openai", parse_chat(raw), False)

    assert k(2**70) == k(2**70)
    assert k(2**70) != k(2**70 + 1)


@pytest.mark.parametrize(
    ("scope", "key_id", "team", "expected"),
    [
        ("key", "key1", "red", "k:key1"),
        ("key", None, None, "master"),
        ("team", "key1", "red", "t:red"),
        ("team", "key2", "red", "t:red"),
        ("team", "key1", None, "k:key1"),  # a key without a team keeps to itself
        ("global", "key1", "red", ""),
        ("global", None, None, ""),
    ],
)
def test_scope_for(scope: Any, key_id: str | None, team: str | None, expected: str) -> None:
    assert scope_for(scope, key_id, team) == expected


def test_keys_of_different_scopes_never_collide_with_a_team_named_like_a_key() -> None:
    assert scope_for("team", "x", "k:x") != scope_for("key", "x", None)
