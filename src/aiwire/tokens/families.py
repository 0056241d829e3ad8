"""Which tokenizer and billing rules apply to a model id.

OpenAI models are counted exactly with their own encoding (o200k_base for GPT-4o, GPT-4.1, GPT-4.5,
the o-series and GPT-5; cl100k_base for GPT-4, GPT-3.5 and the text-embedding models). Anthropic,
Gemini and every other model have no public offline tokenizer: they are *estimated* as the
o200k_base count times a per-family factor, and say so (``exact=False``).

Estimator factors (o200k_base tokens → the provider's tokens), chosen to err high for English and
code: Anthropic's tokenizers produce more tokens than o200k_base for the same text (×1.2); Gemini's
256k-entry SentencePiece vocabulary is on a par with o200k_base (×1.0); unknown models ×1.1.

A model id is matched by its longest known prefix that ends at a separator
(``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``, but ``gpt-4o`` is not ``gpt-4``). ``ft:``
(fine-tuned) and path prefixes (``openai/``, ``models/``) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from aiwire.tokens.encodings import CL100K, O200K
from aiwire.tokens.images import ImageRule


@dataclass(frozen=True, slots=True)
class ToolFraming:
    """Per-function constants of OpenAI's tool-definition rendering (from OpenAI's cookbook,
    "How to count tokens with tiktoken"; they reproduce its published examples)."""

    func_init: int = 7
    prop_init: int = 3
    prop_key: int = 3
    enum_init: int = -3
    enum_item: int = 3
    func_end: int = 12


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    provider: str  # openai | anthropic | gemini | other
    encoding: str
    #: True: counts reproduce OpenAI's billing; False: an estimate (factor applied).
    exact: bool
    image: ImageRule
    factor: float = 1.0
    tools: ToolFraming = field(default_factory=ToolFraming)
    #: Tokens the provider adds once when tools are given (Anthropic's tool-use system prompt).
    tools_overhead: int = 0


_TILE_4O = ImageRule("tile", base=85, per_tile=170, exact=True)
_TILE_4O_MINI = ImageRule("tile", base=2833, per_tile=5667, exact=True)
_TILE_O = ImageRule("tile", base=75, per_tile=150)
_TILE_5 = ImageRule("tile", base=70, per_tile=140)
_CL100K_TOOLS = ToolFraming(func_init=10)


def _oa(name: str, encoding: str = O200K, image: ImageRule = _TILE_4O) -> Family:
    tools = _CL100K_TOOLS if encoding == CL100K else ToolFraming()
    return Family(name, "openai", encoding, exact=True, image=image, tools=tools)


#: Longest prefix wins. Image rules follow OpenAI's vision pricing guide.
_OPENAI: dict[str, Family] = {
    "gpt-4o": _oa("gpt-4o"),
    "chatgpt-4o": _oa("gpt-4o"),
    "gpt-4o-mini": _oa("gpt-4o-mini", image=_TILE_4O_MINI),
    "gpt-4.1": _oa("gpt-4.1"),
    "gpt-4.1-mini": _oa("gpt-4.1-mini", image=ImageRule("patch", multiplier=1.62)),
    "gpt-4.1-nano": _oa("gpt-4.1-nano", image=ImageRule("patch", multiplier=2.46)),
    "gpt-4.5": _oa("gpt-4.5"),
    "gpt-5": _oa("gpt-5", image=_TILE_5),
    "gpt-5-mini": _oa("gpt-5-mini", image=ImageRule("patch", multiplier=1.62)),
    "gpt-5-nano": _oa("gpt-5-nano", image=ImageRule("patch", multiplier=2.46)),
    "o1": _oa("o1", image=_TILE_O),
    "o3": _oa("o3", image=_TILE_O),
    "o4-mini": _oa("o4-mini", image=ImageRule("patch", multiplier=1.72)),
    "codex-mini": _oa("codex-mini", image=ImageRule("patch", multiplier=1.72)),
    "gpt-4": _oa("gpt-4", CL100K),
    "gpt-4-turbo": _oa("gpt-4-turbo", CL100K),
    "gpt-4-vision": _oa("gpt-4-turbo", CL100K),
    "gpt-3.5-turbo": _oa("gpt-3.5-turbo", CL100K),
    "gpt-35-turbo": _oa("gpt-3.5-turbo", CL100K),  # Azure's spelling
    "text-embedding-3-small": _oa("text-embedding-3", CL100K),
    "text-embedding-3-large": _oa("text-embedding-3", CL100K),
    "text-embedding-ada-002": _oa("text-embedding-ada-002", CL100K),
}
_PREFIXES = sorted(_OPENAI, key=len, reverse=True)
_SEPARATORS = frozenset("-.:@_")

ANTHROPIC = Family(
    "claude",
    "anthropic",
    O200K,
    exact=False,
    image=ImageRule("anthropic"),
    factor=1.2,
    tools_overhead=346,  # Anthropic's documented tool-use system prompt (tool_choice auto/none)
)
GEMINI = Family("gemini", "gemini", O200K, exact=False, image=ImageRule("gemini"), factor=1.0)
OTHER = Family("other", "other", O200K, exact=False, image=_TILE_4O, factor=1.1)


@lru_cache(maxsize=1024)
def family_for(model: str) -> Family:
    """The counting rules for ``model`` (an upstream model id; dated snapshots resolve)."""
    name = model.strip().lower().removeprefix("ft:").rsplit("/", 1)[-1]
    for prefix in _PREFIXES:
        if name.startswith(prefix) and (
            len(name) == len(prefix) or name[len(prefix)] in _SEPARATORS
        ):
            return _OPENAI[prefix]
    if "claude" in name:
        return ANTHROPIC
    if "gemini" in name or "gemma" in name or name.startswith("text-embedding-004"):
        return GEMINI
    return OTHER
