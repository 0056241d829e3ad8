"""Admission: may this request go out, under its key's rate limits and every budget over it?

Before routing, :meth:`Admission.admit` checks the key's requests- and tokens-per-minute windows
and reserves the request's largest possible cost in each budget that covers it (the key's, its
team's, the global one): all in one atomic step of the :class:`LimitState`. After the answer,
:meth:`Admission.settle` corrects the token entry to the tokens the provider reported and turns
the reservation into the actual cost, so concurrent requests can overspend a budget by at most
what is in flight beyond the estimates - with exact estimates, by nothing.

A key with no limits and no budget over it costs one dictionary lookup here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiwire import errors
from aiwire.fresh import Fresh
from aiwire.limits.state import BudgetCheck, LimitState, RateCheck, Verdict
from aiwire.limits.windows import window
from aiwire.ratelimit import format_go_duration
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.keys import KeyRecord
from aiwire.types import new_id

log = logging.getLogger("aiwire.limits")

#: How long a budget reservation outlives a request that never settles (its process died).
LEASE_SECONDS = 900.0

#: Called when a budget's spend crosses its soft threshold: (budget, window id, spent).
SoftAlert = Callable[[BudgetRecord, str, float], Awaitable[None]]


@dataclass(slots=True)
class Ticket:
    """What admission reserved for one request, to be settled when it ends."""

    rid: str
    tokens_key: str | None
    tokens_estimate: float
    budgets: list[tuple[BudgetRecord, str, str]] = field(default_factory=list)  # (b, key, window)
    reserved_usd: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)
    settled: bool = False


class Refused(errors.RateLimitError):
    """Admission said no (HTTP 429): a key's rate limit or a budget. ``headers`` are the
    key's ``x-ratelimit-*`` headers for the refusal."""

    headers: Sequence[tuple[str, str]] = ()


class BudgetBook:
    """Every budget, in memory: which apply to a key, and what each window started from.

    Re-read from the store at most every ``refresh`` seconds, in the background from half of it
    (changes made on another replica show up within ``refresh``; requests do not wait for the
    re-read, see :mod:`aiwire.fresh`), and before the next request after a change on this one
    (:meth:`invalidate`).
    """

    def __init__(self, store: BudgetStore, *, refresh: float = 2.0) -> None:
        self._store = store
        self.refresh = refresh
        self._fresh: Fresh[None, list[BudgetRecord]] = Fresh(refresh, what="budgets")
        self._budgets: list[BudgetRecord] = []
        self._by_scope: dict[tuple[str, str], list[BudgetRecord]] = {}
        # (budget id, window) -> what the log showed spent when this replica first saw the window:
        # read once (one read shared by the requests that start a window together), kept for good.
        self._initial: Fresh[tuple[str, str], float] = Fresh(
            math.inf, what="a budget's spend", max_entries=10_000
        )

    @property
    def empty(self) -> bool:
        return not self._budgets

    def invalidate(self) -> None:
        self._fresh.forget()

    async def current(self) -> None:
        budgets = await self._fresh.get(None, self._store.list)
        if budgets is not self._budgets:
            by_scope: dict[tuple[str, str], list[BudgetRecord]] = {}
            for b in budgets:
                by_scope.setdefault((b.scope, b.scope_id), []).append(b)
            self._budgets, self._by_scope = budgets, by_scope

    def over(self, key: KeyRecord | None) -> list[BudgetRecord]:
        """The budgets covering a request made with ``key`` (None: the master key)."""
        found = list(self._by_scope.get(("global", ""), ()))
        if key is not None:
            found += self._by_scope.get(("key", key.id), ())
            if key.team:
                found += self._by_scope.get(("team", key.team), ())
        return found

    async def initial(self, budget: BudgetRecord, window_id: str, start: datetime) -> float:
        """The spend the request log shows for this window (read once per window)."""
        return await self._initial.get(
            (budget.id, window_id), lambda: self._store.spent(budget, start)
        )


class Admission:
    def __init__(
        self,
        state: LimitState,
        book: BudgetBook | None,
        *,
        on_soft_limit: SoftAlert | None = None,
        lease: float = LEASE_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.state = state
        self.book = book
        self.on_soft_limit = on_soft_limit
        self.lease = lease
        self._clock = clock

    async def admit(
        self,
        key: KeyRecord | None,
        *,
        tokens: Callable[[], tuple[int, int]],
        max_cost: Callable[[int, int], float],
    ) -> Ticket | None:
        """Admit a request or raise :class:`Refused` (a ``RateLimitError`` with code
        ``rate_limit_exceeded`` or ``budget_exceeded``). ``tokens()`` estimates the request's
        input tokens and the most output it may produce; ``max_cost(input, output)`` prices
        that. Both are only called when a limit or budget needs them. None: nothing to check
        and nothing to settle."""
        book = self.book
        if book is not None:
            await book.current()
        budgets = book.over(key) if book is not None and not book.empty else []
        rpm = key.rpm if key is not None else None
        tpm = key.tpm if key is not None else None
        if not budgets and rpm is None and tpm is None:
            return None
        input_tokens, output_tokens = tokens() if (tpm is not None or budgets) else (0, 0)
        estimate = input_tokens + output_tokens
        rates: list[RateCheck] = []
        if rpm is not None and key is not None:
            rates.append(RateCheck(f"rl:{key.id}:r", rpm, 1.0))
        if tpm is not None and key is not None:
            rates.append(RateCheck(f"rl:{key.id}:t", tpm, float(estimate)))
        amount = max_cost(input_tokens, output_tokens) if budgets else 0.0
        now = self._clock()
        checks: list[BudgetCheck] = []
        ticket = Ticket(
            rid=new_id("adm_"),
            tokens_key=f"rl:{key.id}:t" if tpm is not None and key is not None else None,
            tokens_estimate=float(estimate),
            reserved_usd=amount,
        )
        for b in budgets:
            window_id, start, end = window(b.period, now)
            counter = f"bg:{b.id}:{window_id}"
            ttl = None if end is None else (end - now).total_seconds() + 86_400
            initial = await book.initial(b, window_id, start) if book is not None else 0.0
            checks.append(BudgetCheck(counter, b.limit_usd, amount, initial, ttl))
            ticket.budgets.append((b, counter, window_id))
        verdict = await self.state.admit(ticket.rid, rates, checks, self.lease)
        ticket.headers = _headers(rates, verdict)
        if not verdict.ok:
            refusal = self._refusal(rates, ticket, verdict, now)
            refusal.headers = ticket.headers
            raise refusal
        return ticket

    async def settle(self, ticket: Ticket | None, tokens: int | None, cost: float) -> None:
        """The request is over: ``tokens`` it really used (None: unknown, keep the estimate) and
        what it cost. Called exactly once per admitted request, however it ended."""
        if ticket is None or ticket.settled:
            return
        ticket.settled = True
        rates = []
        if ticket.tokens_key is not None and tokens is not None:
            rates.append((ticket.tokens_key, float(tokens)))
        budgets = [(counter, cost) for _, counter, _ in ticket.budgets]
        if not rates and not budgets:
            return
        spent = await self.state.settle(ticket.rid, rates, budgets)
        if self.on_soft_limit is None:
            return
        for (budget, _, window_id), after in zip(ticket.budgets, spent, strict=True):
            soft = budget.soft_usd
            if soft is not None and after - cost < soft <= after:  # this request crossed it
                await self.on_soft_limit(budget, window_id, after)

    def _refusal(
        self, rates: Sequence[RateCheck], ticket: Ticket, verdict: Verdict, now: datetime
    ) -> Refused:
        if verdict.failed < len(rates):
            check = rates[verdict.failed]
            what = "requests" if check.key.endswith(":r") else "tokens"
            if verdict.retry_after is None:
                return Refused(
                    f"this request needs {check.cost:.0f} tokens, more than this key's limit "
                    f"of {check.limit:.0f} tokens per minute; send less or ask an admin to "
                    "raise the key's tpm",
                    code="rate_limit_exceeded",
                    retryable=False,
                )
            return Refused(
                f"this key's limit of {check.limit:.0f} {what} per minute is reached; "
                f"retry in {verdict.retry_after:.1f}s",
                code="rate_limit_exceeded",
                retry_after=verdict.retry_after,
            )
        budget, _, _ = ticket.budgets[verdict.failed - len(rates)]
        committed = verdict.committed[verdict.failed - len(rates)]
        _, _, end = window(budget.period, now)
        when = "" if end is None else f"; it resets at {end.isoformat()}"
        return Refused(
            f"budget exceeded: the {budget.label} budget is {usd(budget.limit_usd)} and "
            f"{usd(committed)} is spent or reserved; this request could cost up to "
            f"{usd(ticket.reserved_usd)}{when}. Ask an admin to raise it",
            code="budget_exceeded",
            retryable=False,
        )


def usd(amount: float) -> str:
    """``$1,234.50``, ``$0.0042``, ``$0.000018``: cents for dollars, enough digits below."""
    if amount >= 1 or amount == 0:
        return f"${amount:,.2f}"
    whole, _, cents = f"{amount:.8f}".rstrip("0").partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _headers(rates: Sequence[RateCheck], verdict: Verdict) -> list[tuple[str, str]]:
    """OpenAI's ``x-ratelimit-*`` headers for the key's own limits."""
    out: list[tuple[str, str]] = []
    for check, left, reset in zip(rates, verdict.remaining, verdict.resets, strict=True):
        what = "requests" if check.key.endswith(":r") else "tokens"
        out += [
            (f"x-ratelimit-limit-{what}", str(int(check.limit))),
            (f"x-ratelimit-remaining-{what}", str(max(0, math.floor(left)))),
            (f"x-ratelimit-reset-{what}", format_go_duration(reset)),
        ]
    return out
