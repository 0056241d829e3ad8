"""PII guardrails and content hooks through the gateway: what the provider sees, what the
client gets back.

The upstream here records every body it receives and answers with the user's text (as one
answer or as a stream cut into small pieces), so a test can look at both sides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from aiwire.config import Config
from aiwire.guardrails import HookContext, Reject
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer

MASTER = "sk-aiwire-guardrails-test-0123456789"
EMAIL, PHONE = "anna.berg@northwind.example", "+44 20 7946 0958"
received: list[dict[str, Any]] = []


async def echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    req = orjson.loads(body)
    received.append(req)
    text = "You said: " + req["messages"][-1]["content"]
    base = {"id": "chatcmpl-echo", "created": 1, "model": "echo"}
    if not req.get("stream"):
        out = {**base, "object": "chat.completion", "usage": {"prompt_tokens": 5,
               "completion_tokens": 5, "total_tokens": 10},
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop"}]}  # fmt: skip
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": orjson.dumps(out)})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]  # placeholders cut anywhere
    for i, piece in enumerate(pieces):
        finish = "stop" if i == len(pieces) - 1 else None
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
        chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def no_secret_plans(ctx: HookContext) -> Reject | None:
    return Reject("project Bluebird is confidential") if "Bluebird" in ctx.text() else None


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundServer(echo) as up:
        config = Config.from_dict(
            {
                "providers": {"up": {"type": "openai", "base_url": f"{up.url}/v1",
                                     "api_key": Secret("sk-up-guardrails", "t")}},
                "models": [{"name": "echo", "provider": "up", "model": "echo"},
                           {"name": "strict", "provider": "up", "model": "echo"}],
                "router": {"retries": 0},
                "guardrails": {
                    "pii": {"action": "mask", "kinds": ["email", "phone"]},
                    "models": {"strict": {"action": "block"}},
                    "hooks": [{"path": "tests.gateway.test_guardrails:no_secret_plans",
                               "stages": ["request"]}],
                },
            },
            source="test",
        )  # fmt: skip
        db = tmp_path_factory.mktemp("guard") / "a.db"
        parts = build_gateway(config, store_url=f"sqlite:///{db}", master_key=Secret(MASTER))
        with BackgroundServer(parts.gateway, lifespan="on") as gw:
            yield gw.url


def chat(url: str, text: str, key: str = MASTER, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": text}], **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_personal_data_is_masked_on_the_way_out_and_restored_on_the_way_back(url: str) -> None:
    r = chat(url, f"Write to {EMAIL} or call {PHONE}, and {EMAIL} again", temperature=0)
    sent = received[-1]["messages"][-1]["content"]
    assert EMAIL not in sent and PHONE not in sent
    assert sent == "Write to <EMAIL_1> or call <PHONE_1>, and <EMAIL_1> again"
    answer = r.json()["choices"][0]["message"]["content"]
    assert answer == f"You said: Write to {EMAIL} or call {PHONE}, and {EMAIL} again"
    assert "x-aiwire-cache" not in r.headers  # an answer holding personal data is not cached


def test_a_streamed_answer_is_restored_across_chunk_boundaries(url: str) -> None:
    r = chat(url, f"Mail {EMAIL} now", stream=True)
    text = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for c in orjson.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    assert text == f"You said: Mail {EMAIL} now"
    assert r.text.rstrip().endswith("data: [DONE]")
    assert EMAIL not in orjson.dumps(received[-1]).decode()


def test_block_names_the_kinds_never_the_values(url: str) -> None:
    before = len(received)
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "strict", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "pii_detected" and "email" in err["message"]
    assert EMAIL not in r.text and len(received) == before  # nothing left


def test_a_keys_own_pii_option_wins(url: str) -> None:
    created = httpx.post(
        f"{url}/admin/keys",
        json={"name": "trusted", "options": {"pii": "off"}},
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()
    chat(url, f"Reply to {EMAIL}", key=created["key"])
    assert received[-1]["messages"][-1]["content"] == f"Reply to {EMAIL}"


def test_a_content_hook_can_refuse_a_request(url: str) -> None:
    before = len(received)
    r = chat(url, "Summarise the Bluebird roadmap")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "project Bluebird is confidential",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy",
    }
    assert len(received) == before
