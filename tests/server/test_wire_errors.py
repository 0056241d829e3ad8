"""Error bodies in both client protocols, and what the official SDKs make of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import orjson
import pytest
from openai import _base_client as openai_base
from tests.server.wire_support import Recorder

from aiwire import errors
from aiwire.server import anthropic_wire, openai_wire
from aiwire.types import ChatResponse, Choice, Message

MakeOpenAI = Callable[..., openai.OpenAI]
MakeAnthropic = Callable[..., anthropic.Anthropic]

# error → (OpenAI status, OpenAI type, openai SDK class,
#          Anthropic status, Anthropic error.type, anthropic SDK class)
CASES: list[tuple[errors.AIWireError, int, str, type[Exception], int, str, type[Exception]]] = [
    (
        errors.BadRequestError("bad field", param="messages", code="invalid_value"),
        400, "invalid_request_error", openai.BadRequestError,
        400, "invalid_request_error", anthropic.BadRequestError,
    ),
    (
        errors.ContextWindowExceededError("prompt is too long"),
        400, "invalid_request_error", openai.BadRequestError,
        400, "invalid_request_error", anthropic.BadRequestError,
    ),
    (
        errors.BadRequestError("too big", status=413),
        413, "invalid_request_error", openai.APIStatusError,
        413, "request_too_large", anthropic.ContentTooLargeError,
    ),
    (
        errors.AuthenticationError("bad key"),
        401, "authentication_error", openai.AuthenticationError,
        401, "authentication_error", anthropic.AuthenticationError,
    ),
    (
        errors.PermissionDeniedError("no access"),
        403, "permission_error", openai.PermissionDeniedError,
        403, "permission_error", anthropic.PermissionDeniedError,
    ),
    (
        errors.PermissionDeniedError("pay up", status=402),
        402, "permission_error", openai.APIStatusError,
        402, "billing_error", anthropic.PaymentRequiredError,
    ),
    (
        errors.NotFoundError("no such model", param="model", code="model_not_found"),
        404, "invalid_request_error", openai.NotFoundError,
        404, "not_found_error", anthropic.NotFoundError,
    ),
    (
        errors.RateLimitError("slow down", retry_after=1.5),
        429, "rate_limit_error", openai.RateLimitError,
        429, "rate_limit_error", anthropic.RateLimitError,
    ),
    (
        errors.OverloadedError("busy", status=503),
        503, "overloaded_error", openai.InternalServerError,
        529, "overloaded_error", anthropic.OverloadedError,
    ),
    (
        errors.TimeoutError("upstream too slow"),
        504, "timeout_error", openai.InternalServerError,
        504, "timeout_error", anthropic.GatewayTimeoutError,
    ),
    (
        errors.ServerError("upstream broke", status=500),
        500, "api_error", openai.InternalServerError,
        500, "api_error", anthropic.InternalServerError,
    ),
    (
        errors.ServerError("bad gateway", status=502),
        502, "api_error", openai.InternalServerError,
        502, "api_error", anthropic.InternalServerError,
    ),
    (
        errors.ConnectionError("connection reset"),
        502, "connection_error", openai.InternalServerError,
        502, "api_error", anthropic.InternalServerError,
    ),
    (
        errors.ConfigError("providers.x.base_url is invalid"),
        500, "api_error", openai.InternalServerError,
        500, "api_error", anthropic.InternalServerError,
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{type(c[0]).__name__}-{c[1]}")
def test_openai_error_bodies(openai_client: MakeOpenAI, case: Any) -> None:
    exc, status, etype, sdk_class, *_ = case
    got_status, body, headers = openai_wire.error_body(exc)
    assert got_status == status
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] == exc.message and err["type"] == etype
    assert err["param"] == exc.param
    if isinstance(exc, errors.ContextWindowExceededError):
        assert err["code"] == "context_length_exceeded"
    else:
        assert err["code"] == exc.code

    client = openai_client(Recorder(body, status=got_status, headers=headers))
    with pytest.raises(sdk_class) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert type(info.value) is sdk_class
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == status
    assert info.value.body == err  # the SDK unwraps `error`
    assert info.value.message.endswith(exc.message) or exc.message in info.value.message


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{type(c[0]).__name__}-{c[4]}")
def test_anthropic_error_bodies(anthropic_client: MakeAnthropic, case: Any) -> None:
    exc, *_, status, etype, sdk_class = case
    got_status, body, headers = anthropic_wire.error_body(exc)
    assert got_status == status
    assert orjson.loads(body) == {"type": "error", "error": {"type": etype, "message": exc.message}}

    client = anthropic_client(Recorder(body, status=got_status, headers=headers))
    with pytest.raises(sdk_class) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert type(info.value) is sdk_class
    assert isinstance(info.value, anthropic.APIStatusError)
    assert info.value.status_code == status


def test_headers_retry_after_and_request_ids() -> None:
    exc = errors.RateLimitError("slow down", retry_after=1.5, request_id="req_123")
    _, _, oh = openai_wire.error_body(exc)
    assert oh == {"retry-after": "2", "retry-after-ms": "1500", "x-request-id": "req_123"}
    _, ab, ah = anthropic_wire.error_body(exc)
    assert ah == {"retry-after": "2", "retry-after-ms": "1500", "request-id": "req_123"}
    assert orjson.loads(ab)["request_id"] == "req_123"
    _, _, plain = openai_wire.error_body(errors.BadRequestError("x"))
    assert plain == {}


def test_messages_never_carry_a_key_or_a_traceback() -> None:
    exc = errors.AuthenticationError("Incorrect API key provided: sk-proj-abcdefghijklmnop1234")
    for render in (openai_wire.error_body, anthropic_wire.error_body):
        _, body, _ = render(exc)
        assert b"sk-proj-abcdefghijklmnop1234" not in body
        assert b"[REDACTED]" in body
        assert b"Traceback" not in body


def test_internal_error_bodies_are_generic() -> None:
    status, body, headers = openai_wire.internal_error_body("req_9")
    assert status == 500 and headers == {"x-request-id": "req_9"}
    assert orjson.loads(body) == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    status, body, headers = anthropic_wire.internal_error_body()
    assert status == 500 and headers == {}
    assert orjson.loads(body)["error"]["type"] == "api_error"


def ok_chat() -> bytes:
    return openai_wire.render_chat(
        ChatResponse(model="m", choices=[Choice(message=Message(role="assistant", content="ok"))])
    )


def test_openai_sdk_honours_retry_after(
    openai_client: MakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(openai_base.time, "sleep", slept.append)
    status, body, headers = openai_wire.error_body(errors.RateLimitError("wait", retry_after=1.5))
    rec = Recorder([(status, body, headers), (200, ok_chat(), {})])
    out = openai_client(rec, max_retries=1).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert out.choices[0].message.content == "ok"
    assert len(rec.requests) == 2
    assert slept == [1.5]  # the server's delay, not the SDK's own backoff (0.375–0.5 s)


def test_anthropic_sdk_honours_retry_after(
    anthropic_client: MakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anthropic._base_client as anthropic_base

    slept: list[float] = []
    monkeypatch.setattr(anthropic_base.time, "sleep", slept.append)
    status, body, headers = anthropic_wire.error_body(
        errors.OverloadedError("Overloaded", retry_after=3)
    )
    message = anthropic_wire.render_message(
        ChatResponse(model="m", choices=[Choice(message=Message(role="assistant", content="ok"))]),
        "m",
    )
    rec = Recorder([(status, body, headers), (200, message, {})])
    out = anthropic_client(rec, max_retries=1).messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert out.content[0].type == "text"
    assert len(rec.requests) == 2
    assert slept == [3.0]


def test_a_quota_refusal_is_not_retried(openai_client: MakeOpenAI) -> None:
    exc = errors.RateLimitError("You exceeded your current quota", retryable=False)
    status, body, headers = openai_wire.error_body(exc)
    assert headers["x-should-retry"] == "false"
    rec = Recorder(body, status=status, headers=headers)
    with pytest.raises(openai.RateLimitError):
        openai_client(rec, max_retries=2).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert len(rec.requests) == 1  # the SDK would have tried 3 times on a plain 429


def test_a_retryable_error_with_a_non_retry_status_says_so() -> None:
    exc = errors.BadRequestError("transient", retryable=True)
    assert openai_wire.error_body(exc)[2]["x-should-retry"] == "true"
    assert "x-should-retry" not in openai_wire.error_body(errors.ServerError("x"))[2]
