"""Money: what a batch may cost before it starts, whether its key's budgets leave room for
that, and each line's reservation while it runs.

Before a batch is accepted its estimate (every line's largest possible cost: the input tokens
counted offline, plus the line's ``max_tokens`` or the model's maximum output) is compared with
what each budget over the key has left; a refusal names both numbers. While it runs, every line
reserves and settles through the gateway's :class:`~aiwire.limits.admission.Admission` like a
synchronous request, so concurrent traffic and batches together cannot overspend a budget. A
batch is charged to its key's budgets but not to its per-minute limits: like the providers'
batch APIs, batches have their own pace (the deployments' limits, through the router).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiwire import errors
from aiwire.batch import lines
from aiwire.batch.execute import Context
from aiwire.batch.lines import LineSpec
from aiwire.batch.records import Claimed
from aiwire.limits.admission import Admission, Ticket
from aiwire.limits.pricing import DEFAULT_MAX_OUTPUT, Pricing, rough_input_tokens
from aiwire.limits.windows import window
from aiwire.router import Router
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.keys import KeyRecord
from aiwire.tokens import count_chat, count_text
from aiwire.types import ChatRequest, EmbeddingRequest, new_id

#: What native mode costs relative to the synchronous price (both providers: 50 %).
NATIVE_PRICE = 0.5
#: Seconds a batch's key record is reused for its lines' budget checks.
KEY_TTL = 5.0


@dataclass(slots=True)
class Estimate:
    """A batch's tokens and cost before it runs. ``max_usd`` is the most it can cost (what a
    budget must leave room for); ``input_usd`` what its input alone costs (the least)."""

    lines: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    input_usd: float = 0.0
    max_usd: float = 0.0
    exact: bool = True
    unpriced: tuple[str, ...] = ()


def max_output(router: Router, pricing: Pricing, request: ChatRequest | EmbeddingRequest) -> int:
    """The most output tokens a request may produce: its cap, else its model's maximum."""
    if isinstance(request, EmbeddingRequest):
        return 0
    limit = request.output_limit
    if limit is not None:
        return limit
    known = [pricing.max_output(d.model) for d in router.deployments(request.model)]
    return max((k for k in known if k), default=DEFAULT_MAX_OUTPUT)


def dearest(
    router: Router, pricing: Pricing, model: str, input_tokens: int, output_tokens: int
) -> float | None:
    """The largest cost among the model's deployments (None: none is priced)."""
    prices = [
        pricing.max_cost(d.model, input_tokens, output_tokens) for d in router.deployments(model)
    ]
    known = [p for p in prices if p is not None]
    return max(known) if known else None


def estimate(
    router: Router,
    pricing: Pricing,
    endpoint: str,
    specs: Sequence[LineSpec],
    *,
    price_factor: float = 1.0,
) -> Estimate:
    """Count every line's tokens offline (exact for OpenAI models, a labelled estimate for
    others) and price them with the catalog."""
    out = Estimate(lines=len(specs))
    unpriced: set[str] = set()
    for spec in specs:
        request = lines.parse_request(endpoint, spec.body)
        upstream = _upstream_model(router, request.model)
        if isinstance(request, EmbeddingRequest):
            counts = [count_text(t, upstream) for t in request.inputs]
            tokens = sum(c.tokens for c in counts)
            exact = all(c.exact for c in counts)
        else:
            count = count_chat(request, upstream)
            tokens, exact = count.tokens, count.exact
        output = max_output(router, pricing, request)
        out.input_tokens += tokens
        out.max_output_tokens += output
        out.exact = out.exact and exact
        low = dearest(router, pricing, request.model, tokens, 0)
        high = dearest(router, pricing, request.model, tokens, output)
        if high is None or low is None:
            unpriced.add(request.model)
            continue
        out.input_usd += low * price_factor
        out.max_usd += high * price_factor
    out.unpriced = tuple(sorted(unpriced))
    return out


def _upstream_model(router: Router, model: str) -> str:
    deployments = router.deployments(model)
    return deployments[0].model if deployments else model


# --- budgets ----------------------------------------------------------------------------------

KeyLookup = Callable[[str], Awaitable[KeyRecord | None]]


class BudgetGuard:
    """The key's budgets for a batch: the check at creation and each line's reservation."""

    def __init__(
        self,
        admission: Admission,
        budgets: BudgetStore | None,
        router: Router,
        pricing: Pricing,
        keys: KeyLookup | None = None,
    ) -> None:
        self.admission = admission
        self.budgets = budgets
        self.router = router
        self.pricing = pricing
        self._keys = keys
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def check(self, key: KeyRecord | None, cost: float, lines_: int) -> None:
        """Refuse (429 ``budget_exceeded``) a batch whose estimate exceeds what any budget over
        ``key`` has left; the message names both amounts."""
        book = self.admission.book
        if book is None:
            return
        await book.current()
        for budget in book.over(key):
            left = budget.limit_usd - await self._committed(budget)
            if cost > left:
                raise errors.RateLimitError(
                    f"budget exceeded: this batch of {lines_:,} requests could cost up to "
                    f"${cost:.4f}, but the {budget.label} budget has ${max(left, 0.0):.4f} left "
                    f"(limit ${budget.limit_usd:.2f}). Send fewer lines, lower max_tokens, or ask "
                    "an admin to raise the budget",
                    code="budget_exceeded",
                    retryable=False,
                )

    async def _committed(self, budget: BudgetRecord) -> float:
        """Spent and reserved in the budget's current window (counters first, else the log)."""
        window_id, start, _ = window(budget.period, datetime.now(UTC))
        counted = await self.admission.state.spent(f"bg:{budget.id}:{window_id}")
        if counted is not None:
            return counted
        if self.budgets is None:
            return 0.0
        return await self.budgets.spent(budget, start)

    async def reserve(
        self, ctx: Context, line: Claimed, request: ChatRequest | EmbeddingRequest
    ) -> Ticket | None:
        """Reserve one line's largest cost under the budgets over its batch's key (a
        :class:`~aiwire.limits.admission.Refused` when one has no room)."""
        key = await self._key(ctx.key_id)
        if key is not None:  # the key's budgets apply; its per-minute limits do not
            key = dataclasses.replace(key, rpm=None, tpm=None)
        return await self.admission.admit(
            key,
            tokens=lambda: (
                rough_input_tokens(request),
                max_output(self.router, self.pricing, request),
            ),
            max_cost=lambda i, o: dearest(self.router, self.pricing, request.model, i, o) or 0.0,
        )

    async def settle(self, ticket: Ticket | None, tokens: int | None, cost: float) -> None:
        await self.admission.settle(ticket, tokens, cost)

    async def record(self, key_id: str | None, cost: float) -> None:
        """Add spend made without a reservation (a native batch's results) to the live
        counters of the budgets over the key. A counter that does not exist yet is left alone:
        it starts from the request log, where that spend already is."""
        book = self.admission.book
        if book is None or cost <= 0:
            return
        await book.current()
        state = self.admission.state
        for budget in book.over(await self._key(key_id)):
            window_id, _, _ = window(budget.period, datetime.now(UTC))
            counter = f"bg:{budget.id}:{window_id}"
            if await state.spent(counter) is not None:
                await state.settle(new_id("bat_"), [], [(counter, cost)])

    async def _key(self, key_id: str | None) -> KeyRecord | None:
        """The batch's key, looked up at most every ``KEY_TTL`` seconds (not once per line)."""
        if key_id is None or self._keys is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._keys(key_id)
        self._cache[key_id] = (now + KEY_TTL, record)
        return record
