"""Raw-HTTP checks of the wire formats, rate limits and faults."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from aiwire.simulator import SimulatorConfig, SimulatorServer

OA = {"authorization": "Bearer sk-test"}
AN = {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}
GE = {"x-goog-api-key": "g-key"}
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def oa_body(text: str = "hello", model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def an_body(text: str = "hello", model: str = "claude-sim", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def ge_body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event."""
    out: list[tuple[str | None, str]] = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


def fault(spec: str, scope: str | None = None) -> dict[str, str]:
    return {"x-aiwire-sim-fault": spec, "x-aiwire-sim-scope": scope or uuid.uuid4().hex}


# --- stream formats -----------------------------------------------------------------------------


def test_openai_sse_order(sim: SimulatorServer) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}
    ]
    resp = httpx.post(
        f"{sim.url}/v1/chat/completions",
        headers=OA,
        json=oa_body("weather in Oslo?", stream=True, tools=tools),
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [orjson.loads(d) for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    frags = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert frags[0]["id"].startswith("call_") and frags[0]["type"] == "function"
    assert frags[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all("id" not in f for f in frags[1:]) and len(frags) >= 3
    assert orjson.loads("".join(f["function"]["arguments"] for f in frags)) == {"city": "Oslo"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in chunks[0]  # only with stream_options.include_usage


def test_anthropic_event_order(sim: SimulatorServer) -> None:
    tools = [{"name": "get_weather", "input_schema": WEATHER_PARAMS}]
    body = an_body("weather in Oslo?", stream=True, tools=tools)
    resp = httpx.post(f"{sim.url}/v1/messages", headers=AN, json=body)
    events = sse_events(resp.text)
    names = [n for n, _ in events]
    datas = [orjson.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    middle = [n for n in names[2:-2]]
    assert middle[0] == "content_block_start" and middle[-1] == "content_block_stop"
    assert set(middle[1:-1]) == {"content_block_delta"}
    start = datas[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    partial = [d["delta"]["partial_json"] for d in datas if d["type"] == "content_block_delta"]
    assert partial[0] == "" and len(partial) >= 3
    assert orjson.loads("".join(partial)) == {"city": "Oslo"}
    delta = datas[-2]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] > 0


def test_gemini_sse_and_json_array(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    resp = httpx.post(url, params={"alt": "sse"}, headers=GE, json=ge_body("stream please"))
    events = sse_events(resp.text)
    assert all(d != "[DONE]" and n is None for n, d in events)
    chunks = [orjson.loads(d) for _, d in events]
    assert len(chunks) > 2
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    usage = chunks[-1]["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    array = httpx.post(url, headers=GE, json=ge_body("stream please"))  # no alt=sse
    assert array.headers["content-type"].startswith("application/json")
    assert [c["candidates"] for c in array.json()] == [c["candidates"] for c in chunks]


def test_gemini_key_and_snake_case(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/models/gemini-2.5-flash:generateContent"
    body = ge_body(
        "hello",
        system_instruction={"parts": [{"text": "terse"}]},
        generation_config={"max_output_tokens": 2},
    )
    ok = httpx.post(url, params={"key": "k"}, json=body)
    assert ok.status_code == 200
    assert ok.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"
    missing = httpx.post(url, json=body)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    bad_role = httpx.post(url, headers=GE, json={"contents": [{"role": "bot", "parts": []}]})
    assert bad_role.status_code == 400
    assert bad_role.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- validation and routing ---------------------------------------------------------------------


def test_openai_validation(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    no_model = httpx.post(url, headers=OA, json={"messages": []})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    no_messages = httpx.post(url, headers=OA, json={"model": "gpt-4o"})
    assert no_messages.json()["error"] == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    opts = httpx.post(url, headers=OA, json=oa_body(stream_options={"include_usage": True}))
    assert opts.status_code == 400 and opts.json()["error"]["param"] == "stream_options"
    unknown = httpx.post(url, headers=OA, json=oa_body(some_future_field={"x": 1}))
    assert unknown.status_code == 200
    no_key = httpx.post(url, json=oa_body())
    assert no_key.status_code == 401
    bad_fault = httpx.post(url, headers={**OA, **fault("teapot")}, json=oa_body())
    assert bad_fault.status_code == 400 and "teapot" in bad_fault.json()["error"]["message"]


def test_images_count_as_input(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    plain = httpx.post(url, headers=OA, json=oa_body("look")).json()
    content = [{"type": "text", "text": "look"}, image]
    with_image = httpx.post(
        url,
        headers=OA,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": content}]},
    ).json()
    assert with_image["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]


def test_unknown_routes_use_each_providers_error_shape(sim: SimulatorServer) -> None:
    gemini = httpx.get(f"{sim.url}/v1beta/nothing", headers=GE)
    assert gemini.status_code == 404 and gemini.json()["error"]["status"] == "NOT_FOUND"
    openai = httpx.post(f"{sim.url}/v1/nothing", headers=OA)
    assert openai.status_code == 404 and openai.json()["error"]["type"] == "invalid_request_error"
    anthropic = httpx.post(f"{sim.url}/v1/messages/nothing", headers=AN)
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "not_found_error"


def test_azure_requires_api_version(sim: SimulatorServer) -> None:
    url = f"{sim.url}/openai/deployments/dep/chat/completions"
    missing = httpx.post(url, headers={"api-key": "k"}, json=oa_body())
    assert missing.status_code == 400
    ok = httpx.post(
        url,
        params={"api-version": "2024-10-21"},
        headers={"api-key": "k"},
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert ok.status_code == 200 and ok.json()["model"] == "dep"
    assert ok.headers["x-request-id"] and "prompt_filter_results" in ok.json()


def test_models_route_is_shared_by_three_protocols(sim: SimulatorServer) -> None:
    assert httpx.get(f"{sim.url}/v1/models", headers=OA).json()["object"] == "list"
    assert "has_more" in httpx.get(f"{sim.url}/v1/models", headers=AN).json()
    assert "models" in httpx.get(f"{sim.url}/v1/models", headers=GE).json()


# --- determinism and pacing ---------------------------------------------------------------------


def test_deterministic(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    a = httpx.post(url, headers=OA, json=oa_body("same question")).json()
    b = httpx.post(url, headers=OA, json=oa_body("same question")).json()
    c = httpx.post(url, headers=OA, json=oa_body("another question")).json()
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"]
    assert text != c["choices"][0]["message"]["content"]
    assert a["id"] != b["id"]


def test_tokens_per_second_paces_streams() -> None:
    with SimulatorServer(SimulatorConfig(tokens_per_second=400)) as slow:
        t0 = time.monotonic()
        with httpx.stream(
            "POST",
            f"{slow.url}/v1/chat/completions",
            headers=OA,
            json=oa_body("pace me", stream=True),
        ) as resp:
            arrivals = [time.monotonic() for _ in resp.iter_lines() if _.startswith("data: ")]
        elapsed = time.monotonic() - t0
    content_chunks = len(arrivals) - 3  # role, finish and [DONE] are not paced
    assert content_chunks > 5
    assert elapsed >= content_chunks / 400  # at least one token's time per chunk
    assert arrivals == sorted(arrivals)


# --- rate limits --------------------------------------------------------------------------------


def test_openai_rpm_limit(limited: SimulatorServer) -> None:
    url = f"{limited.url}/v1/chat/completions"
    first = httpx.post(url, headers=OA, json=oa_body(model="m"))
    second = httpx.post(url, headers=OA, json=oa_body(model="m"))
    third = httpx.post(url, headers=OA, json=oa_body(model="m"))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")
    error = third.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert error["message"].startswith("Rate limit reached for m ")
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1." in error["message"]
    assert 25 <= int(third.headers["retry-after"]) <= 30
    assert 25_000 <= int(third.headers["retry-after-ms"]) <= 30_000
    other = httpx.post(url, headers=OA, json=oa_body(model="unlimited"))
    assert other.status_code == 200
    assert other.headers["x-ratelimit-limit-requests"] == "10000"


def test_anthropic_and_gemini_rpm_limit(limited: SimulatorServer) -> None:
    an_url = f"{limited.url}/v1/messages"
    codes = [httpx.post(an_url, headers=AN, json=an_body(model="m")) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[0].headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert codes[2].json()["error"]["type"] == "rate_limit_error"
    assert int(codes[2].headers["retry-after"]) > 0
    ge_url = f"{limited.url}/v1beta/models/m:generateContent"
    replies = [httpx.post(ge_url, headers=GE, json=ge_body()) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert not any(k.startswith("x-ratelimit") for k in replies[0].headers)
    error = replies[2].json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
    by_type = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    assert by_type["QuotaFailure"]["violations"][0]["quotaDimensions"]["model"] == "m"
    assert by_type["RetryInfo"]["retryDelay"].endswith("s")
    assert int(by_type["RetryInfo"]["retryDelay"][:-1]) > 0


def test_tpm_limit(limited: SimulatorServer) -> None:
    url = f"{limited.url}/v1/chat/completions"
    too_large = httpx.post(url, headers=OA, json=oa_body(model="t", max_tokens=500))
    assert too_large.status_code == 429
    assert too_large.json()["error"]["message"].startswith("Request too large for t")
    statuses = []
    remaining = []
    for _ in range(8):
        r = httpx.post(url, headers=OA, json=oa_body(model="t", max_tokens=40))
        statuses.append(r.status_code)
        if r.status_code == 200:
            remaining.append(int(r.headers["x-ratelimit-remaining-tokens"]))
    assert statuses[0] == 200 and 429 in statuses
    assert remaining == sorted(remaining, reverse=True) and remaining[0] < 200


# --- faults -------------------------------------------------------------------------------------


def test_times_limits_a_fault(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    headers = {**OA, **fault("429;times=1")}
    first = httpx.post(url, headers=headers, json=oa_body())
    second = httpx.post(url, headers=headers, json=oa_body())
    assert (first.status_code, second.status_code) == (429, 200)
    assert first.headers["retry-after"] == "1"
    other_scope = httpx.post(url, headers={**headers, **fault("429;times=1")}, json=oa_body())
    assert other_scope.status_code == 429


@pytest.mark.parametrize(
    ("spec", "status", "provider_type"),
    [
        ("500", 500, "api_error"),
        ("503", 503, "api_error"),
        ("529", 529, "overloaded_error"),
        ("401", 401, "authentication_error"),
        ("429;retry_after=3", 429, "rate_limit_error"),
    ],
)
def test_error_faults_in_anthropic_shape(
    sim: SimulatorServer, spec: str, status: int, provider_type: str
) -> None:
    resp = httpx.post(f"{sim.url}/v1/messages", headers={**AN, **fault(spec)}, json=an_body())
    assert resp.status_code == status
    assert resp.json()["error"]["type"] == provider_type
    if status == 429:
        assert resp.headers["retry-after"] == "3"


def test_gemini_429_fault_has_retry_info(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1beta/models/gemini-2.5-flash:generateContent"
    resp = httpx.post(url, headers={**GE, **fault("429;retry_after=2")}, json=ge_body())
    assert resp.status_code == 429
    details = resp.json()["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in details


def test_configured_fault() -> None:
    with SimulatorServer(SimulatorConfig(faults={"always-503": "503"})) as s:
        url = f"{s.url}/v1/chat/completions"
        assert httpx.post(url, headers=OA, json=oa_body(model="always-503")).status_code == 503
        assert httpx.post(url, headers=OA, json=oa_body()).status_code == 200


def test_hang_times_out(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, headers={**OA, **fault("hang")}, json=oa_body(), timeout=0.5)
    got: list[str] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            url,
            headers={**OA, **fault("hang;after=2")},
            json=oa_body("long story", stream=True),
            timeout=0.5,
        ) as resp,
    ):
        got.extend(line for line in resp.iter_lines() if line.startswith("data: "))
    assert len(got) == 3  # the role chunk and two content chunks


def test_drop_and_malformed(sim: SimulatorServer) -> None:
    url = f"{sim.url}/v1/chat/completions"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url, headers={**OA, **fault("drop")}, json=oa_body())
    broken = httpx.post(url, headers={**OA, **fault("malformed")}, json=oa_body())
    assert broken.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.content)
    stream = httpx.post(
        url, headers={**OA, **fault("malformed;after=1")}, json=oa_body(stream=True)
    )
    datas = [d for _, d in sse_events(stream.text)]
    assert datas[-1] == "{not json" and len(datas) == 3 and "[DONE]" not in datas
    an = httpx.post(
        f"{sim.url}/v1/messages",
        headers={**AN, **fault("malformed;after=1")},
        json=an_body(stream=True),
    )
    assert sse_events(an.text)[-1] == ("content_block_delta", "{not json")


def test_stop_is_prompt_during_a_hang() -> None:
    server = SimulatorServer(SimulatorConfig(hang_seconds=60)).start()
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.post(
                f"{server.url}/v1/chat/completions",
                headers={**OA, **fault("hang")},
                json=oa_body(),
                timeout=30,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 3
    thread.join(5)
    assert not thread.is_alive()


STREAMS = {
    "openai": ("/v1/chat/completions", OA, oa_body("long story", stream=True)),
    "anthropic": ("/v1/messages", AN, an_body("long story", stream=True)),
    "gemini": ("/v1beta/models/g:streamGenerateContent?alt=sse", GE, ge_body("long story")),
}


@pytest.mark.parametrize("proto", list(STREAMS))
def test_drop_mid_stream_cuts_the_chunked_body(sim: SimulatorServer, proto: str) -> None:
    path, headers, body = STREAMS[proto]
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        httpx.stream(
            "POST", sim.url + path, headers={**headers, **fault("drop;after=2")}, json=body
        ) as resp,
    ):
        assert resp.status_code == 200
        for part in resp.iter_raw():
            received += part
    assert received.count(b"data: ") >= 2
    for terminal in (b"[DONE]", b"message_stop", b"finishReason"):
        assert terminal not in received


def test_latency_ms_delays_answers() -> None:
    with SimulatorServer(SimulatorConfig(latency_ms=300)) as slow:
        t0 = time.monotonic()
        r = httpx.post(f"{slow.url}/v1/chat/completions", headers=OA, json=oa_body("hi"))
        assert r.status_code == 200
        assert time.monotonic() - t0 >= 0.3
