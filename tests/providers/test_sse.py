"""The SSE parser every adapter reads streams with: events split anywhere by the network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiwire import errors
from aiwire.providers.base import SSEEvent
from aiwire.providers.openai import OpenAIProvider
from aiwire.providers.transport import StreamedResponse, TransportError

BODY = (
    b": keep-alive comment\r\n"
    b"event: message\r\n"
    b'data: {"a": "\xc3\xa9t\xc3\xa9"}\r\n'
    b"\r\n"
    b"data: line one\n"
    b"data: line two\n"
    b"\n"
    b"data:no-space\n\n"
    b"data: [DONE]"  # no trailing blank line: still an event
)
EXPECTED = [
    ("message", '{"a": "été"}'),
    (None, "line one\nline two"),
    (None, "no-space"),
    (None, "[DONE]"),
]


class Pieces(StreamedResponse):
    def __init__(self, pieces: list[bytes], cut: bool = False) -> None:
        self.status, self.headers, self._pieces, self._cut = 200, {}, pieces, cut

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece
        if self._cut:
            raise TransportError("closed", "connection reset")


async def events(resp: StreamedResponse) -> list[SSEEvent]:
    provider = OpenAIProvider(name="t", base_url="http://x/v1")
    return [e async for e in provider._sse(resp, "m")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_events_come_out_whole_however_the_bytes_are_cut(size: int) -> None:
    pieces = [BODY[i : i + size] for i in range(0, len(BODY), size)]
    got = [(e.event, e.data) for e in await events(Pieces(pieces))]
    assert got == EXPECTED  # a two-byte character cut between reads is whole again


async def test_a_cut_connection_is_an_incomplete_stream() -> None:
    with pytest.raises(errors.IncompleteStreamError):
        await events(Pieces([b"data: x\n\n", b"data: y"], cut=True))
