"""Canonical request, response and stream types.

The OpenAI chat-completions shape is the lingua franca: every adapter translates its provider's
wire format to and from these models, and they serialise (``model_dump(exclude_none=True)``) to
exactly what an OpenAI client expects. Fields that only aiwire knows (which provider answered,
rate-limit state) are excluded from serialisation.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiwire.ratelimit import RateLimitInfo

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --- messages ---------------------------------------------------------------------------------


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class ImageURL(_Model):
    url: str  # https://… or data:<mime>;base64,<data>
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Model):
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Model):
    name: str
    arguments: str  # a JSON-encoded object, as OpenAI sends it


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    #: Provider data that must travel back with the call, e.g. Gemini's thought signature as
    #: ``{"google": {"thought_signature": ...}}`` (the convention of Gemini's OpenAI endpoint).
    extra_content: dict[str, Any] | None = None


class Message(_Model):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @property
    def text(self) -> str:
        """All text of this message, parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def parts(self) -> list[TextPart | ImagePart]:
        """The content as a list of parts (a plain string becomes one text part)."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(text=self.content)]
        return list(self.content)


# --- tools and output format ------------------------------------------------------------------


class FunctionDefinition(_Model):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolChoiceFunction(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"] = "function"
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchemaSpec(_Model):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None


class StreamOptions(_Model):
    include_usage: bool | None = None


# --- requests ---------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """A chat request in OpenAI's shape.

    Unknown fields are kept (``model_extra``) rather than dropped, so an adapter can pass them
    through (OpenAI-compatible servers) or refuse them by name (other providers).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str
    messages: list[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @property
    def output_limit(self) -> int | None:
        """The caller's cap on output tokens, whichever spelling they used."""
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# --- responses --------------------------------------------------------------------------------


class PromptTokensDetails(_Model):
    cached_tokens: int = 0


class Usage(_Model):
    """Token usage. ``prompt_tokens`` includes cached input tokens (OpenAI's convention)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Usage:
        return cls(
            prompt_tokens=input_tokens,
            completion_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_input_tokens),
        )

    @property
    def input_tokens(self) -> int:
        return self.prompt_tokens

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens

    @property
    def cached_input_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0


class Choice(_Model):
    index: int = 0
    message: Message
    finish_reason: FinishReason | None = None
    logprobs: Any = None


class _Ids:
    """Unique ids without a syscall each: 48 random bits per process (renewed after a fork) and
    a counter. Ids name things; they are not secrets and need not be unguessable."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}{self.prefix}{next(self.counter):012x}"


_ids = _Ids()


def new_id(prefix: str = "chatcmpl-") -> str:
    """A unique id such as ``chatcmpl-5f0c9a3e21b7000000000001`` (24 hex digits after prefix)."""
    return _ids(prefix)


class ChatResponse(_Model):
    id: str = Field(default_factory=new_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    # Known to aiwire only; never serialised to clients.
    provider: str | None = Field(default=None, exclude=True)
    deployment: str | None = Field(default=None, exclude=True)
    request_id: str | None = Field(default=None, exclude=True)
    ratelimit: RateLimitInfo | None = Field(default=None, exclude=True)

    @property
    def message(self) -> Message:
        return self.choices[0].message

    @property
    def text(self) -> str:
        return self.message.text if self.choices else ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        return list(self.message.tool_calls or []) if self.choices else []

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.choices[0].finish_reason if self.choices else None


# --- streaming --------------------------------------------------------------------------------


class FunctionCallDelta(_Model):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Model):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None
    extra_content: dict[str, Any] | None = None


class Delta(_Model):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(_Model):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: Any = None


class ChatChunk(_Model):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None

    provider: str | None = Field(default=None, exclude=True)
    deployment: str | None = Field(default=None, exclude=True)
    ratelimit: RateLimitInfo | None = Field(default=None, exclude=True)

    @property
    def text(self) -> str:
        return "".join(c.delta.content or "" for c in self.choices)


class StreamAccumulator:
    """Folds a sequence of chunks into the equivalent non-streamed response.

    Tool-call fragments are keyed by their ``index`` (never by arrival order), as OpenAI specifies.
    """

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._created = 0
        self._text: dict[int, list[str]] = {}
        self._refusal: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, FinishReason | None] = {}
        self.usage: Usage | None = None
        self.provider: str | None = None
        self.deployment: str | None = None
        self.chunks = 0

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        self._id = self._id or chunk.id
        self._model = self._model or chunk.model
        self._created = self._created or chunk.created
        self.provider = self.provider or chunk.provider
        self.deployment = self.deployment or chunk.deployment
        if chunk.usage is not None:
            self.usage = chunk.usage
        for c in chunk.choices:
            self._finish.setdefault(c.index, None)
            if c.delta.content:
                self._text.setdefault(c.index, []).append(c.delta.content)
            if c.delta.refusal:
                self._refusal.setdefault(c.index, []).append(c.delta.refusal)
            for tc in c.delta.tool_calls or []:
                slot = self._calls.setdefault(c.index, {}).setdefault(
                    tc.index, {"id": None, "name": "", "arguments": [], "extra": None}
                )
                if tc.id:
                    slot["id"] = tc.id
                if tc.extra_content:
                    slot["extra"] = tc.extra_content
                if tc.function is not None:
                    if tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function.arguments:
                        slot["arguments"].append(tc.function.arguments)
            if c.finish_reason is not None:
                self._finish[c.index] = c.finish_reason

    def response(self) -> ChatResponse:
        choices = []
        for index in sorted(self._finish):
            calls = [
                ToolCall(
                    id=slot["id"] or f"call_{index}_{i}",
                    function=FunctionCall(name=slot["name"], arguments="".join(slot["arguments"])),
                    extra_content=slot["extra"],
                )
                for i, slot in sorted(self._calls.get(index, {}).items())
            ]
            text = "".join(self._text.get(index, []))
            refusal = "".join(self._refusal.get(index, [])) or None
            message = Message(
                role="assistant",
                content=text if text or not calls else None,
                tool_calls=calls or None,
                refusal=refusal,
            )
            choices.append(Choice(index=index, message=message, finish_reason=self._finish[index]))
        return ChatResponse(
            id=self._id or new_id(),
            created=self._created or int(time.time()),
            model=self._model,
            choices=choices,
            usage=self.usage,
            provider=self.provider,
            deployment=self.deployment,
        )


# --- OpenAI pass-through ----------------------------------------------------------------------


@dataclass(slots=True)
class RawChatResponse:
    """An OpenAI-protocol answer kept as the upstream's own bytes.

    A gateway serving OpenAI's protocol from an OpenAI-compatible upstream sends these bytes on
    unchanged (:meth:`aiwire.router.Router.chat_passthrough`) instead of decoding them into a
    :class:`ChatResponse` and encoding that again. The adapter has checked the body is a chat
    completion and read its usage (what gets billed).
    """

    body: bytes
    usage: Usage | None
    model: str | None = None
    provider: str | None = None
    deployment: str | None = None
    request_id: str | None = None
    ratelimit: RateLimitInfo | None = None


@dataclass(slots=True)
class RawChunk:
    """One ``chat.completion.chunk`` event of an OpenAI-compatible upstream, as its JSON bytes
    (the ``data:`` payload), with what aiwire needs from it already read: its usage, and whether
    it is the usage-only closing chunk (``choices: []``)."""

    data: bytes
    usage: Usage | None = None
    usage_only: bool = False
    provider: str | None = None
    deployment: str | None = None
    ratelimit: RateLimitInfo | None = None


# --- embeddings -------------------------------------------------------------------------------


class Embedding(_Model):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class EmbeddingUsage(_Model):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(_Model):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)

    provider: str | None = Field(default=None, exclude=True)
    deployment: str | None = Field(default=None, exclude=True)
    ratelimit: RateLimitInfo | None = Field(default=None, exclude=True)

    @property
    def vectors(self) -> list[list[float]]:
        return [e.embedding for e in sorted(self.data, key=lambda e: e.index)]


def as_messages(messages: str | list[Message] | list[dict[str, Any]]) -> list[Message]:
    """Accept a bare prompt, dicts in OpenAI's shape, or ``Message`` objects."""
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
