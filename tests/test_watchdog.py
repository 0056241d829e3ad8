"""The stream watchdog: one timer per stream, deadlines per wait, nothing counted while idle."""

from __future__ import annotations

import asyncio

import pytest

from aiwire.watchdog import Watchdog


async def wait(dog: Watchdog, seconds: float, work: float) -> str:
    dog.arm(seconds)
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        if dog.expired():
            return "timed out"
        raise
    dog.disarm()
    return "ok"


async def test_a_wait_longer_than_its_deadline_is_cut() -> None:
    dog = Watchdog()
    assert await wait(dog, 0.05, 0.01) == "ok"
    started = asyncio.get_running_loop().time()
    assert await wait(dog, 0.05, 5) == "timed out"
    assert asyncio.get_running_loop().time() - started < 0.5
    dog.close()


async def test_time_while_disarmed_never_counts() -> None:
    dog = Watchdog()
    for _ in range(3):
        assert await wait(dog, 0.05, 0.01) == "ok"
        await asyncio.sleep(0.08)  # the consumer is slow: longer than the deadline, disarmed
    dog.close()


async def test_a_shorter_deadline_after_a_longer_one_is_kept() -> None:
    dog = Watchdog()
    assert await wait(dog, 10, 0.01) == "ok"  # first byte: generous
    started = asyncio.get_running_loop().time()
    assert await wait(dog, 0.05, 5) == "timed out"  # idle gap: short, re-armed earlier
    assert asyncio.get_running_loop().time() - started < 0.5
    dog.close()


async def test_total_bounds_every_wait() -> None:
    dog = Watchdog(total=0.1)
    assert await wait(dog, 10, 0.02) == "ok"
    assert await wait(dog, 10, 5) == "timed out"
    assert dog.past_end
    dog.close()


async def test_an_outside_cancellation_is_never_swallowed() -> None:
    async def worker() -> str:
        dog = Watchdog()
        try:
            return await wait(dog, 10, 5)
        finally:
            dog.close()

    task = asyncio.ensure_future(worker())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_closed_watchdog_fires_nothing() -> None:
    dog = Watchdog()
    dog.arm(0.01)
    dog.close()
    await asyncio.sleep(0.05)  # had the timer survived, this task would be cancelled
