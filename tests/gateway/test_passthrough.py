"""OpenAI protocol in, OpenAI-compatible upstream out: the upstream's bytes pass through.

A scripted upstream (raw ASGI on loopback) answers with vendor fields a canonical decode would
drop, so the tests can tell pass-through from re-rendering; what aiwire still owes the client
(usage per ``include_usage``, errors for a broken upstream, fallbacks to other protocols, one
log row with the upstream's usage) is checked on the same answers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from aiwire.config import Config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer

MASTER = "sk-aiwire-passthrough-test-0123456789"
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}

COMPLETION = {
    "id": "chatcmpl-vendor1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "vendor-model-2025",
    "service_tier": "default",
    "x_vendor": {"region": "eu", "cache": True},
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Bonjour", "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}


def chunk(content: str | None, *, finish: str | None = None, usage: Any = None) -> bytes:
    choices = [] if content is None and finish is None else [
        {"index": 0, "delta": {} if content is None else {"content": content},
         "logprobs": None, "finish_reason": finish}
    ]  # fmt: skip
    body = {
        "id": "chatcmpl-vendor2",
        "object": "chat.completion.chunk",
        "created": 1700000001,
        "model": "vendor-model-2025",
        "x_vendor": "kept",
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = [
    chunk("Bon"),
    chunk("jour"),
    chunk(None, finish="stop"),
    chunk(None, usage=USAGE),
    b"data: [DONE]\n\n",
]


async def scripted(scope: Any, receive: Any, send: Any) -> None:
    """``vendor``: a good answer with vendor fields; ``broken``: a body that is no completion
    (or a stream with a malformed event); ``down``: 503."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    req = orjson.loads(body)
    model, stream = req["model"], req.get("stream", False)
    if model == "down":
        err = orjson.dumps({"error": {"message": "overloaded", "type": "server_error"}})
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": err})
        return
    if not stream:
        out = orjson.dumps(COMPLETION if model == "vendor" else {"hello": "world"})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": out})
        return
    events = STREAM if model == "vendor" else [chunk("ok"), b"data: {not json\n\n"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
    for ev in events:
        await send({"type": "http.response.body", "body": ev, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


class Setup:
    def __init__(self, url: str, db: Path) -> None:
        self.url = url
        self.db = db

    def row(self, request_id: str) -> tuple[Any, ...] | None:
        """The request's log row, once the background writer has written it (≤ 5 s)."""
        for _ in range(50):
            with sqlite3.connect(self.db) as con:
                row: tuple[Any, ...] | None = con.execute(
                    "select model, status, input_tokens, output_tokens from request_log "
                    "where request_id = ?",
                    (request_id,),
                ).fetchone()
            if row is not None:
                return row
            time.sleep(0.1)
        return None


@pytest.fixture(scope="module")
def setup(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    upstream = BackgroundServer(scripted)
    with upstream:
        db = tmp_path_factory.mktemp("pt") / "aiwire.db"
        config = Config.from_dict(
            {
                "providers": {
                    "up": {"type": "openai", "base_url": f"{upstream.url}/v1",
                           "api_key": Secret("sk-upstream-passthrough-key", "test")},
                    "sim": {"type": "anthropic", "base_url": simulator.url,
                            "api_key": Secret("sim-key", "test")},
                },
                "models": [
                    {"name": "vendor", "provider": "up", "model": "vendor"},
                    {"name": "broken", "provider": "up", "model": "broken"},
                    {"name": "flaky", "provider": "up", "model": "down",
                     "fallbacks": ["claude"]},
                    {"name": "claude", "provider": "sim", "model": "claude-sonnet-4-5"},
                ],
                "router": {"retries": 0},
            },
            source="test",
        )  # fmt: skip
        parts = build_gateway(config, store_url=f"sqlite:///{db}", master_key=Secret(MASTER))
        with BackgroundServer(parts.gateway, lifespan="on") as gw:
            yield Setup(gw.url, db)


def post(setup: Setup, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{setup.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}], **body},
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=10,
    )


def data_lines(resp: httpx.Response) -> list[bytes]:
    return [ln[6:] for ln in resp.content.split(b"\n") if ln.startswith(b"data: ")]


def test_a_completion_passes_through_byte_for_byte(setup: Setup) -> None:
    resp = post(setup, {"model": "vendor"})
    assert resp.status_code == 200
    assert resp.content == orjson.dumps(COMPLETION)  # vendor fields and all, unchanged
    client = openai.OpenAI(base_url=f"{setup.url}/v1", api_key=MASTER, max_retries=0)
    parsed = client.chat.completions.create(
        model="vendor", messages=[{"role": "user", "content": "x"}]
    )
    assert parsed.choices[0].message.content == "Bonjour"
    assert parsed.usage is not None and parsed.usage.total_tokens == 14


def test_a_stream_passes_through_and_usage_follows_the_client(setup: Setup) -> None:
    # Not asked for usage: aiwire asked upstream anyway (for billing), so the usage chunk is
    # held back and "usage":null taken out; the rest is the upstream's bytes.
    plain = data_lines(post(setup, {"model": "vendor", "stream": True}))
    assert plain[-1] == b"[DONE]"
    assert len(plain) == 4  # two text chunks, the finish chunk, [DONE]
    assert all(b'"usage"' not in line for line in plain)
    assert all(b'"x_vendor":"kept"' in line for line in plain[:-1])
    assert plain[0] == STREAM[0][6:-2].replace(b',"usage":null', b"")

    # Asked for usage: every upstream event, exactly once, unchanged.
    asked = data_lines(
        post(setup, {"model": "vendor", "stream": True, "stream_options": {"include_usage": True}})
    )
    assert asked == [ev[6:-2] for ev in STREAM]

    client = openai.OpenAI(base_url=f"{setup.url}/v1", api_key=MASTER, max_retries=0)
    text, usages = "", []
    for c in client.chat.completions.create(
        model="vendor",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        text += "".join(ch.delta.content or "" for ch in c.choices)
        if c.usage is not None:
            usages.append(c.usage.total_tokens)
    assert (text, usages) == ("Bonjour", [14])


@pytest.mark.parametrize("stream", [False, True])
def test_the_upstreams_usage_is_logged(setup: Setup, stream: bool) -> None:
    resp = post(setup, {"model": "vendor", "stream": stream})
    assert setup.row(resp.headers["x-request-id"]) == ("vendor", 200, 11, 3)


def test_a_body_that_is_no_completion_is_an_error_not_a_pass(setup: Setup) -> None:
    resp = post(setup, {"model": "broken"})
    assert resp.status_code == 500
    assert "not a chat completion" in resp.json()["error"]["message"]


def test_a_malformed_event_ends_the_stream_with_an_error(setup: Setup) -> None:
    lines = data_lines(post(setup, {"model": "broken", "stream": True}))
    assert orjson.loads(lines[0])["choices"][0]["delta"]["content"] == "ok"
    assert "not valid JSON" in orjson.loads(lines[-1])["error"]["message"]
    assert b"[DONE]" not in lines


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_to_another_protocol_is_rendered_canonically(setup: Setup, stream: bool) -> None:
    resp = post(setup, {"model": "flaky", "stream": stream})
    assert resp.status_code == 200
    if stream:
        lines = data_lines(resp)
        assert lines[-1] == b"[DONE]"
        text = "".join(
            c["delta"].get("content") or ""
            for line in lines[:-1]
            for c in orjson.loads(line)["choices"]
        )
    else:
        text = resp.json()["choices"][0]["message"]["content"]
    assert text.startswith("Simulated reply")  # the simulator's Claude answered
