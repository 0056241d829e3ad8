"""The SDK, through the router and each adapter, against the simulator over real HTTP.

Every adapter feature runs over all three protocols; every injected fault ends in the right typed
error or in a successful retry or fallback."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel

from aiwire import AsyncClient, Client, errors
from aiwire.config import Config, DeploymentConfig, ProviderConfig, simulator_config
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorServer
from aiwire.types import StreamAccumulator

CHAT_MODELS = ["sim-gpt", "sim-claude", "sim-gemini"]
PROTOCOL = {"sim-gpt": "openai", "sim-claude": "anthropic", "sim-gemini": "gemini"}
UPSTREAM = {
    "sim-gpt": "gpt-4o-mini",
    "sim-claude": "claude-sonnet-4-5",
    "sim-gemini": "gemini-2.5-flash",
}
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
async def client(simulator: SimulatorServer) -> Any:
    async with AsyncClient(simulator_config(simulator.url)) as c:
        yield c


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_chat(client: AsyncClient, model: str) -> None:
    resp = await client.chat(
        model,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why retry?"}],
        max_tokens=60,
    )
    assert resp.text and resp.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.provider == f"sim-{PROTOCOL[model]}"
    assert resp.deployment == f"{model}@sim-{PROTOCOL[model]}/{UPSTREAM[model]}"


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_stream_folds_to_the_non_streamed_answer(client: AsyncClient, model: str) -> None:
    prompt = "Tell me about reliable integrations."
    whole = await client.chat(model, prompt)
    acc = StreamAccumulator()
    async for chunk in client.stream(model, prompt):
        acc.add(chunk)
    streamed = acc.response()
    assert acc.chunks > 2
    assert streamed.text == whole.text  # the simulator is deterministic
    assert streamed.finish_reason == whole.finish_reason
    assert streamed.usage is not None and streamed.usage.output_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_and_results_round_trip(
    client: AsyncClient, model: str, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the weather in Oslo and Paris?"}
    ]
    if stream:
        acc = StreamAccumulator()
        async for chunk in client.stream(model, messages, tools=[WEATHER]):
            acc.add(chunk)
        resp = acc.response()
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
    assert final.finish_reason == "stop" and final.text and not final.tool_calls


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_forced_tool_choice(client: AsyncClient, model: str) -> None:
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
    ticket = await client.extract(model, "Classify: my invoice is wrong", schema=Ticket)
    assert isinstance(ticket, Ticket)
    raw = await client.extract(model, "Classify", schema=schema)
    assert isinstance(raw, dict) and raw["category"] in ("billing", "bug", "other")


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_json_object_mode(client: AsyncClient, model: str) -> None:
    resp = await client.chat(model, "Answer in JSON", response_format={"type": "json_object"})
    assert isinstance(orjson.loads(resp.text), dict)


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_image_input_base64(client: AsyncClient, model: str) -> None:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}},
    ]
    resp = await client.chat(model, [{"role": "user", "content": content}])
    assert resp.text


@pytest.mark.parametrize("model", ["sim-embed", "sim-gemini-embed"])
async def test_embeddings(client: AsyncClient, model: str) -> None:
    resp = await client.embed(model, ["refund my order", "reset my password"])
    a, b = resp.vectors
    assert len(a) == len(b) > 8 and a != b
    again = await client.embed(model, "refund my order")
    assert again.vectors[0] == pytest.approx(a)


async def test_extract_reasks_with_the_validation_error_then_raises(client: AsyncClient) -> None:
    class Impossible(BaseModel):
        value: int

    schema = {
        "type": "object",
        "properties": {"value": {"type": "integer", "minimum": 5, "maximum": 4}},
        "required": ["value"],
    }
    with pytest.raises(errors.OutputValidationError) as info:
        await client.extract("sim-gpt", "give a number", schema=schema, retries=2)
    assert len(info.value.errors) == 3  # first try + 2 re-asks, each error recorded


async def test_refused_parameter_is_named_before_anything_is_sent(client: AsyncClient) -> None:
    with pytest.raises(errors.BadRequestError, match="seed"):
        await client.chat("sim-claude", "hi", seed=7)
    with pytest.raises(errors.BadRequestError, match="logprobs"):
        await client.chat("sim-gemini", "hi", logprobs=True)


def test_sync_client(simulator: SimulatorServer) -> None:
    with Client(simulator_config(simulator.url)) as c:
        assert c.chat("sim-gpt", "hello").text
        assert "".join(ch.text for ch in c.stream("sim-claude", "hello"))
        assert c.embed("sim-embed", "x").vectors
        assert set(CHAT_MODELS) <= set(c.models)


# --- faults -------------------------------------------------------------------------------------


def faulty(
    url: str, fault: str, *, retries: int = 2, fallback: bool = False, **router: Any
) -> Config:
    """The simulator config plus `f-<protocol>` models whose provider injects `fault`."""
    cfg = simulator_config(url, retries=retries, backoff_base=0.01, **router)
    scope = uuid.uuid4().hex
    for proto, base in (("openai", f"{url}/v1"), ("anthropic", url), ("gemini", url)):
        cfg.providers[f"faulty-{proto}"] = ProviderConfig(
            type=proto,
            base_url=base,
            api_key=Secret("sim-key"),
            headers={"x-aiwire-sim-fault": fault, "x-aiwire-sim-scope": scope},
        )
        model = {
            "openai": "gpt-4o-mini",
            "anthropic": "claude-sonnet-4-5",
            "gemini": "gemini-2.5-flash",
        }[proto]
        cfg.models.append(
            DeploymentConfig(
                name=f"f-{proto}",
                provider=f"faulty-{proto}",
                model=model,
                fallbacks=["sim-gpt"] if fallback else [],
            )
        )
    return Config.model_validate(cfg.model_dump())


PROTOCOLS = ["openai", "anthropic", "gemini"]


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("429;retry_after=0", errors.RateLimitError),
        ("500", errors.ServerError),
        ("503", errors.OverloadedError),
        ("529", errors.OverloadedError),
        ("401", errors.AuthenticationError),
    ],
)
async def test_each_fault_ends_in_its_typed_error(
    simulator: SimulatorServer, proto: str, fault: str, cls: type[Exception]
) -> None:
    async with AsyncClient(faulty(simulator.url, fault, retries=0)) as c:
        with pytest.raises(cls) as info:
            await c.chat(f"f-{proto}", "hello")
        e = info.value
        assert isinstance(e, errors.ProviderError) and e.provider == f"faulty-{proto}"
        assert e.retryable is (cls is not errors.AuthenticationError)
        with pytest.raises(cls):
            async for _ in c.stream(f"f-{proto}", "hello"):
                pass


@pytest.mark.parametrize("proto", PROTOCOLS)
async def test_retry_after_429_waits_at_least_what_the_provider_said(
    simulator: SimulatorServer, proto: str
) -> None:
    async with AsyncClient(faulty(simulator.url, "429;times=1;retry_after=1")) as c:
        t0 = time.monotonic()
        resp = await c.chat(f"f-{proto}", "hello")
        elapsed = time.monotonic() - t0
    assert resp.text
    assert elapsed >= 1.0


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("fault", ["500;times=2", "503;times=1", "drop;times=1;after=0"])
async def test_transient_faults_are_retried_to_success(
    simulator: SimulatorServer, proto: str, fault: str
) -> None:
    events: list[Any] = []
    async with AsyncClient(faulty(simulator.url, fault)) as c:
        c.router.on_attempt.append(events.append)
        assert (await c.chat(f"f-{proto}", "hello")).text
    assert events[-1].error is None
    # A connection dropped before any answer is sent again once by the transport itself (what
    # a pooled connection the server closed while idle looks like); other faults by the router.
    assert len(events) >= (1 if fault.startswith("drop") else 2)


@pytest.mark.parametrize("proto", PROTOCOLS)
async def test_outage_falls_back_to_another_provider(
    simulator: SimulatorServer, proto: str
) -> None:
    async with AsyncClient(faulty(simulator.url, "503", retries=1, fallback=True)) as c:
        resp = await c.chat(f"f-{proto}", "hello")
        assert resp.deployment is not None and resp.deployment.startswith("sim-gpt@")
        text = "".join([ch.text async for ch in c.stream(f"f-{proto}", "hello")])
        assert text


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("fault", ["drop;times=1;after=2", "malformed;times=1;after=2"])
async def test_no_retry_after_a_streamed_chunk(
    simulator: SimulatorServer, proto: str, fault: str
) -> None:
    # times=1: a retry would succeed, so an error here proves that none was made.
    events: list[Any] = []
    got: list[str] = []
    async with AsyncClient(faulty(simulator.url, fault, fallback=True)) as c:
        c.router.on_attempt.append(events.append)
        with pytest.raises(errors.ProviderError) as info:
            async for chunk in c.stream(f"f-{proto}", "Tell me a long story please"):
                got.append(chunk.text)
    assert got, "some chunks arrived before the fault"
    assert len(events) == 1
    if fault.startswith("drop"):
        assert isinstance(info.value, errors.IncompleteStreamError)


@pytest.mark.parametrize("proto", PROTOCOLS)
async def test_hang_is_cut_by_the_configured_timeout(
    simulator: SimulatorServer, proto: str
) -> None:
    # a whole response is bounded by `timeout`; a stream's start by `first_byte_timeout`
    cfg = faulty(simulator.url, "hang", retries=0, timeout=1, first_byte_timeout=0.5)
    async with AsyncClient(cfg) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            await c.chat(f"f-{proto}", "hello")
        with pytest.raises(errors.TimeoutError):
            async for _ in c.stream(f"f-{proto}", "hello"):
                pass
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("proto", PROTOCOLS)
async def test_idle_gap_mid_stream_is_cut(simulator: SimulatorServer, proto: str) -> None:
    cfg = faulty(simulator.url, "hang;after=2", retries=0, idle_timeout=0.5)
    got = []
    async with AsyncClient(cfg) as c:
        with pytest.raises(errors.TimeoutError):
            async for chunk in c.stream(f"f-{proto}", "Tell me a long story please"):
                got.append(chunk)
    assert got


def test_keys_never_reach_logs_reprs_or_errors(
    simulator: SimulatorServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sk-proj-" + base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=")
    import logging

    caplog.set_level(logging.DEBUG)
    cfg = simulator_config(simulator.url, retries=1, backoff_base=0.01)
    for name in list(cfg.providers):
        cfg.providers[name] = cfg.providers[name].model_copy(update={"api_key": Secret(key)})
    cfg.providers["sim-openai"].headers["x-aiwire-sim-fault"] = "401"
    texts: list[str] = []
    with Client(cfg) as c:
        with pytest.raises(errors.AuthenticationError) as info:
            c.chat("sim-gpt", "hello")
        texts += [
            str(info.value),
            repr(info.value),
            repr(info.value.body),
            repr(c.router.deployments()),
        ]
        with pytest.raises(errors.BadRequestError) as bad:
            c.chat("sim-claude", "hello", seed=1)
        texts += [str(bad.value), repr(bad.value)]
        texts += [repr(cfg), str(cfg.model_dump())]
    out = capsys.readouterr()
    texts += [caplog.text, out.out, out.err]
    for t in texts:
        assert key not in t


@pytest.mark.parametrize("model", ["sim-gpt", "sim-claude"])
async def test_rate_limit_headers_are_parsed(client: AsyncClient, model: str) -> None:
    resp = await client.chat(model, "hello")
    rl = resp.ratelimit
    assert rl is not None
    assert rl.limit_requests and rl.remaining_requests is not None
    assert rl.remaining_requests < rl.limit_requests
    assert rl.limit_tokens and rl.reset_tokens is not None
    first = None
    async for chunk in client.stream(model, "hello"):
        first = first or chunk.ratelimit
    assert first is not None and first.limit_requests == rl.limit_requests


async def test_gemini_has_no_rate_limit_headers(client: AsyncClient) -> None:
    assert (await client.chat("sim-gemini", "hello")).ratelimit is None


@pytest.mark.parametrize("model", ["sim-gpt", "sim-claude"])
async def test_image_input_by_url(client: AsyncClient, model: str) -> None:
    content = [
        {"type": "text", "text": "Describe this picture."},
        {"type": "image_url", "image_url": {"url": "https://images.example.test/cat.png"}},
    ]
    resp = await client.chat(model, [{"role": "user", "content": content}])
    assert resp.text and resp.usage is not None and resp.usage.input_tokens > 0


async def test_gemini_refuses_a_plain_http_image_url_clearly(client: AsyncClient) -> None:
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "http://images.example.test/cat.png"}},
    ]
    with pytest.raises(errors.BadRequestError, match="https"):
        await client.chat("sim-gemini", [{"role": "user", "content": content}])
