"""Serving a hit: the cached bytes, sent the way the gateway sends a live answer.

A non-streamed entry goes out as one response with its status and content type; a streamed one
as an SSE response whose body is every recorded event in order, sent in a single ``send`` (a
client reads the same bytes and events as the first time, with the fewest writes). Both carry
``x-aiwire-cache: hit`` after the caller's headers (request id, rate limits).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiwire.cache.entry import Entry
from aiwire.cache.policy import HEADER, HIT
from aiwire.server.asgi import Send, end_stream, respond, start_stream


def replay_body(entry: Entry) -> bytes:
    """The whole response body to send for ``entry`` (a stream: its events concatenated)."""
    return entry.body


def replay_events(entry: Entry) -> list[bytes]:
    """A streamed entry's SSE events in order, for a caller that sends them one by one."""
    return entry.events if entry.streamed else [entry.body]


async def replay(send: Send, entry: Entry, *, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer a request from ``entry`` through the ASGI ``send``."""
    out = [*headers, (HEADER, HIT)]
    if entry.streamed:
        await start_stream(send, headers=out)
        await end_stream(send, entry.body)
    else:
        await respond(
            send,
            entry.status,
            entry.body,
            content_type=entry.content_type.encode("latin-1"),
            headers=out,
        )
