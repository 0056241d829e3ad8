"""What an image costs in input tokens, by each provider's published rule.

The pixel size is read from the image itself when it is inline (``data:`` URL: PNG, GIF, WebP and
JPEG headers, without decoding pixels); for a remote URL it is unknown and the rule's *largest*
possible count is used, so reservations and context checks are never too low.

Rules:

- ``tile`` (OpenAI GPT-4o, GPT-4.1, GPT-4.5, GPT-4 Turbo, o1/o3, GPT-5): ``detail: low`` costs the
  base; otherwise the image is fitted into 2048×2048, its shortest side scaled down to 768, and
  each 512-pixel tile costs ``per_tile``, plus the base. ``auto`` and no detail count as high.
  At most 8 tiles (768×2048), so an unknown size costs ``base + 8 × per_tile``.
- ``patch`` (GPT-4.1 mini/nano, GPT-5 mini/nano, o4-mini): 32-pixel patches, at most 1536
  (larger images are scaled down to fit), times a per-model multiplier.
- ``anthropic``: the long edge is scaled to at most 1568, then ``width × height / 750`` tokens,
  at most 1600.
- ``gemini``: 258 tokens when both sides are at most 384, else 258 per 768×768 tile; an unknown
  size counts 16 tiles (4128), which covers images up to 3072×3072.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Literal

ImageScheme = Literal["tile", "patch", "anthropic", "gemini"]


@dataclass(frozen=True, slots=True)
class ImageRule:
    scheme: ImageScheme
    base: int = 0
    per_tile: int = 0
    multiplier: float = 1.0
    #: Whether the provider's formula is known to reproduce its bill exactly.
    exact: bool = False

    def tokens(self, size: tuple[int, int] | None, detail: str | None) -> int:
        """Tokens for one image of ``size`` (width, height), or the maximum when unknown."""
        if self.scheme == "tile":
            if detail == "low":
                return self.base
            tiles = 8 if size is None else _tiles(*size)
            return self.base + self.per_tile * tiles
        if self.scheme == "patch":
            patches = _MAX_PATCHES if size is None else _patches(*size)
            return math.ceil(patches * self.multiplier)
        if self.scheme == "anthropic":
            return _ANTHROPIC_MAX if size is None else _anthropic(*size)
        return 258 * 16 if size is None else _gemini(*size)

    @property
    def max_tokens(self) -> int:
        """The most one image can cost under this rule."""
        return self.tokens(None, "high")


_MAX_PATCHES = 1536
_ANTHROPIC_MAX = 1600


def _tiles(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches <= _MAX_PATCHES:
        return patches
    ratio = math.sqrt(32 * 32 * _MAX_PATCHES / (width * height))
    w_units, h_units = width * ratio / 32, height * ratio / 32
    ratio *= min(math.floor(w_units) / w_units, math.floor(h_units) / h_units)
    patches = math.ceil(width * ratio / 32) * math.ceil(height * ratio / 32)
    return min(patches, _MAX_PATCHES)


def _anthropic(width: int, height: int) -> int:
    scale = min(1.0, 1568 / max(width, height, 1))
    return min(_ANTHROPIC_MAX, math.ceil(width * scale * height * scale / 750))


def _gemini(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


# --- reading the pixel size from an inline image -----------------------------------------------

_HEAD_CHARS = 87_384  # base64 characters for the first 64 KiB: enough for nearly every header


def image_size(url: str) -> tuple[int, int] | None:
    """(width, height) of a ``data:`` URL image, or ``None`` when it cannot be told cheaply."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0 or ";base64" not in url[:comma]:
        return None
    payload = url[comma + 1 :]
    size = _sniff(_b64(payload[:_HEAD_CHARS]))
    if size is None and len(payload) > _HEAD_CHARS:
        size = _sniff(_b64(payload))  # a JPEG whose frame header follows large metadata
    return size


def _b64(text: str) -> bytes:
    text = text[: len(text) - len(text) % 4]
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return b""


def _sniff(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w = int.from_bytes(data[26:28], "little") & 0x3FFF
        h = int.from_bytes(data[28:30], "little") & 0x3FFF
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int] | None:
    off = 2
    while off + 9 <= len(data):
        if data[off] != 0xFF:
            return None
        marker = data[off + 1]
        if marker == 0xFF:  # fill byte
            off += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            off += 2
            continue
        length = int.from_bytes(data[off + 2 : off + 4], "big")
        if marker in _SOF:
            h = int.from_bytes(data[off + 5 : off + 7], "big")
            w = int.from_bytes(data[off + 7 : off + 9], "big")
            return w, h
        off += 2 + length
    return None
