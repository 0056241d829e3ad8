"""The event-stream decoder against AWS's published vectors and against botocore's decoder."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from tests.providers.support import FIXTURES

from aiwire.providers.eventstream import EventStreamDecoder, EventStreamError
from aiwire.simulator.bedrock_api import encode_message, event, exception_event

VECTORS = json.loads((FIXTURES / "bedrock" / "eventstream_vectors.json").read_text())
POSITIVE = VECTORS["positive"]
NEGATIVE = VECTORS["negative"]


def expected_headers(case: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v["bytes"].encode() if isinstance(v, dict) else v for k, v in case["headers"].items()
    }


@pytest.mark.parametrize("case", POSITIVE, ids=[c["name"] for c in POSITIVE])
def test_published_vectors_decode(case: dict[str, Any]) -> None:
    (message,) = EventStreamDecoder().feed(bytes.fromhex(case["hex"]))  # exactly one
    assert message.headers == expected_headers(case)
    assert message.payload == case["payload"].encode()


@pytest.mark.parametrize("case", NEGATIVE, ids=[c["name"] for c in NEGATIVE])
def test_corrupt_vectors_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(EventStreamError):
        list(EventStreamDecoder().feed(bytes.fromhex(case["hex"])))


def test_all_vectors_back_to_back_fed_one_byte_at_a_time() -> None:
    data = b"".join(bytes.fromhex(c["hex"]) for c in POSITIVE)
    decoder = EventStreamDecoder()
    messages = []
    for i in range(len(data)):
        messages += decoder.feed(data[i : i + 1])
    assert [m.headers for m in messages] == [expected_headers(c) for c in POSITIVE]
    assert decoder.pending == 0


def test_a_partial_message_waits_and_is_counted_as_pending() -> None:
    raw = bytes.fromhex(POSITIVE[-1]["hex"])
    decoder = EventStreamDecoder()
    assert list(decoder.feed(raw[:15])) == []
    assert decoder.pending == 15
    (message,) = decoder.feed(raw[15:])
    assert message.message_type == "error" and decoder.pending == 0


def test_garbage_prelude_fails_at_once_rather_than_waiting_for_its_length() -> None:
    with pytest.raises(EventStreamError, match="prelude"):
        list(EventStreamDecoder().feed(b"HTTP/1.1 200 OK\r\n"))


def test_simulator_frames_decode_identically_with_botocore() -> None:
    frames = [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Grüße 🌍"}}),
        exception_event("throttlingException", "Too many tokens"),
        encode_message({":message-type": "event", ":event-type": "x"}, b""),
    ]
    data = b"".join(frames)
    ours = list(EventStreamDecoder().feed(data))
    reference = EventStreamBuffer()
    reference.add_data(data)
    theirs = list(reference)
    assert [(m.headers, m.payload) for m in ours] == [(m.headers, m.payload) for m in theirs]
    assert ours[0].event_type == "contentBlockDelta"
    assert json.loads(ours[0].payload)["delta"]["text"] == "Grüße 🌍"
    assert ours[1].message_type == "exception" and ours[1].event_type is None


def test_a_flipped_bit_in_the_payload_is_caught_by_the_message_checksum() -> None:
    frame = bytearray(event("messageStop", {"stopReason": "end_turn"}))
    frame[20] ^= 0x01
    with pytest.raises(EventStreamError, match="message checksum"):
        list(EventStreamDecoder().feed(bytes(frame)))


def test_whole_messages_before_a_corrupt_one_in_the_same_read_are_handed_out_first() -> None:
    good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}})
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    got = []
    with pytest.raises(EventStreamError):
        for message in EventStreamDecoder().feed(good + good + bytes(bad)):
            got.append(message)
    assert len(got) == 2
