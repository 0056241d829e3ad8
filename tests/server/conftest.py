"""Official SDK clients whose HTTP goes to an in-process handler (no network, no server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest

# The SDKs installed here speak through httpx2 (the maintained httpx fork), so the mock
# transport is httpx2's.
Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def openai_client() -> Callable[..., openai.OpenAI]:
    def make(handler: Handler, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        return openai.OpenAI(
            base_url="http://gw.test/v1",
            api_key="x",
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
            **kw,
        )

    return make


@pytest.fixture
def anthropic_client() -> Callable[..., anthropic.Anthropic]:
    def make(handler: Handler, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("max_retries", 0)
        return anthropic.Anthropic(
            base_url="http://gw.test",
            api_key="x",
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
            **kw,
        )

    return make
