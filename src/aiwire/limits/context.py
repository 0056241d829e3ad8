"""The context-window check before a request is sent (and money spent).

Cheap when far from the limit: a bound that needs no tokenizer (UTF-8 bytes plus framing, a few
µs) settles almost every request; only a request whose bound comes near a deployment's window is
counted properly - exactly for OpenAI models, by a labelled estimate for others, which is then
given 10 % of slack so an estimate never refuses a request the provider would take. That count
runs in a worker thread (a long prompt takes milliseconds, and the first one loads the
tokenizer: ~1 s and ~100 MB, which a gateway that never needs it never pays). A refusal is
:class:`~aiwire.errors.ContextWindowExceededError`, which the router answers by moving to a
``context_window_fallbacks`` model when one is configured.
"""

from __future__ import annotations

import asyncio

from aiwire.catalog import Catalog
from aiwire.tokens import count_chat, upper_bound_tokens
from aiwire.types import ChatRequest

#: An estimated count must exceed the window by this factor before it refuses a request.
ESTIMATE_SLACK = 1.10


class ContextGuard:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def check(self, model: str, request: ChatRequest) -> None:
        info = self.catalog.lookup(model)
        if info is None:
            return
        output = request.output_limit or 0
        if upper_bound_tokens(request, model) + output <= info.context_window:
            return
        count = await asyncio.to_thread(count_chat, request, model)
        tokens = count.tokens if count.exact else int(count.tokens / ESTIMATE_SLACK)
        self.catalog.context_check(model, tokens, request.output_limit)
