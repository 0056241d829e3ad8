"""Entries: what the client got, byte for byte, through serialisation and replay."""

from __future__ import annotations

from typing import Any

import pytest

from aiwire.cache import (
    CorruptEntry,
    Entry,
    StreamRecorder,
    decode,
    encode,
    replay,
    replay_body,
    replay_events,
)
from aiwire.types import Usage

BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion",'
    b'"choices":[{"message":{"content":"4\xc2\xb0C"}}]}'
)
EVENTS = [
    b'data: {"id":"c1","choices":[{"delta":{"role":"assistant"}}]}\n\n',
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"id":"c1","choices":[{"delta":{"content":"lo"}}]}\n\n',
    b"data: [DONE]\n\n",
]
USAGE = Usage.of(120, 30, 100)


def test_a_whole_answer_round_trips_exactly() -> None:
    entry = Entry.whole(BODY, usage=USAGE, ttl=60, created_at=1_800_000_000.5)
    back = decode(encode(entry))
    assert back == entry
    assert back.body == BODY and back.status == 200 and back.content_type == "application/json"
    assert not back.streamed and back.events == []
    assert (back.prompt_tokens, back.completion_tokens, back.cached_tokens) == (120, 30, 100)
    assert back.usage == USAGE
    assert back.created_at == 1_800_000_000.5 and back.ttl == 60


def test_a_stream_round_trips_event_by_event() -> None:
    entry = Entry.stream(EVENTS, usage=USAGE, ttl=30)
    back = decode(encode(entry))
    assert back == entry
    assert back.streamed and back.events == EVENTS
    assert back.body == b"".join(EVENTS)
    assert back.content_type == "text/event-stream"
    assert back.usage.total_tokens == 150


def test_other_statuses_content_types_and_no_usage_round_trip() -> None:
    entry = Entry.whole(b"", usage=None, ttl=1, status=203, content_type="text/plain")
    back = decode(encode(entry))
    assert back == entry and back.usage == Usage.of(0, 0, 0)
    empty_stream = Entry.stream([], usage=None, ttl=1)
    assert decode(encode(empty_stream)).events == []


def test_the_serialised_form_is_compact() -> None:
    entry = Entry.stream(EVENTS, usage=USAGE, ttl=30)
    blob = encode(entry)
    assert len(blob) == entry.size
    assert len(blob) - len(entry.body) < 100  # header + content type + 4 bytes per event


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"AWC",
        b"XYZ\x01" + encode(Entry.whole(BODY, usage=None, ttl=1))[4:],  # not ours
        encode(Entry.stream(EVENTS, usage=None, ttl=1))[:-3],  # truncated body
        encode(Entry.stream(EVENTS, usage=None, ttl=1))[:60],  # truncated event table
    ],
)
def test_anything_else_is_refused_as_corrupt(blob: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(blob)


def test_a_recorder_keeps_the_events_it_was_given() -> None:
    recorder = StreamRecorder()
    for event in [EVENTS[0], b"", *EVENTS[1:]]:  # empty pieces are not events
        recorder.add(event)
    entry = recorder.entry(usage=USAGE, ttl=9)
    assert entry is not None and entry.events == EVENTS and entry.ttl == 9
    assert StreamRecorder().entry(usage=None, ttl=9) is None  # nothing was sent


def test_a_recorder_stops_at_its_limit_and_keeps_nothing() -> None:
    limit = Entry.stream(EVENTS, usage=None, ttl=1).size
    fits = StreamRecorder(max_bytes=limit)
    too_small = StreamRecorder(max_bytes=limit - 1)
    for event in EVENTS:
        fits.add(event)
        too_small.add(event)
    assert fits.entry(usage=None, ttl=1) is not None
    assert too_small.overflowed
    assert too_small.entry(usage=None, ttl=1) is None
    too_small.add(b"data: more\n\n")
    assert too_small.entry(usage=None, ttl=1) is None


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def test_replaying_a_whole_answer_sends_its_status_type_and_bytes() -> None:
    send = Sent()
    await replay(send, Entry.whole(BODY, usage=USAGE, ttl=1), headers=[("x-request-id", "r1")])
    start = send.messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert send.headers[b"content-type"] == b"application/json"
    assert send.headers[b"content-length"] == str(len(BODY)).encode()
    assert send.headers[b"x-request-id"] == b"r1"
    assert send.headers[b"x-aiwire-cache"] == b"hit"
    assert send.body == BODY
    assert send.messages[-1].get("more_body", False) is False


async def test_replaying_a_stream_sends_every_event_as_an_sse_response() -> None:
    send = Sent()
    entry = decode(encode(Entry.stream(EVENTS, usage=USAGE, ttl=1)))
    await replay(send, entry)
    assert send.messages[0]["status"] == 200
    assert send.headers[b"content-type"] == b"text/event-stream"
    assert send.headers[b"x-aiwire-cache"] == b"hit"
    assert send.body == b"".join(EVENTS)
    assert send.messages[-1]["more_body"] is False
    assert replay_body(entry) == b"".join(EVENTS)
    assert replay_events(entry) == EVENTS
    assert replay_events(Entry.whole(BODY, usage=None, ttl=1)) == [BODY]
