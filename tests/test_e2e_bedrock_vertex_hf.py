"""The SDK, through the router and the Bedrock, Vertex AI and Hugging Face adapters, against the
simulator over real HTTP: SigV4-signed Converse with binary event streams, Vertex with OAuth
tokens minted from a service-account key by the simulator's token endpoint, Hugging Face's
OpenAI-compatible routes and TGI's native /generate."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel
from tests.providers.cloud import isolate_aws, make_service_account

from aiwire import AsyncClient, errors
from aiwire.config import Config, DeploymentConfig, ProviderConfig, RouterConfig
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorServer
from aiwire.types import StreamAccumulator

UPSTREAM = {
    "sim-bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "sim-vertex": "gemini-2.5-flash",
    "sim-hf": "meta-llama/Llama-3.1-8B-Instruct",
    "sim-tgi": "tgi",
}
CHAT_MODELS = list(UPSTREAM)
TOOL_MODELS = ["sim-bedrock", "sim-vertex", "sim-hf"]
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsimSECRET"
AWS_SESSION = "FwoGZXIvYXdzEXAMPLEsessionTOKEN" + "x" * 40
HF_KEY = "hf_simTOKEN0123456789abcdefghijklmnop"
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
PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer) -> Path:
    """AWS credentials in the environment (and nothing else from the machine) and a
    service-account key file whose token_uri is the simulator's token endpoint."""
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_SESSION)
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return make_service_account(tmp_path, f"{simulator.url}/token").path


def breadth_config(
    url: str, key_file: Path, headers: dict[str, str] | None = None, **router: Any
) -> Config:
    extra = headers or {}
    providers = {
        "sim-bedrock": ProviderConfig(
            type="bedrock", base_url=url, options={"region": "us-east-1"}, headers=extra
        ),
        "sim-vertex": ProviderConfig(
            type="vertex",
            base_url=url,
            options={"credentials_file": str(key_file), "location": "europe-west4"},
            headers=extra,
        ),
        "sim-hf": ProviderConfig(
            type="huggingface", base_url=f"{url}/v1", api_key=Secret(HF_KEY), headers=extra
        ),
        "sim-tgi": ProviderConfig(
            type="huggingface",
            base_url=url,
            options={"api": "native", "chat_template": "chatml"},
            headers=extra,
        ),
    }
    models = [DeploymentConfig(name=n, provider=n, model=m) for n, m in UPSTREAM.items()]
    models += [
        DeploymentConfig(
            name="sim-titan", provider="sim-bedrock", model="amazon.titan-embed-text-v2:0"
        ),
        DeploymentConfig(
            name="sim-cohere", provider="sim-bedrock", model="cohere.embed-english-v3"
        ),
        DeploymentConfig(
            name="sim-vertex-embed", provider="sim-vertex", model="text-embedding-005"
        ),
    ]
    router.setdefault("backoff_base", 0.01)
    return Config(providers=providers, models=models, router=RouterConfig(**router))


@pytest.fixture
async def client(simulator: SimulatorServer, cloud_env: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(breadth_config(simulator.url, cloud_env)) as c:
        yield c


async def fold(client: AsyncClient, model: str, messages: Any, **kw: Any) -> Any:
    acc = StreamAccumulator()
    async for chunk in client.stream(model, messages, **kw):
        acc.add(chunk)
    return acc, acc.response()


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_chat(client: AsyncClient, model: str) -> None:
    resp = await client.chat(
        model,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why retry?"}],
        max_tokens=60,
    )
    assert resp.text.startswith("Simulated reply to: Why retry")  # template markup read back
    assert resp.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.deployment == f"{model}@{model}/{UPSTREAM[model]}"


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_stream_folds_to_the_non_streamed_answer(client: AsyncClient, model: str) -> None:
    prompt = "Tell me about reliable integrations."
    whole = await client.chat(model, prompt)
    acc, streamed = await fold(client, model, prompt)
    assert acc.chunks > 2
    assert streamed.text == whole.text  # the simulator is deterministic
    assert streamed.finish_reason == whole.finish_reason
    assert streamed.usage is not None and streamed.usage.output_tokens == whole.usage.output_tokens


@pytest.mark.parametrize("model", TOOL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_and_results_round_trip(
    client: AsyncClient, model: str, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the weather in Oslo and Paris?"}
    ]
    if stream:
        resp = (await fold(client, model, messages, tools=[WEATHER]))[1]
    else:
        resp = await client.chat(model, messages, tools=[WEATHER])
    assert resp.finish_reason == "tool_calls"
    cities = sorted(orjson.loads(c.function.arguments)["city"] for c in resp.tool_calls)
    assert cities == ["Oslo", "Paris"]
    assert len({c.id for c in resp.tool_calls}) == 2
    messages.append(resp.message.model_dump(exclude_none=True))
    for call in resp.tool_calls:
        city = orjson.loads(call.function.arguments)["city"]
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"{city}: 4C rain"})
    final = await client.chat(model, messages, tools=[WEATHER])
    assert final.finish_reason == "stop" and "Oslo: 4C rain" in final.text


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_forced_and_refused_tool_choice(client: AsyncClient, model: str) -> None:
    resp = await client.chat(
        model,
        "Hello there",
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert [c.function.name for c in resp.tool_calls] == ["get_weather"]
    none = await client.chat(model, "Weather in Oslo?", tools=[WEATHER], tool_choice="none")
    assert not none.tool_calls and none.text


class Ticket(BaseModel):
    category: Literal["billing", "bug", "other"]
    summary: str
    urgent: bool
    tags: list[str]


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_json_schema_output_and_extract(client: AsyncClient, model: str) -> None:
    schema = Ticket.model_json_schema()
    resp = await client.chat(
        model,
        "Classify: my invoice is wrong",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "ticket", "schema": schema},
        },
    )
    jsonschema.validate(orjson.loads(resp.text), schema)
    assert resp.finish_reason == "stop" and not resp.tool_calls
    ticket = await client.extract(model, "Classify: my invoice is wrong", schema=Ticket)
    assert isinstance(ticket, Ticket)
    streamed = (
        await fold(
            client,
            model,
            "Classify: my invoice is wrong",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "ticket", "schema": schema},
            },
        )
    )[1]
    assert orjson.loads(streamed.text) == orjson.loads(resp.text)


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_json_object_mode(client: AsyncClient, model: str) -> None:
    resp = await client.chat(model, "Answer in JSON", response_format={"type": "json_object"})
    assert isinstance(orjson.loads(resp.text), dict)


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_image_input_base64(client: AsyncClient, model: str) -> None:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}},
    ]
    with_image = await client.chat(model, [{"role": "user", "content": content}])
    without = await client.chat(model, [{"role": "user", "content": content[:1]}])
    assert with_image.usage is not None and without.usage is not None
    assert with_image.usage.input_tokens > without.usage.input_tokens  # the image was sent


async def test_bedrock_refuses_an_image_url_by_name(client: AsyncClient) -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://images.example.test/cat.png"}}]
    with pytest.raises(errors.BadRequestError, match="image_url"):
        await client.chat("sim-bedrock", [{"role": "user", "content": content}])


@pytest.mark.parametrize("model", ["sim-titan", "sim-cohere", "sim-vertex-embed"])
async def test_embeddings(client: AsyncClient, model: str) -> None:
    resp = await client.embed(model, ["refund my order", "reset my password"])
    a, b = resp.vectors
    assert len(a) == len(b) > 8 and a != b
    again = await client.embed(model, "refund my order")
    assert again.vectors[0] == pytest.approx(a)


# --- faults -------------------------------------------------------------------------------------


def faulty(url: str, key_file: Path, fault: str, **router: Any) -> Config:
    scope = uuid.uuid4().hex
    headers = {"x-aiwire-sim-fault": fault, "x-aiwire-sim-scope": scope}
    return breadth_config(url, key_file, headers, **router)


FAULT_CLASSES: dict[str, dict[str, type[errors.ProviderError]]] = {
    "sim-bedrock": {
        "429": errors.RateLimitError,  # ThrottlingException
        "500": errors.ServerError,
        "503": errors.OverloadedError,
        "529": errors.OverloadedError,  # ModelNotReadyException
        "401": errors.AuthenticationError,  # UnrecognizedClientException (403)
    },
    "sim-vertex": {
        "429": errors.RateLimitError,
        "500": errors.ServerError,
        "503": errors.OverloadedError,
        "529": errors.OverloadedError,
        "401": errors.AuthenticationError,
    },
    "sim-tgi": {
        "429": errors.OverloadedError,  # TGI's queue is full: "Model is overloaded"
        "500": errors.ServerError,
        "503": errors.OverloadedError,  # "currently loading", with estimated_time
        "529": errors.OverloadedError,
        "401": errors.AuthenticationError,
    },
}


@pytest.mark.parametrize("model", list(FAULT_CLASSES))
@pytest.mark.parametrize(
    "fault", ["429;retry_after=0", "500", "503;retry_after=0", "529;retry_after=0", "401"]
)
async def test_each_fault_ends_in_its_typed_error(
    simulator: SimulatorServer, cloud_env: Path, model: str, fault: str
) -> None:
    cls = FAULT_CLASSES[model][fault.split(";")[0]]
    async with AsyncClient(faulty(simulator.url, cloud_env, fault, retries=0)) as c:
        with pytest.raises(cls) as info:
            await c.chat(model, "hello")
        assert type(info.value) is cls and info.value.provider == model
        assert info.value.retryable is (cls is not errors.AuthenticationError)
        with pytest.raises(cls):
            async for _ in c.stream(model, "hello"):
                pass


@pytest.mark.parametrize("model", list(FAULT_CLASSES))
@pytest.mark.parametrize(
    "fault", ["500;times=2", "503;times=1;retry_after=0", "drop;times=1;after=0"]
)
async def test_transient_faults_are_retried_to_success(
    simulator: SimulatorServer, cloud_env: Path, model: str, fault: str
) -> None:
    events: list[Any] = []
    async with AsyncClient(faulty(simulator.url, cloud_env, fault)) as c:
        c.router.on_attempt.append(events.append)
        assert (await c.chat(model, "hello")).text
    assert events[-1].error is None
    if not fault.startswith("drop"):
        assert len(events) >= 2  # the router retried
    # A connection dropped before any answer may instead be retried by the transport (a pooled
    # connection the server closed): either way the request must succeed.


@pytest.mark.parametrize(
    ("model", "fault", "cls"),
    [
        ("sim-bedrock", "drop;times=1;after=2", errors.IncompleteStreamError),
        ("sim-bedrock", "malformed;times=1;after=2", errors.ServerError),
        ("sim-bedrock", "429;times=1;after=2", errors.RateLimitError),  # in-stream exception
        ("sim-bedrock", "500;times=1;after=2", errors.ServerError),
        ("sim-vertex", "drop;times=1;after=2", errors.IncompleteStreamError),
        ("sim-tgi", "drop;times=1;after=2", errors.IncompleteStreamError),
        ("sim-tgi", "500;times=1;after=2", errors.ServerError),  # TGI's error event
    ],
)
async def test_no_retry_after_a_streamed_chunk(
    simulator: SimulatorServer, cloud_env: Path, model: str, fault: str, cls: type[Exception]
) -> None:
    # times=1: a retry would succeed, so an error here proves that none was made.
    events: list[Any] = []
    got: list[str] = []
    async with AsyncClient(faulty(simulator.url, cloud_env, fault)) as c:
        c.router.on_attempt.append(events.append)
        with pytest.raises(cls):
            async for chunk in c.stream(model, "Tell me a long story please"):
                got.append(chunk.text)
    assert "".join(got), "some text arrived before the fault"
    assert len(events) == 1


@pytest.mark.parametrize("model", ["sim-bedrock", "sim-tgi"])
async def test_hang_is_cut_by_the_configured_timeouts(
    simulator: SimulatorServer, cloud_env: Path, model: str
) -> None:
    cfg = faulty(simulator.url, cloud_env, "hang", retries=0, timeout=1, first_byte_timeout=0.5)
    async with AsyncClient(cfg) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            await c.chat(model, "hello")
        with pytest.raises(errors.TimeoutError):
            async for _ in c.stream(model, "hello"):
                pass
        assert time.monotonic() - t0 < 5


async def test_credentials_never_reach_logs_or_errors(
    simulator: SimulatorServer, cloud_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with AsyncClient(faulty(simulator.url, cloud_env, "401", retries=1)) as c:
        for model in ("sim-bedrock", "sim-vertex", "sim-hf"):
            with pytest.raises(errors.AuthenticationError) as info:
                await c.chat(model, "hello")
            texts += [str(info.value), repr(info.value), repr(info.value.body)]
        vertex = next(d.provider for d in c.router.deployments("sim-vertex"))
        token = vertex._token.value if vertex._token else ""  # type: ignore[attr-defined]
        texts += [repr(c.router.deployments())]
    assert token.startswith("ya29.sim-")
    texts.append(caplog.text)
    for secret in (AWS_SECRET, AWS_SESSION, HF_KEY, token):
        assert all(secret not in t for t in texts)
