"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

Bedrock's ConverseStream answers with binary messages, not server-sent events::

    [total length: u32][headers length: u32][prelude CRC-32: u32]
    [headers: headers length bytes][payload][message CRC-32: u32]        (all big-endian)

Each header is ``[name length: u8][name][value type: u8][value]``. Both checksums are verified:
a stream that fails one is corrupt, never "mostly right". The decoder is fed whatever the
network delivers (a piece may end mid-prelude, mid-header or mid-payload) and hands back each
message once all its bytes are in. Written here rather than borrowed from botocore so a stream
decodes without the optional AWS dependency; the tests check it against botocore's decoder and
AWS's published test vectors.
"""

from __future__ import annotations

import struct
from binascii import crc32
from collections.abc import Iterator
from dataclasses import dataclass

#: Header value types (value → Python): true/false → bool, byte/short/int/long → int,
#: byte array → bytes, string → str, timestamp (ms since the epoch) → int, uuid → 16 bytes.
HeaderValue = bool | int | bytes | str

PRELUDE_LENGTH = 12
MIN_MESSAGE_LENGTH = 16  # prelude + message CRC, no headers, no payload
MAX_HEADERS_LENGTH = 128 * 1024  # botocore's limits, which AWS services stay within
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

_INTS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad checksum, impossible length, bad header)."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    headers: dict[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` (a modelled error) or ``error`` (an unmodelled one)."""
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str | None:
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Turns pieces of a byte stream into whole :class:`EventMessage` objects."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message (0 at a clean end)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[EventMessage]:
        """Add ``data``; iterate over the messages it completes (possibly none). A corrupt
        message raises :class:`EventStreamError` only when iteration reaches it, after the whole
        messages before it (which may have arrived in the same network read) were handed out."""
        self._buffer += data
        return self._drain()

    def _drain(self) -> Iterator[EventMessage]:
        while (message := self._next()) is not None:
            yield message

    def _next(self) -> EventMessage | None:
        """The first whole message in the buffer, removed from it; None if there is none yet."""
        buffer = self._buffer
        if len(buffer) < PRELUDE_LENGTH:
            return None
        total, headers_length, prelude_crc = struct.unpack_from(">III", buffer)
        # The prelude is checked before waiting for the rest, so garbage fails at once instead
        # of stalling on a nonsense length.
        if crc32(buffer[:8]) != prelude_crc:
            raise EventStreamError("event-stream prelude checksum mismatch")
        _check_lengths(total, headers_length)
        if len(buffer) < total:
            return None
        (message_crc,) = struct.unpack_from(">I", buffer, total - 4)
        if crc32(buffer[: total - 4]) != message_crc:
            raise EventStreamError("event-stream message checksum mismatch")
        headers_end = PRELUDE_LENGTH + headers_length
        headers = parse_headers(bytes(buffer[PRELUDE_LENGTH:headers_end]))
        message = EventMessage(headers, bytes(buffer[headers_end : total - 4]))
        del buffer[:total]
        return message


def _check_lengths(total: int, headers_length: int) -> None:
    if total < MIN_MESSAGE_LENGTH:
        raise EventStreamError(f"event-stream message length {total} is below the minimum 16")
    if headers_length > MAX_HEADERS_LENGTH:
        raise EventStreamError(f"event-stream headers length {headers_length} is over 128 KiB")
    payload_length = total - headers_length - MIN_MESSAGE_LENGTH
    if payload_length < 0:
        raise EventStreamError("event-stream headers are longer than their message")
    if payload_length > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(f"event-stream payload length {payload_length} is over 24 MiB")


def parse_headers(data: bytes) -> dict[str, HeaderValue]:
    """The headers block of one message. A repeated name is an error, as in botocore."""
    headers: dict[str, HeaderValue] = {}
    pos = 0
    try:
        while pos < len(data):
            name_length = data[pos]
            name = data[pos + 1 : pos + 1 + name_length].decode("utf-8")
            pos += 1 + name_length
            kind = data[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _INTS:
                fmt = _INTS[kind]
                (value,) = struct.unpack_from(fmt, data, pos)
                pos += struct.calcsize(fmt)
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise EventStreamError(f"event-stream header {name!r} is cut short")
                value = raw.decode("utf-8") if kind == 7 else raw
                pos += 2 + length
            elif kind == 9:
                value = data[pos : pos + 16]
                if len(value) != 16:
                    raise EventStreamError(f"event-stream header {name!r} is cut short")
                pos += 16
            else:
                raise EventStreamError(f"event-stream header {name!r} has unknown type {kind}")
            if name in headers:
                raise EventStreamError(f"event-stream header {name!r} appears twice")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"event-stream headers are malformed ({exc})") from None
    return headers
