"""Server-sent-event framing, as bytes (the per-chunk hot path: no str round trips)."""

from __future__ import annotations

#: OpenAI's stream terminator.
DONE = b"data: [DONE]\n\n"


def data(payload: bytes) -> bytes:
    """One unnamed event (OpenAI style): ``data: <payload>`` and a blank line."""
    return b"data: " + payload + b"\n\n"


def event(name: bytes, payload: bytes) -> bytes:
    """One named event (Anthropic style): ``event: <name>``, ``data: <payload>``, blank line."""
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"
