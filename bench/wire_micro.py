"""Micro-benchmark of the gateway's protocol layer (aiwire.server.*_wire): µs per operation.

    /work/venv/bin/python bench/wire_micro.py [--number N]

Each figure is the best of several runs of N calls (CPU time of this process, one core). The
"pydantic dump" lines are the naive alternative, for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from aiwire.server import anthropic_wire, openai_wire
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)

TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
    },
}

OPENAI_REQUEST = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Be terse."},
            {"role": "user", "content": "What's the weather in Oslo and in Paris today?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "4°C, rain"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": TOOL["name"],
                    "description": TOOL["description"],
                    "parameters": TOOL["schema"],
                },
            }
        ],
        "temperature": 0.2,
        "max_completion_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)

ANTHROPIC_REQUEST = orjson.dumps(
    {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 512,
        "system": "You are a helpful assistant. Be terse.",
        "messages": [
            {"role": "user", "content": "What's the weather in Oslo and in Paris today?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4°C"}],
            },
        ],
        "tools": [
            {
                "name": TOOL["name"],
                "description": TOOL["description"],
                "input_schema": TOOL["schema"],
            }
        ],
        "temperature": 0.2,
        "stream": True,
    }
)

RESPONSE = ChatResponse(
    id="chatcmpl-bench",
    model="gpt-4o-mini-2024-07-18",
    choices=[
        Choice(
            message=Message(
                role="assistant",
                content="Oslo is 4°C with rain; checking Paris next.",
                tool_calls=[
                    ToolCall(
                        id="call_2",
                        function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'),
                    )
                ],
            ),
            finish_reason="tool_calls",
        )
    ],
    usage=Usage.of(412, 58, cached_input_tokens=128),
)

CHUNK = ChatChunk(
    id="chatcmpl-bench",
    model="gpt-4o-mini",
    choices=[ChunkChoice(delta=Delta(content=" the weather in"))],
)


def measure(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` CPU µs per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, time.process_time() - start)
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    n = parser.parse_args().number

    openai_stream = openai_wire.StreamRenderer(openai_wire.parse_chat(OPENAI_REQUEST))
    openai_stream.render(CHUNK)  # past the first chunk
    anthropic_stream = anthropic_wire.AnthropicStreamRenderer("claude-sonnet-4-20250514")
    anthropic_stream.render(CHUNK)  # message_start and the text block are out

    rows: list[tuple[str, Callable[[], object]]] = [
        ("openai   parse chat request", lambda: openai_wire.parse_chat(OPENAI_REQUEST)),
        ("openai   render ChatResponse", lambda: openai_wire.render_chat(RESPONSE)),
        ("openai   render one chunk (SSE data line)", lambda: openai_stream.render(CHUNK)),
        (
            "anthropic parse messages request",
            lambda: anthropic_wire.parse_messages(ANTHROPIC_REQUEST),
        ),
        ("anthropic render message", lambda: anthropic_wire.render_message(RESPONSE, "claude")),
        ("anthropic render one chunk (SSE event)", lambda: anthropic_stream.render(CHUNK)),
        (
            "(ref) pydantic dump ChatResponse + orjson",
            lambda: orjson.dumps(RESPONSE.model_dump(exclude_none=True)),
        ),
        (
            "(ref) pydantic dump ChatChunk + orjson",
            lambda: orjson.dumps(CHUNK.model_dump(exclude_none=True)),
        ),
        (
            "(ref) ChatRequest.model_validate_json",
            lambda: ChatRequest.model_validate_json(OPENAI_REQUEST),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  µs/op   (best of 7 × {n:,})")
    for name, fn in rows:
        print(f"{name:<{width}}  {measure(fn, n):6.2f}")


if __name__ == "__main__":
    main()
