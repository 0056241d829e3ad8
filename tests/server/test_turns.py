"""TurnGate: at most a few requests start per event-loop turn; the rest keep their order."""

from __future__ import annotations

import asyncio

import pytest

from aiwire.server.turns import TurnGate


async def _turn() -> None:
    """Let one loop turn pass (callbacks scheduled now run before this returns)."""
    await asyncio.sleep(0)


async def test_a_burst_starts_a_few_per_turn_in_arrival_order() -> None:
    gate = TurnGate(per_turn=3)
    order: list[int] = []
    turn_of: dict[int, int] = {}
    turn = 0

    async def request(i: int) -> None:
        await gate.enter()
        order.append(i)
        turn_of[i] = turn

    tasks = [asyncio.ensure_future(request(i)) for i in range(10)]
    while not all(t.done() for t in tasks):
        await _turn()
        turn += 1
    assert order == list(range(10))  # first come, first started
    per_turn: dict[int, int] = {}
    for i in order:
        per_turn[turn_of[i]] = per_turn.get(turn_of[i], 0) + 1
    assert max(per_turn.values()) <= 2 * gate.per_turn  # bounded in every turn
    assert len(per_turn) >= 3  # the burst was spread over several turns


async def test_one_request_starts_without_waiting_for_a_turn() -> None:
    gate = TurnGate(per_turn=2)
    coro = gate.enter()
    with pytest.raises(StopIteration):  # completes without suspending
        coro.send(None)


async def test_a_request_that_goes_away_while_queued_does_not_use_a_start() -> None:
    gate = TurnGate(per_turn=1)
    first, gone, kept = (asyncio.ensure_future(gate.enter()) for _ in range(3))
    await asyncio.sleep(0)  # all three arrived in one turn: the first started, two queued
    assert first.done() and not gone.done() and not kept.done()
    gone.cancel()  # its client went away before its turn came
    await asyncio.sleep(0)  # the next turn's one start goes to the request still waiting ...
    await asyncio.sleep(0)  # ... which resumes in the turn after
    assert kept.done() and gone.cancelled()


async def test_in_flight_work_is_never_held_back() -> None:
    gate = TurnGate(per_turn=1)
    ticks = 0

    async def streaming() -> None:  # already started: does not pass the gate again
        nonlocal ticks
        for _ in range(20):
            ticks += 1
            await asyncio.sleep(0)

    async def newcomer() -> None:
        await gate.enter()

    stream = asyncio.ensure_future(streaming())
    crowd = [asyncio.ensure_future(newcomer()) for _ in range(50)]
    await stream
    assert ticks == 20 and sum(c.done() for c in crowd) < 50  # the stream ran ahead of the crowd
    await asyncio.gather(*crowd)


def test_per_turn_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TurnGate(per_turn=0)
