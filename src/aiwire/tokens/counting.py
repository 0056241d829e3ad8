"""Counting a chat request's input tokens the way its provider bills them.

For OpenAI models the count follows OpenAI's chat rendering, as published in its cookbook ("How to
count tokens with tiktoken") and checked there against the API's ``usage.prompt_tokens``:

- each message costs 3 tokens plus its role and content (plus 1 and the name's tokens when it has
  a ``name``); every reply is primed with 3 more — **exact** for text messages;
- images: OpenAI's size formula (:mod:`aiwire.tokens.images`) — exact for the GPT-4o/4.1 tile rule
  when the size is known, estimated otherwise;
- tool definitions: the cookbook's per-function and per-property constants, which reproduce its
  examples but not every schema (nested objects are counted as their JSON) — **estimated**;
- assistant ``tool_calls``, ``tool`` results, content split into several text parts and
  ``response_format`` schemas: their text plus a small overhead — **estimated**.

A count is ``exact`` only when every part of the request was counted exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiwire.tokens.encodings import get_encoding
from aiwire.tokens.families import Family, ToolFraming, family_for
from aiwire.tokens.images import ImageRule, image_size
from aiwire.types import ChatRequest, ImagePart, Message, Tool

_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
#: Bytes per token assumed when no tokenizer data can be loaded (≥ the real count for English,
#: close for CJK text).
_BYTES_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count, and whether it reproduces the provider's billing exactly."""

    tokens: int
    exact: bool
    #: How it was counted, e.g. ``o200k_base`` or ``estimate: o200k_base x1.2 (anthropic)``.
    method: str = ""


Counter = Callable[[str], int]


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _bytes_estimate(text: str) -> int:
    return -(-_utf8_len(text) // _BYTES_PER_TOKEN)


def _counter(family: Family) -> tuple[Counter, bool, str, float]:
    """The text counter for ``family``, whether it is exact, how to describe it, and the factor
    that turns its counts into the family's estimate."""
    enc = get_encoding(family.encoding)
    if enc is None:
        return _bytes_estimate, False, "estimate: UTF-8 bytes / 3 (tokenizer data unavailable)", 1
    encode = enc.encode_ordinary

    def count(text: str) -> int:
        return len(encode(text)) if text else 0

    if family.exact:
        return count, True, family.encoding, 1
    method = f"estimate: {family.encoding} x{family.factor:g} ({family.provider})"
    return count, False, method, family.factor


def count_text(text: str, model: str) -> TokenCount:
    """Tokens of plain ``text`` (no chat framing) for ``model``, e.g. an embedding input."""
    count, exact, method, factor = _counter(family_for(model))
    tokens = count(text)
    if factor != 1:
        tokens = min(math.ceil(tokens * factor), _utf8_len(text))
    return TokenCount(tokens, exact, method)


def count_chat(request: ChatRequest, model_family: str | None = None) -> TokenCount:
    """Input tokens of ``request`` for ``model_family`` (an upstream model id such as
    ``gpt-4o-mini-2024-07-18`` or ``claude-sonnet-4-5``; default: ``request.model``)."""
    model = model_family or request.model
    family = family_for(model)
    count, exact, method, factor = _counter(family)
    text, framing, images, all_exact = _messages(request.messages, count, family.image)
    exact = exact and all_exact
    if request.tools:
        exact = False
        if family.provider == "openai":
            framing += _openai_tools(request.tools, count, family.tools)
        else:
            text += count(_json([t.model_dump(exclude_none=True) for t in request.tools]))
            framing += family.tools_overhead
    rf = request.response_format
    if rf is not None and rf.json_schema is not None:
        exact = False
        text += count(_json(rf.json_schema.model_dump(by_alias=True, exclude_none=True)))
        framing += 8
    if factor == 1:
        return TokenCount(text + framing + images, exact, method)
    # An estimate: never above what the request could possibly hold.
    estimate = math.ceil(text * factor) + framing + images
    return TokenCount(min(estimate, upper_bound_tokens(request, model)), False, method)


def _messages(
    messages: list[Message], count: Counter, rule: ImageRule
) -> tuple[int, int, int, bool]:
    """(text tokens, framing tokens, image tokens, all exact) over the messages."""
    text = framing = images = 0
    exact = True
    for m in messages:
        framing += _PER_MESSAGE
        text += count(m.role)
        if m.name:
            text += count(m.name)
            framing += _PER_NAME
        content = m.content
        if isinstance(content, str):
            text += count(content)
        elif content:
            texts = 0
            for part in content:
                if isinstance(part, ImagePart):
                    size = image_size(part.image_url.url)
                    images += rule.tokens(size, part.image_url.detail)
                    exact = exact and rule.exact and (size is not None or _low(part, rule))
                else:
                    texts += 1
                    text += count(part.text)
            exact = exact and texts <= 1
        if m.refusal:
            text += count(m.refusal)
            exact = False
        if m.tool_calls:
            exact = False
            for call in m.tool_calls:
                text += count(call.function.name) + count(call.function.arguments)
                framing += 3
        if m.role == "tool":
            exact = False
    return text, framing + _REPLY_PRIMING, images, exact


def _low(part: ImagePart, rule: ImageRule) -> bool:
    return rule.scheme == "tile" and part.image_url.detail == "low"


def _openai_tools(tools: list[Tool], count: Counter, c: ToolFraming) -> int:
    """OpenAI's tool-definition tokens, by the cookbook's constants (an approximation)."""
    total = c.func_end
    for tool in tools:
        fn = tool.function
        total += c.func_init + count(f"{fn.name}:{(fn.description or '').removesuffix('.')}")
        props = (fn.parameters or {}).get("properties") or {}
        if not isinstance(props, dict) or not props:
            continue
        total += c.prop_init
        for key, spec in props.items():
            total += c.prop_key
            if not isinstance(spec, dict):
                total += count(f"{key}:{spec}")
                continue
            enum = spec.get("enum")
            if isinstance(enum, list):
                total += c.enum_init + sum(c.enum_item + count(str(item)) for item in enum)
            ptype = spec.get("type", "")
            if isinstance(ptype, list):
                ptype = ",".join(map(str, ptype))
            desc = str(spec.get("description", "")).removesuffix(".")
            total += count(f"{key}:{ptype}:{desc}")
            rest = {k: v for k, v in spec.items() if k not in ("type", "description", "enum")}
            if rest:
                total += count(_json(rest))
    return total


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- the cheap bound ----------------------------------------------------------------------------

#: The most one image can cost under any rule (GPT-4o mini: 2833 + 8 x 5667).
_ANY_IMAGE_MAX = 2833 + 8 * 5667


def upper_bound_tokens(request: ChatRequest, model_family: str | None = None) -> int:
    """A cheap bound that the request's input tokens never exceed: UTF-8 bytes of all its text
    (a byte-level BPE token covers at least one byte) plus generous framing, and each image at its
    rule's maximum. No tokenizer runs; use it to skip exact counting far from any limit.

    Without ``model_family`` images count at the largest cost of any model (48 169 tokens, GPT-4o
    mini's), so pass the upstream model when the request carries images.
    """
    image_max = family_for(model_family).image.max_tokens if model_family else _ANY_IMAGE_MAX
    total = _REPLY_PRIMING
    for m in request.messages:
        total += 8 + len(m.role)
        if m.name:
            total += _utf8_len(m.name)
        content = m.content
        if isinstance(content, str):
            total += _utf8_len(content)
        elif content:
            for part in content:
                if isinstance(part, ImagePart):
                    total += image_max
                else:
                    total += _utf8_len(part.text)
        if m.refusal:
            total += _utf8_len(m.refusal)
        for call in m.tool_calls or ():
            total += 8 + _utf8_len(call.function.name) + _utf8_len(call.function.arguments)
        if m.tool_call_id:
            total += _utf8_len(m.tool_call_id)
    if request.tools:
        total += 512 + sum(_utf8_len(t.model_dump_json(exclude_none=True)) for t in request.tools)
    rf = request.response_format
    if rf is not None and rf.json_schema is not None:
        total += 16 + _utf8_len(rf.json_schema.model_dump_json(by_alias=True, exclude_none=True))
    return total
