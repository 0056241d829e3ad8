"""Fixtures for the simulator's own tests: running servers and SDK clients pointed at them."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from aiwire.simulator import ModelLimit, SimulatorConfig, SimulatorServer


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    """One fast simulator for the SDK and protocol tests (no delay, no limits)."""
    with SimulatorServer(SimulatorConfig(tokens_per_second=0, hang_seconds=30)) as server:
        yield server


@pytest.fixture
def limited() -> Iterator[SimulatorServer]:
    """A fresh simulator where model ``m`` allows 2 requests per minute."""
    config = SimulatorConfig(limits={"m": ModelLimit(rpm=2), "t": ModelLimit(tpm=200)})
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def oai(sim: SimulatorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def claude(sim: SimulatorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def gemini(sim: SimulatorServer) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=sim.url))
