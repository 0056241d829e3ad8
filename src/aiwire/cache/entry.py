"""A cached answer: exactly the bytes a client got, plus what the request log needs.

A hit must return the same body as the original, so an entry keeps the response body as sent
(the upstream's own bytes when the gateway passed them through, otherwise the rendered body)
rather than a parsed response to be rendered again. A streamed answer is kept as its SSE events
in order: one byte string (their concatenation, which is the whole response body) plus the end
offset of each event, so a replay sends that body as it is and nothing is joined on a hit.

Serialised form (:func:`encode` / :func:`decode`), little-endian, no JSON on either path::

    b"AWC" version:u8 | flags:u8 status:u16 prompt:u64 completion:u64 cached:u64
    created_at:f64 ttl:f64 ctype_len:u16 events:u32 | content type | event ends (u32 each) | body
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from itertools import pairwise

from aiwire.types import Usage

MAGIC = b"AWC\x01"
_HEAD = struct.Struct("<4sBHQQQddHI")
_STREAMED = 1

JSON = "application/json"
EVENT_STREAM = "text/event-stream"

#: The largest entry stored unless configured otherwise (``cache.max_entry_bytes``).
DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024


class CorruptEntry(ValueError):
    """Bytes that are not an entry this version wrote (a truncated or foreign value)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached answer.

    ``body`` is the whole response body. ``event_ends`` is ``None`` for a non-streamed answer;
    for a streamed one it holds the end offset of each SSE event in ``body``.
    """

    body: bytes
    status: int = 200
    content_type: str = JSON
    event_ends: tuple[int, ...] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    #: Wall-clock seconds (``time.time()``) when the original answer was made.
    created_at: float = 0.0
    #: Seconds the entry was meant to live when it was made.
    ttl: float = 0.0

    @classmethod
    def whole(
        cls,
        body: bytes,
        *,
        usage: Usage | None,
        ttl: float,
        status: int = 200,
        content_type: str = JSON,
        created_at: float | None = None,
    ) -> Entry:
        """A non-streamed answer: its status, content type and body bytes."""
        prompt, completion, cached = _counts(usage)
        return cls(
            body=body,
            status=status,
            content_type=content_type,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            created_at=time.time() if created_at is None else created_at,
            ttl=ttl,
        )

    @classmethod
    def stream(
        cls,
        events: list[bytes] | tuple[bytes, ...],
        *,
        usage: Usage | None,
        ttl: float,
        created_at: float | None = None,
    ) -> Entry:
        """A streamed answer: its SSE events (each as sent, ``data: ...\\n\\n``) in order."""
        ends: list[int] = []
        end = 0
        for event in events:
            end += len(event)
            ends.append(end)
        prompt, completion, cached = _counts(usage)
        return cls(
            body=b"".join(events),
            content_type=EVENT_STREAM,
            event_ends=tuple(ends),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            created_at=time.time() if created_at is None else created_at,
            ttl=ttl,
        )

    @property
    def streamed(self) -> bool:
        return self.event_ends is not None

    @property
    def events(self) -> list[bytes]:
        """The SSE events of a streamed answer in order (empty for a non-streamed one)."""
        if self.event_ends is None:
            return []
        return [self.body[a:b] for a, b in pairwise((0, *self.event_ends))]

    @property
    def usage(self) -> Usage:
        """The original answer's usage, for the hit's log row (which costs nothing)."""
        return Usage.of(self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    @property
    def size(self) -> int:
        """Bytes this entry takes serialised: what size limits count."""
        ends = len(self.event_ends) if self.event_ends is not None else 0
        return _HEAD.size + len(self.content_type) + 4 * ends + len(self.body)


def _counts(usage: Usage | None) -> tuple[int, int, int]:
    if usage is None:
        return 0, 0, 0
    return usage.prompt_tokens, usage.completion_tokens, usage.cached_input_tokens


def encode(entry: Entry) -> bytes:
    """The entry as bytes for a shared backend (SQL row, Redis value)."""
    ends = entry.event_ends
    ctype = entry.content_type.encode("latin-1")
    head = _HEAD.pack(
        MAGIC,
        _STREAMED if ends is not None else 0,
        entry.status,
        entry.prompt_tokens,
        entry.completion_tokens,
        entry.cached_tokens,
        entry.created_at,
        entry.ttl,
        len(ctype),
        len(ends) if ends is not None else 0,
    )
    offsets = struct.pack(f"<{len(ends)}I", *ends) if ends else b""
    return b"".join((head, ctype, offsets, entry.body))


def decode(blob: bytes) -> Entry:
    """The entry :func:`encode` wrote; :class:`CorruptEntry` for anything else."""
    if len(blob) < _HEAD.size:
        raise CorruptEntry(f"{len(blob)} bytes is shorter than an entry header")
    (
        magic,
        flags,
        status,
        prompt,
        completion,
        cached,
        created_at,
        ttl,
        ctype_len,
        count,
    ) = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptEntry("not a cache entry of this aiwire version")
    pos = _HEAD.size
    ctype = blob[pos : pos + ctype_len].decode("latin-1")
    pos += ctype_len
    ends: tuple[int, ...] | None = None
    if flags & _STREAMED:
        if pos + 4 * count > len(blob):
            raise CorruptEntry("truncated event table")
        ends = struct.unpack_from(f"<{count}I", blob, pos)
        pos += 4 * count
    body = blob[pos:]
    if ends is not None and (ends[-1] if ends else 0) != len(body):
        raise CorruptEntry("event table does not match the body")
    return Entry(
        body=body,
        status=status,
        content_type=ctype,
        event_ends=ends,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        created_at=created_at,
        ttl=ttl,
    )


class StreamRecorder:
    """Collects the SSE events of a stream as the gateway sends them, up to ``max_bytes``.

    A stream that grows past the limit stops being recorded at once (its events are dropped),
    so a long answer costs no memory beyond the limit; :meth:`entry` then gives ``None``.
    """

    __slots__ = ("_events", "_size", "max_bytes", "overflowed")

    def __init__(self, max_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._events: list[bytes] = []
        self._size = _HEAD.size + len(EVENT_STREAM)
        self.overflowed = False

    def add(self, event: bytes) -> None:
        if self.overflowed or not event:
            return
        self._size += len(event) + 4
        if self._size > self.max_bytes:
            self.overflowed = True
            self._events = []
            return
        self._events.append(event)

    def entry(self, *, usage: Usage | None, ttl: float) -> Entry | None:
        """The recorded stream as an entry, or ``None`` if it outgrew ``max_bytes`` or is
        empty. Call it only for a stream that ended normally (not with an error event)."""
        if self.overflowed or not self._events:
            return None
        return Entry.stream(self._events, usage=usage, ttl=ttl)
