"""Putting masked values back into a model's answer, so the client sees its own data.

A :class:`Vault` holds one request's placeholders (``<EMAIL_1>`` → the address). It restores a
whole answer (canonical :class:`~aiwire.types.ChatResponse` or an OpenAI-compatible upstream's
own bytes), and hands out a :class:`StreamRestorer` for streams, where a placeholder can arrive
split across chunks (``"... <EMA"``, ``"IL_1> ..."``): the restorer holds back only a tail that
is a strict prefix of a known placeholder, and only until the next fragment (or the choice's
finish) decides it.

Tool-call arguments are JSON text, so a value restored into them is JSON-escaped. In raw
OpenAI bytes, a value whose JSON escaping changes nothing (every built-in kind) is swapped in
place, for ``<`` and for ``\\u003c`` (how Go-based servers escape it); any other value makes the
body go through a parse and re-encode.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar, overload

import orjson

from aiwire.types import (
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    Message,
    RawChatResponse,
    RawChunk,
    TextPart,
    ToolCallDelta,
)

#: A placeholder as aiwire writes it: ``<KIND_N>``.
TOKEN = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")
_RAW_TOKEN = re.compile(rb"(?:<|\\u003[cC])([A-Z][A-Z0-9_]*_[0-9]+)(?:>|\\u003[eE])")

_Result = TypeVar("_Result", ChatResponse, RawChatResponse, ChatResponse | RawChatResponse)


def _json_escaped(value: str) -> str:
    """``value`` as it appears inside a JSON string literal (without the quotes)."""
    return orjson.dumps(value).decode()[1:-1]


class Vault:
    """One request's placeholder → value map. Its ``repr`` shows a count, never a value."""

    __slots__ = ("_escaped", "_plain", "_prefixes", "_raw", "_values")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)
        self._escaped = {k: _json_escaped(v) for k, v in self._values.items()}
        #: Every value survives JSON as itself: raw bytes can be patched without parsing.
        self._plain = all(self._escaped[k] == v for k, v in self._values.items())
        self._raw = {k[1:-1].encode(): v.encode() for k, v in self._values.items()}
        self._prefixes = frozenset(k[:i] for k in self._values for i in range(1, len(k)))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Vault({len(self._values)} placeholders)"

    def is_partial(self, tail: str) -> bool:
        """Whether ``tail`` is a strict prefix of one of this vault's placeholders."""
        return tail in self._prefixes

    # --- text ---------------------------------------------------------------------------------

    def restore_text(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its value; unknown ones stay."""
        if "<" not in text:
            return text
        values = self._values
        return TOKEN.sub(lambda m: values.get(m.group(), m.group()), text)

    def restore_json_text(self, text: str) -> str:
        """Like :meth:`restore_text` for JSON text (tool-call arguments): values JSON-escaped."""
        if "<" not in text:
            return text
        escaped = self._escaped
        return TOKEN.sub(lambda m: escaped.get(m.group(), m.group()), text)

    def restore_message(self, message: Message) -> Message:
        """A copy of ``message`` with its text, refusal and tool-call arguments restored."""
        update: dict[str, Any] = {}
        content = message.content
        if isinstance(content, str):
            if (restored := self.restore_text(content)) is not content:
                update["content"] = restored
        elif content:
            parts = [
                p.model_copy(update={"text": self.restore_text(p.text)})
                if isinstance(p, TextPart) and "<" in p.text
                else p
                for p in content
            ]
            update["content"] = parts
        if message.refusal and "<" in message.refusal:
            update["refusal"] = self.restore_text(message.refusal)
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                args = call.function.arguments
                if "<" in args:
                    fn = call.function.model_copy(
                        update={"arguments": self.restore_json_text(args)}
                    )
                    call = call.model_copy(update={"function": fn})
                calls.append(call)
            update["tool_calls"] = calls
        return message.model_copy(update=update) if update else message

    def restore_response(self, response: ChatResponse) -> ChatResponse:
        """A copy of ``response`` with every choice restored (the original is left as it was:
        it may sit in a cache, masked, for the next request)."""
        choices = [
            c.model_copy(update={"message": self.restore_message(c.message)})
            for c in response.choices
        ]
        return response.model_copy(update={"choices": choices})

    # --- raw OpenAI bytes ---------------------------------------------------------------------

    def restore_raw(self, body: bytes) -> bytes:
        """An OpenAI ``chat.completion`` body (bytes) with its placeholders restored."""
        if b"<" not in body and b"\\u003" not in body:
            return body
        if self._plain:
            raw = self._raw
            return _RAW_TOKEN.sub(lambda m: raw.get(m.group(1), m.group()), body)
        data = orjson.loads(body)
        for choice in data.get("choices") or ():
            message = choice.get("message")
            if isinstance(message, dict):
                self._restore_dict(message)
        return orjson.dumps(data)

    def _restore_dict(self, obj: dict[str, Any]) -> None:
        """Restore an OpenAI message or delta dict in place."""
        for field in ("content", "refusal"):
            if isinstance(obj.get(field), str):
                obj[field] = self.restore_text(obj[field])
        for call in obj.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                fn["arguments"] = self.restore_json_text(fn["arguments"])

    def restore(self, response: _Result) -> _Result:
        """Whichever answer the router returned, restored, of the same type."""
        if isinstance(response, RawChatResponse):
            return dataclasses.replace(response, body=self.restore_raw(response.body))
        return self.restore_response(response)

    def stream(self) -> StreamRestorer:
        """A restorer for one streamed answer (canonical or raw chunks)."""
        return StreamRestorer(self)


# A stream's text channels: (choice index, -1) content, (choice index, -2) refusal,
# (choice index, tool-call index) arguments.
_CONTENT, _REFUSAL = -1, -2


class StreamRestorer:
    """Restores placeholders in one stream, chunk by chunk, in order.

    Text that might be the start of a placeholder is held back (at most the length of the
    longest placeholder) and sent with the next fragment of the same choice, or with the
    chunk that finishes that choice. A chunk without ``<`` while nothing is held passes through
    as the same object, untouched.
    """

    __slots__ = ("_pending", "_vault")

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._pending: dict[tuple[int, int], str] = {}

    @overload
    def __call__(self, chunk: ChatChunk) -> ChatChunk: ...
    @overload
    def __call__(self, chunk: RawChunk) -> RawChunk: ...
    def __call__(self, chunk: ChatChunk | RawChunk) -> ChatChunk | RawChunk:
        """Either kind of chunk, restored (the same object when nothing needed restoring)."""
        if isinstance(chunk, RawChunk):
            return self.raw(chunk)
        return self.chunk(chunk)

    def leftover(self) -> str:
        """Text still held back (a stream that ended without a finish reason); restored."""
        text = "".join(v for (_, ch), v in sorted(self._pending.items()) if ch < 0)
        self._pending.clear()
        return self._vault.restore_text(text)

    def _feed(self, key: tuple[int, int], text: str, *, finish: bool, json: bool) -> str:
        held = self._pending.pop(key, "")
        if held:
            text = held + text
        elif "<" not in text:
            return text
        if not finish:
            cut = text.rfind("<")
            if cut != -1 and self._vault.is_partial(text[cut:]):
                self._pending[key] = text[cut:]
                text = text[:cut]
        vault = self._vault
        return vault.restore_json_text(text) if json else vault.restore_text(text)

    def _busy(self, index: int) -> bool:
        return any(k[0] == index for k in self._pending)

    # --- canonical chunks ---------------------------------------------------------------------

    def chunk(self, chunk: ChatChunk) -> ChatChunk:
        """``chunk`` restored (a new chunk when anything changed)."""
        choices = chunk.choices
        if not self._pending and not any(_has_bracket(c.delta) for c in choices):
            return chunk
        out = [self._choice(c) for c in choices]
        if all(a is b for a, b in zip(out, choices, strict=True)):
            return chunk
        return chunk.model_copy(update={"choices": out})

    def _choice(self, c: ChunkChoice) -> ChunkChoice:
        d = c.delta
        if not _has_bracket(d) and not self._busy(c.index):
            return c
        finish = c.finish_reason is not None
        update: dict[str, Any] = {}
        for channel, field in ((_CONTENT, "content"), (_REFUSAL, "refusal")):
            text = getattr(d, field)
            if text is not None or (c.index, channel) in self._pending:
                update[field] = self._feed(
                    (c.index, channel), text or "", finish=finish, json=False
                )
        calls = [self._tool_call(c.index, tc, finish) for tc in d.tool_calls or ()]
        if finish:  # arguments still held for this choice go out with its last chunk
            for key in sorted(k for k in self._pending if k[0] == c.index and k[1] >= 0):
                args = self._vault.restore_json_text(self._pending.pop(key))
                calls.append(
                    ToolCallDelta(index=key[1], function=FunctionCallDelta(arguments=args))
                )
        if calls:
            update["tool_calls"] = calls
        delta = d.model_copy(update=update) if update else d
        return c.model_copy(update={"delta": delta})

    def _tool_call(self, index: int, tc: ToolCallDelta, finish: bool) -> ToolCallDelta:
        fn = tc.function
        if fn is None or fn.arguments is None:
            return tc
        args = self._feed((index, tc.index), fn.arguments, finish=finish, json=True)
        if args is fn.arguments:
            return tc
        return tc.model_copy(update={"function": fn.model_copy(update={"arguments": args})})

    # --- raw OpenAI chunks --------------------------------------------------------------------

    def raw(self, chunk: RawChunk) -> RawChunk:
        """An OpenAI-compatible upstream's chunk (JSON bytes) restored."""
        data = chunk.data
        if not self._pending and b"<" not in data and b"\\u003" not in data:
            return chunk
        obj = orjson.loads(data)
        changed = False
        for c in obj.get("choices") or ():
            if isinstance(c, dict) and self._raw_choice(c):
                changed = True
        if not changed:
            return chunk
        return dataclasses.replace(chunk, data=orjson.dumps(obj))

    def _raw_choice(self, c: dict[str, Any]) -> bool:
        index = c.get("index", 0)
        delta = c.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            return False
        finish = c.get("finish_reason") is not None
        changed = False
        for channel, field in ((_CONTENT, "content"), (_REFUSAL, "refusal")):
            text = delta.get(field)
            if isinstance(text, str) or (index, channel) in self._pending:
                new = self._feed((index, channel), text or "", finish=finish, json=False)
                if new != text:
                    delta[field] = new
                    changed = True
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                key = (index, int(tc.get("index", 0)))
                new = self._feed(key, fn["arguments"], finish=finish, json=True)
                if new != fn["arguments"]:
                    fn["arguments"] = new
                    changed = True
        if finish:
            for key in sorted(k for k in self._pending if k[0] == index and k[1] >= 0):
                args = self._vault.restore_json_text(self._pending.pop(key))
                calls = delta["tool_calls"] = list(delta.get("tool_calls") or ())
                calls.append({"index": key[1], "function": {"arguments": args}})
                changed = True
        return changed


def _has_bracket(d: Delta) -> bool:
    if (d.content and "<" in d.content) or (d.refusal and "<" in d.refusal):
        return True
    return any(
        tc.function is not None and tc.function.arguments and "<" in tc.function.arguments
        for tc in d.tool_calls or ()
    )


__all__ = ["TOKEN", "StreamRestorer", "Vault"]
