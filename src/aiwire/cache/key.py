"""The cache key: a SHA-256 over a canonical JSON of everything that can change the answer.

What goes in is what the provider adapters send upstream (``model_dump(exclude_none=True,
by_alias=True)`` of the canonical request) plus what shapes the bytes the client gets back:

* the tenant ``scope`` (a key, a team or everyone: entries are never shared across scopes);
* the client ``protocol`` (an OpenAI and an Anthropic client get different bodies);
* ``stream`` and, for a stream, ``stream_options.include_usage`` (whether it ends with a usage
  chunk);
* the model name as the client asked for it, the messages with their parts, tool calls and tool
  results, tools, tool choice, parallel tool calls, response format, sampling parameters,
  max tokens (each spelling on its own: they are sent as given), stop, seed, n, penalties,
  logprobs, and every unknown field the client sent.

Left out: ``user`` (an end-user id for abuse tracking) and the rest of ``stream_options``.

Order is kept where it can change the answer: messages, parts and tools are lists, and the
properties of a JSON schema (tool parameters, ``response_format``) are not sorted, because
structured output follows the schema's property order. Only the top-level unknown fields are
sorted by name, since their order carries no meaning.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import orjson

from aiwire.types import ChatRequest

#: Bumped whenever the canonical form changes, so old entries are simply never found again.
KEY_VERSION = 1

#: Fields of :class:`ChatRequest` that cannot change the answer, or enter the key separately.
IGNORED_FIELDS = frozenset({"user", "stream", "stream_options"})
_EXCLUDE: set[str] = set(IGNORED_FIELDS)

Scope = Literal["key", "team", "global"]


def scope_for(scope: Scope, key_id: str | None, team: str | None) -> str:
    """The tenant part of the key for a caller, as ``cache.scope`` chooses it.

    ``key``: each virtual key sees only its own entries. ``team``: keys of one team share; a key
    without a team keeps to itself (it is never pooled with other team-less keys). ``global``:
    everyone shares. The master key (no key id) is its own tenant under ``key`` and ``team``.
    """
    if scope == "global":
        return ""
    if scope == "team" and team:
        return f"t:{team}"
    return f"k:{key_id}" if key_id else "master"


def canonical(scope: str, protocol: str, request: ChatRequest, stream: bool) -> bytes:
    """The canonical JSON that :func:`cache_key` hashes (exposed for tests and debugging)."""
    data = request.model_dump(exclude_none=True, by_alias=True, exclude=_EXCLUDE)
    extra = request.model_extra
    if extra:
        # Move the unknown fields behind the known ones, sorted by name.
        unknown = {name: data.pop(name) for name in sorted(extra) if name in data}
        data.update(unknown)
    options = request.stream_options
    include_usage = bool(stream and options is not None and options.include_usage)
    head = [KEY_VERSION, scope, protocol, bool(stream), include_usage]
    try:
        return orjson.dumps([head, data])
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which a client may send in an unknown field.
        return json.dumps([head, data], separators=(",", ":"), ensure_ascii=False).encode()


def cache_key(scope: str, protocol: str, request: ChatRequest, stream: bool) -> str:
    """The cache key of ``request`` (64 hex digits).

    ``scope`` isolates tenants (see :func:`scope_for`); ``protocol`` is the client's wire
    protocol (``"openai"``, ``"anthropic"``); ``stream`` whether the client asked for a stream.
    """
    return hashlib.sha256(canonical(scope, protocol, request, stream)).hexdigest()
