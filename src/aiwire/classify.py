"""Labelling texts from a fixed set of labels: by any chat model, or by embedding similarity.

``method="chat"`` asks the model for ``{"label": ...}`` under a JSON schema whose ``enum`` is the
label set, so a provider with structured output cannot answer outside it; the answer is validated
anyway, and an invalid one is sent back with the reason and asked again (``retries`` times, then
:class:`~aiwire.errors.OutputValidationError`) — the machinery of
:meth:`aiwire.client.AsyncClient.extract`.

``method="embeddings"`` embeds each label's description (or its name) once and every text, and
picks the label with the highest cosine similarity: no generation, so cheaper and deterministic,
and every label's score is returned. With ``min_score`` a text whose best score is below it gets
no label (``label: None``) rather than a forced one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from aiwire import errors

if TYPE_CHECKING:
    from aiwire.client import AsyncClient

Method = Literal["chat", "embeddings"]
Labels = Sequence[str] | Mapping[str, str]

#: Texts classified at once by chat (each is one request; the router paces them).
DEFAULT_CONCURRENCY = 8


class Classification(BaseModel):
    """One text's label. ``score``: the cosine similarity of the chosen label (embeddings);
    ``scores``: every label's (embeddings only)."""

    text: str
    label: str | None
    score: float | None = None
    scores: dict[str, float] | None = None
    method: Method


def label_set(labels: Labels) -> dict[str, str]:
    """Labels with their descriptions (a bare label describes itself); refuses an empty or
    duplicated set."""
    if isinstance(labels, Mapping):
        out = {str(k): str(v or k) for k, v in labels.items()}
    else:
        if isinstance(labels, str):
            raise errors.BadRequestError("labels must be a list of labels, not one string")
        names = [str(label) for label in labels]
        if len(set(names)) != len(names):
            raise errors.BadRequestError("labels must not repeat a label", param="labels")
        out = {name: name for name in names}
    if len(out) < 2:
        raise errors.BadRequestError("give at least two labels to choose from", param="labels")
    if any(not name.strip() for name in out):
        raise errors.BadRequestError("a label is empty", param="labels")
    return out


def schema(labels: Sequence[str]) -> dict[str, Any]:
    """The JSON schema a chat model's answer must match."""
    return {
        "title": "classification",
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


def prompt(labels: Mapping[str, str], instructions: str | None = None) -> str:
    lines = [
        instructions or "Classify the text the user sends into exactly one of these labels.",
        "",
        "Labels:",
        *(f"- {name}" + (f": {desc}" if desc != name else "") for name, desc in labels.items()),
        "",
        'Answer with only a JSON object {"label": "<one of the labels>"}.',
    ]
    return "\n".join(lines)


async def by_chat(
    client: AsyncClient,
    model: str,
    texts: Sequence[str],
    labels: Mapping[str, str],
    *,
    instructions: str | None = None,
    retries: int = 2,
    concurrency: int = DEFAULT_CONCURRENCY,
    **params: Any,
) -> list[Classification]:
    system = prompt(labels, instructions)
    shape = schema(list(labels))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(text: str) -> Classification:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        async with gate:
            answer = await client.extract(model, messages, shape, retries=retries, **params)
        return Classification(text=text, label=answer["label"], method="chat")

    return list(await asyncio.gather(*(one(t) for t in texts)))


async def by_embeddings(
    client: AsyncClient,
    model: str,
    texts: Sequence[str],
    labels: Mapping[str, str],
    *,
    min_score: float | None = None,
    **params: Any,
) -> list[Classification]:
    names = list(labels)
    response = await client.embed(model, [*labels.values(), *texts], **params)
    vectors = response.vectors
    if len(vectors) != len(names) + len(texts):
        raise errors.ServerError(
            f"{model!r} returned {len(vectors)} embeddings for {len(names) + len(texts)} inputs",
            model=model,
        )
    label_vectors = [_unit(v) for v in vectors[: len(names)]]
    out = []
    for text, vector in zip(texts, vectors[len(names) :], strict=True):
        unit = _unit(vector)
        scores = {n: _dot(unit, lv) for n, lv in zip(names, label_vectors, strict=True)}
        best = max(scores, key=scores.__getitem__)
        label = best if min_score is None or scores[best] >= min_score else None
        out.append(
            Classification(
                text=text, label=label, score=scores[best], scores=scores, method="embeddings"
            )
        )
    return out


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


__all__ = ["Classification", "Labels", "Method", "by_chat", "by_embeddings", "label_set", "schema"]
