"""The official ``google-genai`` SDK against the simulator (Gemini API, v1beta)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


class Recipe(BaseModel):
    name: str
    minutes: int
    vegetarian: bool
    ingredients: list[str]


def test_generate_content_text(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=MODEL,
        contents="Explain backoff briefly",
        config=types.GenerateContentConfig(system_instruction="Be terse.", temperature=0.2),
    )
    assert resp.text and "Explain backoff briefly" in resp.text
    assert resp.candidates and resp.candidates[0].finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert resp.model_version == MODEL and resp.response_id


def test_stream_concatenates_to_the_whole(gemini: genai.Client) -> None:
    whole = gemini.models.generate_content(model=MODEL, contents="Tell me a story")
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Tell me a story"))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == whole.text
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata == whole.usage_metadata


def test_max_output_tokens(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=MODEL, contents="hello", config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert resp.candidates and resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_function_calling(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=MODEL,
        contents="What is the weather in Oslo and Paris?",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    calls = resp.function_calls or []
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Paris"}),
    ]
    # the function response round trip answers in text
    assert resp.candidates and resp.candidates[0].content
    follow = gemini.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Weather in Oslo and Paris?")]),
            resp.candidates[0].content,
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(
                        name="get_weather", response={"output": "Oslo: 4C rain"}
                    ),
                    types.Part.from_function_response(
                        name="get_weather", response={"output": "Paris: 12C sun"}
                    ),
                ],
            ),
        ],
        config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])]),
    )
    assert not follow.function_calls and follow.text and "Paris: 12C sun" in follow.text


def test_forced_and_disabled_function_calling(gemini: genai.Client) -> None:
    def ask(mode: types.FunctionCallingConfigMode) -> types.GenerateContentResponse:
        return gemini.models.generate_content(
            model=MODEL,
            contents="Hello there",
            config=types.GenerateContentConfig(
                tools=[types.Tool(function_declarations=[WEATHER])],
                tool_config=types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(mode=mode)
                ),
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            ),
        )

    forced = ask(types.FunctionCallingConfigMode.ANY)
    assert [c.name for c in forced.function_calls or []] == ["get_weather"]
    assert not ask(types.FunctionCallingConfigMode.NONE).function_calls


def test_json_response_schema(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=MODEL,
        contents="A quick vegetarian recipe",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Recipe
        ),
    )
    doc = json.loads(resp.text or "")
    jsonschema.validate(doc, Recipe.model_json_schema())
    assert isinstance(resp.parsed, Recipe)


def test_json_mode_without_schema(gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=MODEL,
        contents="anything",
        config=types.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert isinstance(json.loads(resp.text or ""), dict)


def test_embed_content(gemini: genai.Client) -> None:
    resp = gemini.models.embed_content(
        model="text-embedding-004", contents=["refund my order", "reset my password"]
    )
    assert resp.embeddings is not None and len(resp.embeddings) == 2
    a, b = (e.values or [] for e in resp.embeddings)
    assert len(a) == len(b) == 256 and a != b
    small = gemini.models.embed_content(
        model="text-embedding-004",
        contents="refund my order",
        config=types.EmbedContentConfig(output_dimensionality=16),
    )
    assert small.embeddings and len(small.embeddings[0].values or []) == 16


def test_count_tokens_and_models(gemini: genai.Client) -> None:
    counted = gemini.models.count_tokens(model=MODEL, contents="How many tokens?")
    resp = gemini.models.generate_content(model=MODEL, contents="How many tokens?")
    assert resp.usage_metadata and counted.total_tokens == resp.usage_metadata.prompt_token_count
    names = [m.name for m in gemini.models.list()]
    assert f"models/{MODEL}" in names
    assert gemini.models.get(model=MODEL).display_name == "Gemini 2.5 Flash"


def test_errors_map_to_sdk_exceptions(gemini: genai.Client) -> None:
    overloaded = types.GenerateContentConfig(
        http_options=types.HttpOptions(headers={"x-aiwire-sim-fault": "503"})
    )
    with pytest.raises(errors.ServerError) as info:
        gemini.models.generate_content(model=MODEL, contents="hi", config=overloaded)
    assert info.value.code == 503 and info.value.status == "UNAVAILABLE"
    with pytest.raises(errors.ClientError) as bad:
        gemini.models.generate_content(
            model=MODEL, contents=[types.Content(role="robot", parts=[types.Part(text="hi")])]
        )
    assert bad.value.code == 400 and bad.value.status == "INVALID_ARGUMENT"


def test_streamed_function_calls(gemini: genai.Client) -> None:
    calls = []
    for chunk in gemini.models.generate_content_stream(
        model=MODEL,
        contents="What is the weather in Oslo and Paris?",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    ):
        calls += chunk.function_calls or []
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Paris"}),
    ]
