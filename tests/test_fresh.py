"""Fresh: kept values, re-read in the background from half their ttl, waited for past it."""

from __future__ import annotations

import asyncio

import pytest

from aiwire.fresh import Fresh


class Store:
    def __init__(self) -> None:
        self.value = "v1"
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def read(self) -> str:
        self.reads += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return self.value


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


def fresh(clock: list[float], ttl: float = 2.0) -> Fresh[str, str]:
    return Fresh(ttl, what="test values", clock=lambda: clock[0])


async def test_young_values_are_served_without_a_read(clock: list[float]) -> None:
    cache, store = fresh(clock), Store()
    assert await cache.get("k", store.read) == "v1"
    clock[0] = 0.9
    assert await cache.get("k", store.read) == "v1"
    assert store.reads == 1


async def test_from_half_the_ttl_callers_do_not_wait_for_the_re_read(clock: list[float]) -> None:
    cache, store = fresh(clock), Store()
    await cache.get("k", store.read)
    store.value, clock[0] = "v2", 1.5
    store.gate.clear()  # the store is slow: the re-read hangs
    for _ in range(100):  # none of these waits, and they share one background read
        assert await asyncio.wait_for(cache.get("k", store.read), 0.1) == "v1"
    assert store.reads == 2
    store.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get("k", store.read) == "v2"


async def test_past_the_ttl_callers_wait_and_share_one_read(clock: list[float]) -> None:
    cache, store = fresh(clock), Store()
    await cache.get("k", store.read)
    store.value, clock[0] = "revoked", 2.0
    store.gate.clear()
    waiting = [asyncio.ensure_future(cache.get("k", store.read)) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiting)  # the old value is not served past ttl
    store.gate.set()
    assert await asyncio.gather(*waiting) == ["revoked"] * 20
    assert store.reads == 2


async def test_a_caller_going_away_does_not_cancel_the_shared_read(clock: list[float]) -> None:
    cache, store = fresh(clock), Store()
    store.gate.clear()
    first = asyncio.ensure_future(cache.get("k", store.read))
    second = asyncio.ensure_future(cache.get("k", store.read))
    await asyncio.sleep(0)
    first.cancel()
    store.gate.set()
    assert await second == "v1"
    assert store.reads == 1


async def test_forget_drops_values_and_reads_under_way(clock: list[float]) -> None:
    cache, store = fresh(clock), Store()
    await cache.get("k", store.read)
    clock[0] = 1.5
    store.gate.clear()
    await cache.get("k", store.read)  # starts a background read of the old value
    store.value = "changed here"
    cache.forget()
    assert len(cache) == 0
    reader = asyncio.ensure_future(cache.get("k", store.read))  # waits: nothing kept
    await asyncio.sleep(0)
    store.gate.set()
    assert await reader == "changed here"
    await asyncio.sleep(0)
    assert await cache.get("k", store.read) == "changed here"  # the stale read was not kept


async def test_a_failed_background_read_is_logged_and_the_value_served_until_ttl(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    cache, store = fresh(clock), Store()
    await cache.get("k", store.read)
    store.fail, clock[0] = True, 1.5
    assert await cache.get("k", store.read) == "v1"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert "re-reading test values in the background failed: ConnectionError" in caplog.text
    assert "store down" not in caplog.text
    clock[0] = 2.5
    with pytest.raises(ConnectionError):
        await cache.get("k", store.read)


async def test_size_is_bounded(clock: list[float]) -> None:
    cache: Fresh[int, int] = Fresh(2.0, what="numbers", max_entries=3, clock=lambda: clock[0])
    for i in range(10):

        async def read(i: int = i) -> int:
            return i

        assert await cache.get(i, read) == i
    assert len(cache) == 3


async def test_the_budget_book_does_not_make_requests_wait_for_its_re_read() -> None:
    from aiwire.limits.admission import BudgetBook

    class SlowBudgets:
        def __init__(self) -> None:
            self.gate = asyncio.Event()
            self.gate.set()
            self.lists = 0

        async def list(self) -> list[object]:
            self.lists += 1
            await self.gate.wait()
            return []

    store = SlowBudgets()
    book = BudgetBook(store, refresh=0.2)  # type: ignore[arg-type]
    await book.current()  # the first read is waited for
    await asyncio.sleep(0.15)  # past half the refresh
    store.gate.clear()
    await asyncio.wait_for(book.current(), 0.05)  # served at once; the re-read hangs behind
    assert store.lists == 2
    book.invalidate()  # a change on this replica: the next request waits for the new view
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(book.current(), 0.05)


async def test_requests_starting_a_budget_window_together_share_one_read_of_its_spend() -> None:
    from datetime import UTC, datetime

    from aiwire.limits.admission import BudgetBook

    class Spend:
        def __init__(self) -> None:
            self.reads = 0
            self.gate = asyncio.Event()

        async def list(self) -> list[object]:
            return []

        async def spent(self, budget: object, start: datetime) -> float:
            self.reads += 1
            await self.gate.wait()
            return 1.25

    store = Spend()
    book = BudgetBook(store)  # type: ignore[arg-type]
    budget_id = type("Budget", (), {"id": "bud_1"})()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    first = [
        asyncio.ensure_future(book.initial(budget_id, "2026-12", start))  # type: ignore[arg-type]
        for _ in range(50)
    ]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*first) == [1.25] * 50
    assert store.reads == 1
    assert await book.initial(budget_id, "2026-12", start) == 1.25  # type: ignore[arg-type]
    assert store.reads == 1
