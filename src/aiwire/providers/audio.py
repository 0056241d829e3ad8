"""The length of an audio file from its header, for per-minute prices when the provider's answer
does not say (``response_format: text`` answers carry no duration).

WAV (RIFF ``fmt `` + ``data`` chunks) and FLAC (``STREAMINFO``) state their length exactly in a
few header bytes. Compressed frame formats (MP3, M4A, Ogg, WebM) would need their frames walked
or a container parsed; for those this answers ``None`` and the cost stays unknown rather than
guessed.
"""

from __future__ import annotations

import struct


def duration_seconds(data: bytes) -> float | None:
    """Seconds of audio in ``data``, or None when the format is not one read here or its header
    is damaged."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav(data)
    if data[:4] == b"fLaC":
        return _flac(data)
    return None


def _wav(data: bytes) -> float | None:
    pos = 12
    byte_rate = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = int(struct.unpack_from("<I", data, pos + 4)[0])
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(data):
            byte_rate = int(struct.unpack_from("<I", data, body + 8)[0])
        elif chunk_id == b"data":
            if byte_rate <= 0:
                return None
            # A streamed WAV leaves the size unset (0 or 0xFFFFFFFF): count what is there.
            available = len(data) - body
            if size in (0, 0xFFFFFFFF) or size > available:
                size = available
            return size / byte_rate
        pos = body + size + (size & 1)  # chunks are padded to an even length
    return None


def _flac(data: bytes) -> float | None:
    # The first metadata block must be STREAMINFO (type 0, 34 bytes).
    if len(data) < 8 + 18 or data[4] & 0x7F != 0:
        return None
    info = data[8 : 8 + 18]
    # Bytes 10..17: sample rate (20 bits), channels (3), bits per sample (5), total samples (36).
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    total = packed & ((1 << 36) - 1)
    if rate == 0 or total == 0:
        return None
    return total / rate


__all__ = ["duration_seconds"]
