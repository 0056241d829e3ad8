"""Raw-HTTP checks of the simulator's Bedrock, TGI and Vertex AI routes: wire formats (event
streams decoded with botocore's own parser), validation, auth checks, faults and limits."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jsonschema
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from aiwire.simulator import ModelLimit, SimulatorConfig, SimulatorServer

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
SIGV4 = {
    "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250918/us-east-1/"
    "bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + "0" * 64,
    "x-amz-date": "20250918T120000Z",
}
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]
}


def fault(spec: str) -> dict[str, str]:
    return {"x-aiwire-sim-fault": spec, "x-aiwire-sim-scope": uuid.uuid4().hex}


def converse_body(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"text": text}]}], **extra}


def converse(
    sim: SimulatorServer, body: dict[str, Any], *, stream: bool = False, **headers: str
) -> httpx.Response:
    op = "converse-stream" if stream else "converse"
    return httpx.post(f"{sim.url}/model/{MODEL}/{op}", json=body, headers={**SIGV4, **headers})


def events(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """(headers, payload) per message, decoded by botocore, the independent parser."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


def error_type(resp: httpx.Response) -> str:
    return resp.headers["x-amzn-errortype"].split(":")[0]


# --- Bedrock ----------------------------------------------------------------------------------


def test_bedrock_converse_answer_shape(sim: SimulatorServer) -> None:
    resp = converse(sim, converse_body(inferenceConfig={"maxTokens": 200}))
    assert resp.status_code == 200 and resp.headers["x-amzn-requestid"]
    data = resp.json()
    assert data["output"]["message"]["role"] == "assistant"
    assert data["output"]["message"]["content"][0]["text"].startswith("Simulated reply to: Hello")
    assert data["stopReason"] == "end_turn"
    usage = data["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert data["metrics"]["latencyMs"] >= 1


def test_bedrock_stream_is_a_valid_aws_event_stream(sim: SimulatorServer) -> None:
    resp = converse(sim, converse_body("Weather in Oslo and Paris?", toolConfig=TOOLS), stream=True)
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    decoded = events(resp.content)
    kinds = [h[":event-type"] for h, _ in decoded]
    assert all(h[":message-type"] == "event" for h, _ in decoded)
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    payloads = [json.loads(p) for _, p in decoded]
    assert all("p" in p for p in payloads)  # Bedrock's padding, which parsers must ignore
    starts = [p["start"]["toolUse"] for p in payloads if "start" in p]
    assert [s["name"] for s in starts] == ["get_weather", "get_weather"]
    args: dict[int, str] = {}
    for p in payloads:
        use = p.get("delta", {}).get("toolUse")
        if use:
            args[p["contentBlockIndex"]] = args.get(p["contentBlockIndex"], "") + use["input"]
    assert sorted(json.loads(a)["city"] for a in args.values()) == ["Oslo", "Paris"]
    assert payloads[-2]["stopReason"] == "tool_use"


@pytest.mark.parametrize(
    ("headers", "status", "name"),
    [
        ({"authorization": ""}, 403, "MissingAuthenticationTokenException"),
        ({"authorization": "AWS4-HMAC-SHA256 Signature=abc"}, 403, "IncompleteSignatureException"),
        (
            {"authorization": SIGV4["authorization"].replace("/bedrock/", "/s3/")},
            403,
            "InvalidSignatureException",
        ),
        (
            {"authorization": SIGV4["authorization"].replace(";x-amz-date", "")},
            403,
            "IncompleteSignatureException",
        ),
        (
            {"authorization": SIGV4["authorization"].replace("AKIAIOSFODNN7EXAMPLE", "EXPIREDKEY")},
            403,
            "ExpiredTokenException",
        ),
        ({"authorization": "Bearer expired-api-key"}, 403, "ExpiredTokenException"),
    ],
)
def test_bedrock_auth_is_checked_for_shape(
    sim: SimulatorServer, headers: dict[str, str], status: int, name: str
) -> None:
    resp = converse(sim, converse_body(), **headers)
    assert resp.status_code == status and error_type(resp) == name
    assert resp.json()["message"]


def test_bedrock_api_keys_are_accepted(sim: SimulatorServer) -> None:
    resp = httpx.post(
        f"{sim.url}/model/{MODEL}/converse",
        json=converse_body(),
        headers={"authorization": "Bearer ABSKexample"},
    )
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}, "start with a user"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {"role": "user", "content": [{"text": "b"}]},
                ]
            },
            "alternate",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "  "}]}]}, "is blank"),
        ({"messages": [{"role": "user", "content": []}]}, "is empty"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}
                        ],
                    },
                ]
            },
            "toolConfig field must be defined",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                    },
                    {"role": "user", "content": [{"text": "no result"}]},
                ],
                "toolConfig": TOOLS,
            },
            "Expected toolResult blocks",
        ),
        (converse_body(inferenceConfig={"maxTokens": 0}), "maxTokens"),
        (
            converse_body(toolConfig={**TOOLS, "toolChoice": {"tool": {"name": "nope"}}}),
            "toolChoice",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "bmp", "source": {"bytes": "AAAA"}}}],
                    }
                ]
            },
            "format",
        ),
    ],
)
def test_bedrock_validation_errors(
    sim: SimulatorServer, body: dict[str, Any], message: str
) -> None:
    resp = converse(sim, body)
    assert resp.status_code == 400 and error_type(resp) == "ValidationException"
    assert message in resp.json()["message"]


@pytest.mark.parametrize(
    ("spec", "status", "name"),
    [
        ("429", 429, "ThrottlingException"),
        ("529", 429, "ModelNotReadyException"),
        ("503", 503, "ServiceUnavailableException"),
        ("500", 500, "InternalServerException"),
        ("401", 403, "UnrecognizedClientException"),
    ],
)
def test_bedrock_faults_in_bedrock_shape(
    sim: SimulatorServer, spec: str, status: int, name: str
) -> None:
    resp = converse(sim, converse_body(), **fault(spec))
    assert resp.status_code == status and error_type(resp) == name


def test_bedrock_fault_after_k_arrives_as_an_exception_event(sim: SimulatorServer) -> None:
    resp = converse(
        sim, converse_body("Tell me a long story please"), stream=True, **fault("429;after=2")
    )
    assert resp.status_code == 200
    decoded = events(resp.content)
    deltas = [h for h, _ in decoded if h.get(":event-type") == "contentBlockDelta"]
    last_headers, last_payload = decoded[-1]
    assert len(deltas) == 2
    assert last_headers[":message-type"] == "exception"
    assert last_headers[":exception-type"] == "throttlingException"
    assert json.loads(last_payload)["message"].startswith("Too many tokens")


def test_bedrock_malformed_fault_breaks_the_checksum(sim: SimulatorServer) -> None:
    resp = converse(
        sim, converse_body("Tell me a long story please"), stream=True, **fault("malformed;after=1")
    )
    with pytest.raises(ChecksumMismatch):
        events(resp.content)


def test_bedrock_rate_limit_is_a_throttling_exception() -> None:
    with SimulatorServer(SimulatorConfig(limits={MODEL: ModelLimit(rpm=1)})) as sim:
        assert converse(sim, converse_body()).status_code == 200
        resp = converse(sim, converse_body())
        assert resp.status_code == 429 and error_type(resp) == "ThrottlingException"


def test_bedrock_invoke_serves_titan_and_cohere_embeddings(sim: SimulatorServer) -> None:
    titan = httpx.post(
        f"{sim.url}/model/amazon.titan-embed-text-v2:0/invoke",
        json={"inputText": "refund my order", "dimensions": 512},
        headers=SIGV4,
    ).json()
    assert len(titan["embedding"]) == 512 and titan["inputTextTokenCount"] > 0
    cohere = httpx.post(
        f"{sim.url}/model/cohere.embed-english-v3/invoke",
        json={"texts": ["a b", "c d"], "input_type": "search_document"},
        headers=SIGV4,
    ).json()
    assert len(cohere["embeddings"]) == 2 and cohere["texts"] == ["a b", "c d"]
    bad = httpx.post(
        f"{sim.url}/model/amazon.titan-embed-text-v1/invoke",
        json={"inputText": "x", "dimensions": 256},
        headers=SIGV4,
    )
    assert bad.status_code == 400 and "extraneous key [dimensions]" in bad.json()["message"]


def test_bedrock_unknown_operation(sim: SimulatorServer) -> None:
    resp = httpx.post(f"{sim.url}/model/{MODEL}/count-tokens", json={}, headers=SIGV4)
    assert resp.status_code == 404 and error_type(resp) == "UnknownOperationException"


# --- TGI --------------------------------------------------------------------------------------


def test_tgi_generate_reads_a_chat_template_back(sim: SimulatorServer) -> None:
    prompt = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy retry requests?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    resp = httpx.post(
        f"{sim.url}/generate",
        json={"inputs": prompt, "parameters": {"details": True, "max_new_tokens": 50}},
    )
    data = resp.json()
    assert data["generated_text"].startswith("Simulated reply to: Why retry requests")
    assert data["details"]["finish_reason"] in ("eos_token", "length")
    assert int(resp.headers["x-prompt-tokens"]) > 0
    assert int(resp.headers["x-generated-tokens"]) == data["details"]["generated_tokens"]


def test_tgi_grammar_constrains_the_answer(sim: SimulatorServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    resp = httpx.post(
        f"{sim.url}/generate",
        json={
            "inputs": "Trip to Oslo",
            "parameters": {"grammar": {"type": "json", "value": schema}},
        },
    )
    jsonschema.validate(json.loads(resp.json()["generated_text"]), schema)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ],
)
def test_tgi_validation_errors(sim: SimulatorServer, params: dict[str, Any], message: str) -> None:
    resp = httpx.post(f"{sim.url}/generate", json={"inputs": "Hi", "parameters": params})
    assert resp.status_code == 422
    assert resp.json() == {
        "error": f"Input validation error: {message}",
        "error_type": "validation",
    }


def sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:")]


def test_tgi_generate_stream_token_events(sim: SimulatorServer) -> None:
    resp = httpx.post(f"{sim.url}/generate_stream", json={"inputs": "Hello there"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.startswith("data:{")  # TGI writes no space after the colon
    items = sse_data(resp.text)
    assert all(i["generated_text"] is None for i in items[:-1])
    final = items[-1]
    assert final["token"]["special"] is True and final["details"]["finish_reason"] == "eos_token"
    text = "".join(i["token"]["text"] for i in items if not i["token"]["special"])
    assert text == final["generated_text"]
    assert final["details"]["input_length"] > 0


def test_tgi_faults(sim: SimulatorServer) -> None:
    resp = httpx.post(f"{sim.url}/generate", json={"inputs": "Hi"}, headers=fault("429"))
    assert resp.status_code == 429 and resp.json()["error_type"] == "overloaded"
    resp = httpx.post(
        f"{sim.url}/generate", json={"inputs": "Hi"}, headers=fault("503;retry_after=4")
    )
    assert resp.status_code == 503 and resp.json()["estimated_time"] == 4
    resp = httpx.post(
        f"{sim.url}/generate_stream",
        json={"inputs": "Tell me a long story please"},
        headers=fault("500;after=2"),
    )
    items = sse_data(resp.text)
    assert len(items) == 3 and items[-1]["error_type"] == "generation"


# --- Vertex AI --------------------------------------------------------------------------------

VERTEX = "/v1/projects/p1/locations/us-central1/publishers/google/models"


def test_vertex_routes_need_a_bearer_token_and_answer_like_gemini(sim: SimulatorServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    anonymous = httpx.post(f"{sim.url}{VERTEX}/gemini-2.5-flash:generateContent", json=body)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
    auth = {"authorization": "Bearer ya29.sim-token"}
    resp = httpx.post(
        f"{sim.url}{VERTEX}/gemini-2.5-flash:generateContent", json=body, headers=auth
    )
    assert resp.json()["candidates"][0]["finishReason"] == "STOP"
    streamed = httpx.post(
        f"{sim.url}{VERTEX}/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body, headers=auth
    )
    assert streamed.text.startswith("data: ")


def test_vertex_predict_embeddings(sim: SimulatorServer) -> None:
    resp = httpx.post(
        f"{sim.url}{VERTEX}/text-embedding-005:predict",
        json={
            "instances": [{"content": "a b"}, {"content": "c"}],
            "parameters": {"outputDimensionality": 32},
        },
        headers={"authorization": "Bearer ya29.sim-token"},
    )
    predictions = resp.json()["predictions"]
    assert [len(p["embeddings"]["values"]) for p in predictions] == [32, 32]
    assert predictions[0]["embeddings"]["statistics"]["token_count"] > 0


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def test_token_endpoint_grants_service_account_jwts(sim: SimulatorServer) -> None:
    now = int(time.time())
    claims = {"iss": "sa@p.iam.gserviceaccount.com", "scope": "x", "iat": now, "exp": now + 3600}
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ok = httpx.post(f"{sim.url}/token", data={"grant_type": grant, "assertion": jwt(claims)})
    assert ok.json()["access_token"].startswith("ya29.sim-") and ok.json()["expires_in"] > 0
    old = httpx.post(
        f"{sim.url}/token", data={"grant_type": grant, "assertion": jwt({**claims, "exp": now - 1})}
    )
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    wrong = httpx.post(f"{sim.url}/token", data={"grant_type": "password", "assertion": "x"})
    assert wrong.json()["error"] == "unsupported_grant_type"
