"""Content-policy hooks: a user's function sees each request before it leaves and each answer
before it returns, and may reject either.

::

    # config
    guardrails:
      hooks:
        - {path: "acme.policy:no_internal_codenames"}             # requests and responses
        - {path: "acme.policy:audit_answer", stages: [response], thread: true}

    # acme/policy.py
    from aiwire.guardrails import HookContext, Reject

    def no_internal_codenames(ctx: HookContext) -> Reject | None:
        text = ctx.text()
        if "PROJECT-ORCA" in text:
            return Reject("Internal project names may not be sent to external models.")
        return None

A hook takes one :class:`HookContext` and returns ``None`` (allow) or a :class:`Reject`, or
raises :class:`ContentPolicyViolation`; it may be sync or ``async``. A rejection becomes a
``BadRequestError`` (400, code ``content_policy``) carrying the hook's message, which the client
sees: write it for them. A sync hook runs on the event loop, so it must be quick; one that
does I/O either is ``async`` or sets ``thread: true`` to run in a worker thread. A hook that
fails (any other exception) fails the request closed with a 500 naming the hook, never its
exception text (which might quote the content).

Streamed answers can only be judged once complete: the gateway runs response hooks on the
accumulated answer at the end of the stream, and a rejection then ends the stream with an
error event instead of its normal end.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from aiwire import errors
from aiwire.types import ChatRequest, ChatResponse, RawChatResponse

Stage = Literal["request", "response"]


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a hook sees. ``response`` is set at the ``response`` stage only."""

    stage: Stage
    request: ChatRequest
    response: ChatResponse | None = None
    #: The virtual key's name (not its secret), when the gateway knows it.
    key_name: str | None = None

    def text(self) -> str:
        """The text being judged: the request's messages, or the answer's choices, joined."""
        if self.response is not None:
            return "\n".join(c.message.text for c in self.response.choices)
        return "\n".join(m.text for m in self.request.messages)


@dataclass(frozen=True, slots=True)
class Reject:
    """A hook's verdict that the content may not pass; ``message`` is shown to the client."""

    message: str


class ContentPolicyViolation(Exception):
    """Raised by a hook to reject (the same as returning :class:`Reject`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_BOTH: list[Stage] = ["request", "response"]

HookResult = Reject | None
HookFn = Callable[[HookContext], HookResult | Awaitable[HookResult]]


class ContentHookConfig(BaseModel):
    """One hook in the config."""

    model_config = ConfigDict(extra="forbid")

    #: ``package.module:function`` (or ``package.module.function``).
    path: str = Field(min_length=3)
    stages: list[Stage] = Field(default_factory=lambda: _BOTH.copy(), min_length=1)
    #: Run a sync hook in a worker thread (for hooks that block on I/O).
    thread: bool = False


def load_hook(path: str) -> HookFn:
    """Import the callable ``path`` names; ConfigError saying what is wrong otherwise."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise errors.ConfigError(f"content hook {path!r}: write it as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.ConfigError(
            f"content hook {path!r}: cannot import {module_name}: {exc}"
        ) from None
    target: object = module
    for name in attr.split("."):
        if not hasattr(target, name):
            raise errors.ConfigError(f"content hook {path!r}: {module_name} has no {attr}")
        target = getattr(target, name)
    if not callable(target):
        raise errors.ConfigError(f"content hook {path!r} is not callable")
    return cast(HookFn, target)


@dataclass(frozen=True, slots=True)
class _Hook:
    name: str
    fn: HookFn
    stages: frozenset[Stage]
    thread: bool


class ContentPolicy:
    """The configured hooks, run in order; the first rejection wins."""

    def __init__(self, hooks: Sequence[_Hook] = ()) -> None:
        self._request = [h for h in hooks if "request" in h.stages]
        self._response = [h for h in hooks if "response" in h.stages]

    @classmethod
    def from_config(cls, configs: Sequence[ContentHookConfig]) -> ContentPolicy:
        return cls(
            [_Hook(c.path, load_hook(c.path), frozenset(c.stages), c.thread) for c in configs]
        )

    @classmethod
    def of(cls, *fns: HookFn, stages: Sequence[Stage] = ("request", "response")) -> ContentPolicy:
        """Hooks given as functions (tests, the SDK)."""
        return cls([_Hook(_name_of(f), f, frozenset(stages), False) for f in fns])

    @property
    def checks_requests(self) -> bool:
        return bool(self._request)

    @property
    def checks_responses(self) -> bool:
        return bool(self._response)

    async def check_request(self, request: ChatRequest, *, key_name: str | None = None) -> None:
        """Run the request hooks; BadRequestError (``content_policy``) on a rejection."""
        if self._request:
            await _run(self._request, HookContext("request", request, key_name=key_name))

    async def check_response(
        self,
        request: ChatRequest,
        response: ChatResponse | RawChatResponse,
        *,
        key_name: str | None = None,
    ) -> None:
        """Run the response hooks on an answer (raw upstream bytes are decoded for them)."""
        if not self._response:
            return
        if isinstance(response, RawChatResponse):
            response = ChatResponse.model_validate_json(response.body)
        await _run(self._response, HookContext("response", request, response, key_name))


async def _run(hooks: list[_Hook], ctx: HookContext) -> None:
    for hook in hooks:
        try:
            if hook.thread and not inspect.iscoroutinefunction(hook.fn):
                result = await asyncio.to_thread(hook.fn, ctx)
            else:
                result = hook.fn(ctx)
            if inspect.isawaitable(result):
                result = await result
        except ContentPolicyViolation as exc:
            raise rejection(exc.message) from None
        except Exception as exc:
            raise errors.ServerError(
                f"The content policy hook {hook.name} failed ({type(exc).__name__}); the "
                "request was not sent.",
                retryable=False,
                code="content_policy_error",
            ) from exc
        if isinstance(result, Reject):
            raise rejection(result.message)
        if result is not None:
            raise errors.ServerError(
                f"The content policy hook {hook.name} returned {type(result).__name__}; a hook "
                "returns None to allow or Reject(message) to refuse.",
                retryable=False,
                code="content_policy_error",
            )


def rejection(message: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        message or "Rejected by the content policy.", code="content_policy"
    )


def _name_of(fn: object) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__name__)}"


__all__ = [
    "ContentHookConfig",
    "ContentPolicy",
    "ContentPolicyViolation",
    "HookContext",
    "HookFn",
    "HookResult",
    "Reject",
    "Stage",
    "load_hook",
    "rejection",
]
