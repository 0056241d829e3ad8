"""The published capability matrix is generated from the adapters and kept in step with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiwire import errors
from aiwire.capabilities import markdown, matrix
from aiwire.providers.base import FEATURES, Support, used_features
from aiwire.providers.registry import provider_class, provider_types
from aiwire.types import ChatRequest

DOC = Path(__file__).resolve().parent.parent / "docs" / "capabilities.md"


def test_docs_capabilities_md_is_up_to_date() -> None:
    assert DOC.read_text() == markdown(), (
        "docs/capabilities.md is stale: run `aiwire capabilities --markdown > docs/capabilities.md`"
    )


def test_every_emulated_feature_is_explained() -> None:
    for t in provider_types():
        caps = provider_class(t).capabilities
        for feature, support in caps.features.items():
            assert feature in FEATURES, f"{t} declares unknown feature {feature}"
            if support is Support.EMULATED:
                assert feature in caps.notes, f"{t}: emulated {feature} has no note"


def test_every_feature_is_detectable_from_a_request() -> None:
    """Each declared feature must be something `check` can see, or refusals would be silent."""
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "name": "n",
                    "content": [
                        {"type": "text", "text": "t"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://x.test/a.png", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "r"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "strict": True}}],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": "x",
            "seed": 1,
            "n": 2,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.1,
            "logprobs": True,
            "user": "u",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "strict": True},
            },
        }
    )
    seen = set(used_features(request))
    chat_features = {f for f in FEATURES if not f.startswith("embeddings")}
    # features that exclude each other in one request, and one that describes answers
    exclusive = {"temperature", "tool_choice_named", "tool_choice_none", "json_object"}
    answers_only = {"parallel_tool_calls"}
    assert chat_features - seen <= exclusive | answers_only


@pytest.mark.parametrize("ptype", ["anthropic", "gemini"])
def test_refused_features_raise_bad_request_naming_the_parameter(ptype: str) -> None:
    provider = provider_class(ptype)(name="p", base_url="http://unused.test")
    refused = [f for f, s in matrix()[ptype].items() if s is Support.REFUSED]
    assert refused, "each non-OpenAI adapter refuses something"
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], logprobs=True)
    with pytest.raises(errors.BadRequestError) as info:
        provider.check(req)
    assert info.value.param == "logprobs" and info.value.code == "unsupported_parameter"
