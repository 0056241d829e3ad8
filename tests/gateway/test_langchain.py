"""langchain-openai's ChatOpenAI through the gateway, against models of every provider protocol."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from tests.gateway.conftest import MASTER, Gateway


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: 4C"


@pytest.mark.parametrize("model", ["sim-gpt", "sim-claude", "sim-gemini"])
def test_chat_openai_invoke_stream_and_tools(gateway: Gateway, model: str) -> None:
    llm = ChatOpenAI(model=model, base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
    answer = llm.invoke("Hello there")
    assert isinstance(answer.content, str) and answer.content
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Hello there"))
    assert streamed == answer.content
    calls = llm.bind_tools([get_weather]).invoke("What is the weather in Oslo?").tool_calls
    assert [(c["name"], c["args"]) for c in calls] == [("get_weather", {"city": "Oslo"})]
