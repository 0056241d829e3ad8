"""Deterministic embeddings: hashed bag of words and character trigrams, unit length.

Texts sharing words get similar vectors, so retrieval demos behave sensibly offline.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

_TOKEN = re.compile(r"\w+")


def _features(text: str) -> list[tuple[str, float]]:
    words = _TOKEN.findall(text.lower())
    feats: list[tuple[str, float]] = [(f"w:{w}", 1.0) for w in words]
    for w in words:
        padded = f"#{w}#"
        feats += [(f"g:{padded[i : i + 3]}", 0.3) for i in range(max(0, len(padded) - 2))]
    return feats or [(f"t:{text}", 1.0)]


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` floats (float32-representable) for ``text``."""
    vec = [0.0] * dimensions
    for feature, weight in _features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=16).digest()
        for k in range(2):  # each feature touches two coordinates
            idx = int.from_bytes(digest[k * 4 : k * 4 + 4], "little") % dimensions
            sign = 1.0 if digest[8 + k] & 1 else -1.0
            vec[idx] += sign * weight
    # a little text-specific noise so no two distinct texts collide exactly
    noise = hashlib.blake2b(text.encode(), digest_size=64).digest()
    for i in range(dimensions):
        vec[i] += (noise[i % 64] - 127.5) / 127.5 * 0.01
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    # round-trip through float32 so float and base64 encodings carry identical values
    return list(
        struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in vec)))
    )


def to_base64(vector: list[float]) -> str:
    import base64

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
