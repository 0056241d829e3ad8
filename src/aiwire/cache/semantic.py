"""The semantic cache: an answer served again for a question that means the same.

A second lookup behind the exact cache (:func:`aiwire.cache.cache_key`). The exact key asks
"is this the same request, byte for byte?"; this asks "is everything but the wording of the last
user message the same, and does that message mean the same?":

* **Namespace.** Everything except the text of the final user message is hashed, as the exact
  key hashes it (model, system prompt, earlier turns, tools, sampling parameters, protocol,
  stream): a paraphrase is only ever matched against entries of the same model with the same
  context and settings, within the same tenant scope (:func:`aiwire.cache.scope_for`: a key's
  entries are never served to another key unless ``scope`` says ``team`` or ``global``).
* **Similarity.** The final user message is embedded (any embeddings model of the router; the
  in-process ``local`` model costs nothing) and compared by cosine with the namespace's stored
  questions; the best one at or above ``threshold`` is a hit.
* **Eligibility.** Only a last message that is a user's plain text of at most
  ``max_question_chars`` (a longer one would be cut by a small embedding model, and two long
  prompts that agree in their first sentences must not match). Whether a request may be cached
  at all is decided as for the exact cache (:func:`aiwire.cache.decide`).

Entries live in this process (an LRU bounded by ``max_entries``, each for ``ttl`` seconds): a
replica learns only from its own traffic, and a restart forgets. A lookup embeds the question
once (a few milliseconds with the local model) and compares it with the namespace's questions.

Wiring in the gateway, in outline (see the proposal in the H11 report)::

    entry = await cache.get(key)                     # exact, as today
    if entry is None and semantic is not None:
        entry = await semantic.lookup(scope, protocol, request, stream)
    ...
    await cache.set(key, entry); await semantic.store(scope, protocol, request, stream, entry)
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from aiwire.cache.entry import Entry
from aiwire.cache.key import Scope, canonical
from aiwire.types import ChatRequest, EmbeddingRequest, Message, TextPart

if TYPE_CHECKING:
    from aiwire.router import Router

log = logging.getLogger("aiwire.cache")

#: Embeds texts (in order) into vectors of one length.
Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]


class SemanticConfig(BaseModel):
    """``cache.semantic``: serve a paraphrased question from the cache.

    ::

        cache:
          semantic: {model: local-embed, threshold: 0.9}
    """

    model_config = ConfigDict(extra="forbid")

    #: An embeddings model name from ``models:`` (``type: local`` runs in process, free).
    model: str
    #: Cosine similarity at or above which a stored question counts as the same question.
    threshold: float = Field(default=0.9, gt=0, le=1)
    #: Who shares entries; unset: as ``cache.scope`` (by default each key alone).
    scope: Scope | None = None
    #: Entries kept in this process (least recently stored dropped first).
    max_entries: int = Field(default=10_000, ge=1)
    #: Longer last messages are not cached semantically.
    max_question_chars: int = Field(default=500, ge=1)


@dataclass(slots=True)
class Hit:
    entry: Entry
    similarity: float
    question: str


@dataclass(slots=True)
class _Item:
    question: str
    vector: list[float]
    entry: Entry
    expires: float


@dataclass
class SemanticStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    #: Requests not eligible (no plain last user message, or one too long).
    skipped: int = 0
    evictions: int = 0
    embed_errors: int = 0
    entries: int = 0


class SemanticCache:
    """In-process semantic lookup over stored answers; see the module docstring."""

    def __init__(
        self,
        embed: Embedder,
        *,
        threshold: float = 0.9,
        ttl: float = 3600.0,
        max_entries: int = 10_000,
        max_question_chars: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self._embed = embed
        self.threshold = threshold
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_question_chars = max_question_chars
        self._clock = clock
        self._spaces: dict[str, list[_Item]] = {}
        self._order: OrderedDict[int, str] = OrderedDict()  # id(item) -> namespace, oldest first
        self._stats = SemanticStats()

    # -- what a request is, to this cache --

    def question(self, request: ChatRequest) -> str | None:
        """The last user message's text, when this request may be matched semantically."""
        if not request.messages:
            return None
        last = request.messages[-1]
        if last.role != "user" or last.content is None:
            return None
        if isinstance(last.content, list) and not all(
            isinstance(p, TextPart) for p in last.content
        ):
            return None  # an image in the question: its text alone does not say what is asked
        text = last.text.strip()
        if not text or len(text) > self.max_question_chars:
            return None
        return text

    @staticmethod
    def namespace(scope: str, protocol: str, request: ChatRequest, stream: bool) -> str:
        """A digest of everything but the last message's wording (see the module docstring)."""
        blank = [*request.messages[:-1], Message(role="user", content="")]
        context = request.model_copy(update={"messages": blank})
        return hashlib.sha256(
            b"semantic\0" + canonical(scope, protocol, context, stream)
        ).hexdigest()

    # -- lookups and stores --

    async def lookup(
        self, scope: str, protocol: str, request: ChatRequest, stream: bool
    ) -> Entry | None:
        hit = await self.find(scope, protocol, request, stream)
        return hit.entry if hit is not None else None

    async def find(
        self, scope: str, protocol: str, request: ChatRequest, stream: bool
    ) -> Hit | None:
        """The closest stored answer at or above the threshold, with its similarity."""
        question = self.question(request)
        if question is None:
            self._stats.skipped += 1
            return None
        items = self._live(self.namespace(scope, protocol, request, stream))
        if not items:
            self._stats.misses += 1
            return None
        vector = await self._vector(question)
        if vector is None:
            self._stats.misses += 1
            return None
        best, score = None, -1.0
        for item in items:
            s = _dot(vector, item.vector)
            if s > score:
                best, score = item, s
        if best is None or score < self.threshold:
            self._stats.misses += 1
            return None
        self._stats.hits += 1
        return Hit(best.entry, score, best.question)

    async def store(
        self, scope: str, protocol: str, request: ChatRequest, stream: bool, entry: Entry
    ) -> bool:
        """Keep ``entry`` as the answer to this request's question; whether it was kept."""
        question = self.question(request)
        if question is None or entry.status != 200:
            return False
        vector = await self._vector(question)
        if vector is None:
            return False
        space = self.namespace(scope, protocol, request, stream)
        items = self._live(space)
        for item in items:  # the same question again: replace its answer
            if item.question == question:
                self._forget(space, item)
                break
        item = _Item(question, vector, entry, self._clock() + (entry.ttl or self.ttl))
        self._spaces.setdefault(space, []).append(item)
        self._order[id(item)] = space
        self._stats.stores += 1
        while len(self._order) > self.max_entries:
            oldest, old_space = next(iter(self._order.items()))
            victim = next(i for i in self._spaces[old_space] if id(i) == oldest)
            self._forget(old_space, victim)
            self._stats.evictions += 1
        return True

    def stats(self) -> SemanticStats:
        s = self._stats
        return SemanticStats(
            s.hits, s.misses, s.stores, s.skipped, s.evictions, s.embed_errors, len(self._order)
        )

    def clear(self) -> None:
        self._spaces.clear()
        self._order.clear()

    # -- internals --

    async def _vector(self, text: str) -> list[float] | None:
        try:
            vectors = await self._embed([text])
        except Exception as exc:  # the cache is best-effort: a failing embedder is a miss
            self._stats.embed_errors += 1
            log.warning("semantic cache: embedding the question failed (%s)", type(exc).__name__)
            return None
        return _unit(vectors[0])

    def _live(self, space: str) -> list[_Item]:
        items = self._spaces.get(space)
        if not items:
            return []
        now = self._clock()
        for item in [i for i in items if i.expires <= now]:
            self._forget(space, item)
        return self._spaces.get(space, [])

    def _forget(self, space: str, item: _Item) -> None:
        items = self._spaces.get(space, [])
        if item in items:
            items.remove(item)
        self._order.pop(id(item), None)
        if not items:
            self._spaces.pop(space, None)


def router_embedder(router: Router, model: str) -> Embedder:
    """An :data:`Embedder` over one of the router's embeddings models (retries included)."""

    async def embed(texts: list[str]) -> list[list[float]]:
        response = await router.embed(EmbeddingRequest(model=model, input=texts))
        return response.vectors

    return embed


def open_semantic(
    config: SemanticConfig | None, router: Router, *, ttl: float
) -> SemanticCache | None:
    """The semantic cache ``cache.semantic`` asks for (None when unset)."""
    if config is None:
        return None
    return SemanticCache(
        router_embedder(router, config.model),
        threshold=config.threshold,
        ttl=ttl,
        max_entries=config.max_entries,
        max_question_chars=config.max_question_chars,
    )


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # Pure Python: ~10 µs per stored question of 384 dimensions; namespaces (one model, one
    # context) stay small. numpy is not a dependency of aiwire's core.
    return sum(x * y for x, y in zip(a, b, strict=False))


__all__ = [
    "Embedder",
    "Hit",
    "SemanticCache",
    "SemanticConfig",
    "SemanticStats",
    "open_semantic",
    "router_embedder",
]
