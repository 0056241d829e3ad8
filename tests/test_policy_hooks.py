"""Content-policy hooks: user functions (sync, async, in a thread) that may reject a request
before it leaves or an answer before it returns."""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from aiwire import errors
from aiwire.guardrails import (
    ContentHookConfig,
    ContentPolicy,
    ContentPolicyViolation,
    HookContext,
    Reject,
    load_hook,
)
from aiwire.server import openai_wire
from aiwire.types import ChatRequest, ChatResponse, Choice, Message, RawChatResponse

REQUEST = ChatRequest(model="m", messages=[Message(role="user", content="Tell me about ORCA.")])
ANSWER = ChatResponse(
    model="m", choices=[Choice(message=Message(role="assistant", content="ORCA is secret"))]
)

SEEN: list[tuple[str, str]] = []
THREADS: list[int] = []


# --- hooks addressed by dotted path in these tests --------------------------------------------


def no_codenames(ctx: HookContext) -> Reject | None:
    SEEN.append((ctx.stage, ctx.text()))
    if "ORCA" in ctx.text():
        return Reject("Internal project names may not be sent to external models.")
    return None


async def async_no_secrets(ctx: HookContext) -> None:
    await asyncio.sleep(0)
    if ctx.response is not None and "secret" in ctx.text():
        raise ContentPolicyViolation("The answer disclosed restricted information.")


def blocking_audit(ctx: HookContext) -> None:
    THREADS.append(threading.get_ident())


def broken(ctx: HookContext) -> None:
    raise RuntimeError(f"hook bug while reading {ctx.text()}")


def returns_bool(ctx: HookContext) -> bool:
    return False


NOT_CALLABLE = 42


class Namespace:
    @staticmethod
    def allow(ctx: HookContext) -> None:
        return None


HERE = __name__


# --- tests ------------------------------------------------------------------------------------


async def test_sync_rejection_is_a_400_with_the_hooks_message() -> None:
    policy = ContentPolicy.from_config([ContentHookConfig(path=f"{HERE}:no_codenames")])
    with pytest.raises(errors.BadRequestError) as info:
        await policy.check_request(REQUEST, key_name="team-a")
    exc = info.value
    assert exc.status == 400 and exc.code == "content_policy"
    assert exc.message == "Internal project names may not be sent to external models."
    status, body, _ = openai_wire.error_body(exc)
    assert status == 400 and orjson.loads(body)["error"]["code"] == "content_policy"


async def test_allowed_content_passes_and_hooks_see_context() -> None:
    SEEN.clear()
    seen_keys: list[str | None] = []

    def record(ctx: HookContext) -> None:
        seen_keys.append(ctx.key_name)

    policy = ContentPolicy.of(no_codenames, record)
    clean = ChatRequest(model="m", messages=[Message(role="user", content="hello")])
    await policy.check_request(clean, key_name="team-a")
    reply = ChatResponse(
        model="m", choices=[Choice(message=Message(role="assistant", content="hi"))]
    )
    await policy.check_response(clean, reply, key_name="team-a")
    assert SEEN == [("request", "hello"), ("response", "hi")]
    assert seen_keys == ["team-a", "team-a"]


async def test_async_hook_rejects_by_raising_and_stages_filter() -> None:
    policy = ContentPolicy.from_config(
        [ContentHookConfig(path=f"{HERE}.async_no_secrets", stages=["response"])]
    )
    assert not policy.checks_requests and policy.checks_responses
    await policy.check_request(REQUEST)  # no request hooks: nothing runs
    with pytest.raises(errors.BadRequestError, match="restricted information") as info:
        await policy.check_response(REQUEST, ANSWER)
    assert info.value.code == "content_policy"


async def test_raw_upstream_answers_are_decoded_for_response_hooks() -> None:
    body = orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "a secret"}}],
        }
    )
    policy = ContentPolicy.of(async_no_secrets, stages=["response"])
    with pytest.raises(errors.BadRequestError):
        await policy.check_response(REQUEST, RawChatResponse(body=body, usage=None))


async def test_thread_option_runs_sync_hooks_off_the_loop() -> None:
    THREADS.clear()
    policy = ContentPolicy.from_config(
        [ContentHookConfig(path=f"{HERE}:blocking_audit", thread=True)]
    )
    await policy.check_request(REQUEST)
    assert THREADS and THREADS[0] != threading.get_ident()
    inline = ContentPolicy.from_config([ContentHookConfig(path=f"{HERE}:blocking_audit")])
    await inline.check_request(REQUEST)
    assert THREADS[1] == threading.get_ident()


async def test_a_failing_hook_fails_closed_without_echoing_content() -> None:
    policy = ContentPolicy.from_config([ContentHookConfig(path=f"{HERE}:broken")])
    with pytest.raises(errors.ServerError) as info:
        await policy.check_request(REQUEST)
    exc = info.value
    assert exc.status == 500 and exc.code == "content_policy_error" and not exc.retryable
    assert "broken" in exc.message and "RuntimeError" in exc.message
    assert "ORCA" not in exc.message and "ORCA" not in str(exc)
    bad_return = ContentPolicy.from_config([ContentHookConfig(path=f"{HERE}:returns_bool")])
    with pytest.raises(errors.ServerError, match="returned bool"):
        await bad_return.check_request(REQUEST)


def test_load_hook_paths() -> None:
    assert load_hook(f"{HERE}:no_codenames") is no_codenames
    assert load_hook(f"{HERE}.no_codenames") is no_codenames
    assert load_hook(f"{HERE}:Namespace.allow") is Namespace.allow
    with pytest.raises(errors.ConfigError, match="cannot import"):
        load_hook("aiwire_no_such_module:check")
    with pytest.raises(errors.ConfigError, match="has no"):
        load_hook(f"{HERE}:missing")
    with pytest.raises(errors.ConfigError, match="not callable"):
        load_hook(f"{HERE}:NOT_CALLABLE")
    with pytest.raises(errors.ConfigError, match=r"package\.module:function"):
        load_hook("justaname")


def test_hook_config_validation() -> None:
    assert ContentHookConfig(path="a.b:c").stages == ["request", "response"]
    with pytest.raises(ValueError):
        ContentHookConfig(path="a.b:c", stages=[])
    with pytest.raises(ValueError):
        ContentHookConfig.model_validate({"path": "a.b:c", "stages": ["upload"]})
    with pytest.raises(ValueError):
        ContentHookConfig.model_validate({"path": "a.b:c", "unknown": 1})


async def test_first_rejection_wins_and_later_hooks_do_not_run() -> None:
    ran: list[str] = []

    def first(ctx: HookContext) -> Reject:
        ran.append("first")
        return Reject("no")

    def second(ctx: HookContext) -> None:
        ran.append("second")

    with pytest.raises(errors.BadRequestError, match="no"):
        await ContentPolicy.of(first, second).check_request(REQUEST)
    assert ran == ["first"]
