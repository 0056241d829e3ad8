"""The counter contract, in process and in Redis: the same cases, the same answers."""

from __future__ import annotations

import pytest
from tests.limits.conftest import Clock

from aiwire.limits import BudgetCheck, LimitState, PaceCheck, RateCheck


async def test_a_sliding_window_admits_exactly_its_limit_in_any_window(
    state: LimitState, clock: Clock
) -> None:
    times = []
    for i in range(300):  # 3 requests a second for 100 s against 120 per minute
        clock.now = 1_800_000_000.0 + i / 3
        v = await state.admit(f"r{i}", [RateCheck("k:r", 120, 1)], [], lease=60)
        if v.ok:
            times.append(clock.now)
    # 120 in the first 40 s, none until the first leaves the window at t=60, then 3/s again
    assert len(times) == 240
    assert max(sum(1 for u in times if t - 60 < u <= t) for t in times) == 120


async def test_a_refusal_says_when_it_would_fit_and_records_nothing(
    state: LimitState, clock: Clock
) -> None:
    for i in range(3):
        assert (await state.admit(f"a{i}", [RateCheck("k:t", 100, 30)], [], lease=60)).ok
        clock.now += 10
    v = await state.admit("b", [RateCheck("k:t", 100, 30)], [], lease=60)
    assert not v.ok and v.failed == 0
    assert v.retry_after == pytest.approx(30)  # the first entry (t=0) leaves at t=60; now t=30
    assert v.remaining == [pytest.approx(10)]
    clock.now += 30
    assert (await state.admit("c", [RateCheck("k:t", 100, 30)], [], lease=60)).ok
    # larger than the limit: waiting never helps
    big = await state.admit("d", [RateCheck("k:t", 100, 101)], [], lease=60)
    assert not big.ok and big.retry_after is None


async def test_an_entry_is_corrected_to_its_actual_cost(state: LimitState, clock: Clock) -> None:
    assert (await state.admit("x", [RateCheck("k:tok", 1000, 900)], [], lease=60)).ok
    assert not (await state.admit("y", [RateCheck("k:tok", 1000, 200)], [], lease=60)).ok
    await state.settle("x", [("k:tok", 100)], [])  # it used 100 tokens, not 900
    v = await state.admit("y", [RateCheck("k:tok", 1000, 200)], [], lease=60)
    assert v.ok and v.remaining == [pytest.approx(700)]


async def test_all_or_nothing_across_checks(state: LimitState, clock: Clock) -> None:
    rates = [RateCheck("k:r2", 10, 1), RateCheck("k:t2", 100, 60)]
    assert (await state.admit("a", rates, [], lease=60)).ok
    v = await state.admit("b", rates, [], lease=60)  # requests fit, tokens do not
    assert not v.ok and v.failed == 1
    v = await state.admit("c", [RateCheck("k:r2", 10, 1)], [], lease=60)
    assert v.remaining == [pytest.approx(8)]  # "b" left no request entry behind


async def test_budget_reservations_hold_until_settled(state: LimitState, clock: Clock) -> None:
    budget = BudgetCheck("b:1", limit=1.0, amount=0.4, initial=0.1, ttl=3600)
    assert (await state.admit("a", [], [budget], lease=60)).ok  # 0.1 + 0.4
    v = await state.admit("b", [], [budget], lease=60)  # 0.1 + 0.4 + 0.4
    assert v.ok and v.committed == [pytest.approx(0.9)]
    refused = await state.admit("c", [], [budget], lease=60)
    assert not refused.ok and refused.failed == 0 and refused.retry_after is None
    assert await state.settle("a", [], [("b:1", 0.05)]) == [pytest.approx(0.15)]
    assert (await state.admit("c", [], [budget], lease=60)).ok  # 0.15 + 0.4 + 0.4
    assert await state.spent("b:1") == pytest.approx(0.15)


async def test_a_lost_reservation_expires_with_its_lease(state: LimitState, clock: Clock) -> None:
    budget = BudgetCheck("b:2", limit=1.0, amount=0.8)
    assert (await state.admit("dead", [], [budget], lease=30)).ok  # its process dies
    assert not (await state.admit("x", [], [budget], lease=30)).ok
    clock.now += 31
    assert (await state.admit("x", [], [budget], lease=30)).ok


async def test_budget_refusal_records_no_rate_entry(state: LimitState, clock: Clock) -> None:
    full = BudgetCheck("b:3", limit=1.0, amount=2.0)
    v = await state.admit("a", [RateCheck("k:r3", 5, 1)], [full], lease=60)
    assert not v.ok and v.failed == 1
    v = await state.admit("b", [RateCheck("k:r3", 5, 1)], [], lease=60)
    assert v.remaining == [pytest.approx(4)]


async def test_pacing_allows_a_burst_then_paces_at_the_refill_rate(
    state: LimitState, clock: Clock
) -> None:
    dims = [PaceCheck(capacity=300, cost=1)]
    waits = [await state.pace("d:1", dims, max_wait=100) for _ in range(310)]
    assert waits[:300] == [pytest.approx(0.0, abs=1e-4)] * 300  # a full bucket, like a provider's
    assert waits[300] == pytest.approx(0.2, abs=1e-4)  # then one every 60/300 s, queued in order
    assert waits[309] == pytest.approx(2.0, abs=1e-4)
    assert await state.pace("d:1", dims, max_wait=1.0) is None  # beyond the queue's bound


async def test_pacing_tokens_and_provider_feedback(state: LimitState, clock: Clock) -> None:
    dims = [PaceCheck(300, 1), PaceCheck(10_000, 4_000)]
    assert await state.pace("d:2", dims, max_wait=60) == 0.0
    assert await state.pace("d:2", dims, max_wait=60) == 0.0
    # 8 000 of 10 000 tokens taken; the third waits for 2 000 more to refill (12 s)
    assert await state.pace("d:2", dims, max_wait=60) == pytest.approx(12.0)
    # the calls used 500 tokens each, not 4 000: refund 3 500 x 3
    await state.pace_feedback("d:2", corrections=[(1, 10_000, -3500)] * 3)
    assert await state.pace("d:2", dims, max_wait=60) == 0.0
    # the provider says only 100 tokens are left (someone else uses the same account)
    await state.pace_feedback("d:2", remaining=[(1, 10_000, 100)])
    assert await state.pace("d:2", dims, max_wait=60) == pytest.approx(23.4)


async def test_a_provider_429_slows_the_rate_then_it_recovers(
    state: LimitState, clock: Clock
) -> None:
    dims = [PaceCheck(600, 1)]
    assert await state.pace("d:3", dims, max_wait=60) == 0.0
    await state.pace_feedback("d:3", throttled=2.0)  # a stray 429: wait as asked, same rate
    first = await state.pace("d:3", dims, max_wait=60)
    assert first == pytest.approx(2.0 + 0.1, abs=1e-4)
    clock.now += 10
    await state.pace_feedback("d:3", throttled=2.0)  # a second within a minute: slow down
    second = await state.pace("d:3", dims, max_wait=60)
    assert second == pytest.approx(2.0 + 0.125, abs=1e-4)  # and at 80 % of the rate
    clock.now += 300  # long after: full rate again
    waits = [await state.pace("d:3", dims, max_wait=600) for _ in range(601)]
    assert waits[-1] == pytest.approx(0.1, abs=1e-4)  # the 601st of 600/min: one interval
