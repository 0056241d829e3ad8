"""What a request may cost and what it did cost, as admission and the request log need it.

The gateway asks a :class:`Pricing` (the model catalog implements it) by upstream model name;
a model it does not know costs nothing (logged once), so budgets cannot constrain it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from aiwire.catalog import Catalog
from aiwire.types import ChatRequest, EmbeddingRequest, ImagePart, Usage

log = logging.getLogger("aiwire.pricing")


class Pricing(Protocol):
    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for this usage of ``model`` (None: no price known)."""

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        """USD for ``input_tokens`` in and ``max_output`` out (None: no price known)."""

    def max_output(self, model: str) -> int | None:
        """The most output tokens ``model`` can produce (None: unknown)."""


class CatalogPricing:
    """:class:`Pricing` from the model catalog. A model the catalog does not know costs
    nothing (warned about once): add its prices under ``catalog:`` in the config."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._unknown: set[str] = set()
        self._warned_deprecated: dict[str, float] = {}
        #: Requests made to deprecated models, by model: what the warning counts.
        self.deprecated_requests: dict[str, int] = {}

    def _known(self, model: str) -> bool:
        if self.catalog.lookup(model) is not None:
            return True
        if model not in self._unknown:
            self._unknown.add(model)
            log.warning(
                "model %r is not in the catalog: its spend is counted as $0 and budgets cannot "
                "limit it; add its prices under catalog: in the config",
                model,
            )
        return False

    def cost(self, model: str, usage: Usage) -> float | None:
        return self.catalog.cost(model, usage) if self._known(model) else None

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        if not self._known(model):
            return None
        return self.catalog.max_cost(model, input_tokens, max_output)

    def max_output(self, model: str) -> int | None:
        info = self.catalog.lookup(model)
        return None if info is None else info.max_output_tokens

    def note_use(self, model: str) -> str | None:
        """Count a request to a deprecated model and warn (at most hourly per model); the
        warning text, or None when the model is current."""
        info = self.catalog.lookup(model)
        if info is None or not info.deprecated:
            return None
        self.deprecated_requests[model] = self.deprecated_requests.get(model, 0) + 1
        text = (
            f"model {model} is deprecated"
            + (f" (retires {info.deprecation_date})" if info.deprecation_date else "")
            + (f"; move to {info.replacement}" if info.replacement else "")
        )
        now = time.monotonic()
        if now - self._warned_deprecated.get(model, -1e9) >= 3600:
            self._warned_deprecated[model] = now
            log.warning("%s", text)
        return text


class NoPricing:
    """Every model is free: what the gateway uses with no catalog."""

    def cost(self, model: str, usage: Usage) -> float | None:
        return None

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        return None

    def max_output(self, model: str) -> int | None:
        return None


#: Output tokens assumed for a request that sets no limit, when the catalog knows none either.
DEFAULT_MAX_OUTPUT = 4096


def rough_input_tokens(request: ChatRequest | EmbeddingRequest) -> int:
    """A quick, deliberately generous estimate of input tokens: a token per 3 characters of
    text, plus per-message overhead and a flat 85 per image (OpenAI's low-detail tile). For
    limits when no exact tokenizer is configured; billing always uses the provider's usage."""
    if isinstance(request, EmbeddingRequest):
        return sum(math.ceil(len(t) / 3) + 1 for t in request.inputs)
    chars = 0
    images = 0
    for m in request.messages:
        content = m.content
        if isinstance(content, str):
            chars += len(content)
        elif content is not None:
            for part in content:
                if isinstance(part, ImagePart):
                    images += 1
                else:
                    chars += len(part.text)
        for call in m.tool_calls or ():
            chars += len(call.function.name) + len(call.function.arguments)
    for tool in request.tools or ():
        chars += len(tool.function.name) + len(tool.function.description or "")
        chars += len(str(tool.function.parameters or ""))
    return math.ceil(chars / 3) + 4 * len(request.messages) + 85 * images + 3
