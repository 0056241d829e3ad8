"""GcPacer: the collector on the gateway's schedule still frees every reference cycle."""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiwire.server.gcpace import GcPacer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


async def passes(pacer: GcPacer, young: int = 2) -> None:
    """Wait until the pacer has made ``young`` more young passes (timers: no event to wait on)."""
    target = pacer.young_passes + young
    async with asyncio.timeout(5):
        while pacer.young_passes < target:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


async def test_takes_over_from_automatic_collection_and_gives_it_back() -> None:
    assert gc.isenabled()
    pacer = GcPacer(interval=0.01, full_every=60)
    pacer.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        await passes(pacer, 3)
    finally:
        pacer.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


async def test_a_young_cycle_is_freed_by_the_next_young_pass() -> None:
    pacer = GcPacer(interval=0.01, full_every=60)
    pacer.start()
    try:
        ref = cycle()[1]  # unreachable at once
        await passes(pacer)
        assert ref() is None
    finally:
        pacer.stop()


async def test_a_cycle_among_set_aside_objects_is_freed_by_the_full_pass() -> None:
    pacer = GcPacer(interval=0.01, full_every=1.0)
    pacer.start()
    try:
        node, ref = cycle()
        await passes(pacer)  # survives young passes: set aside (frozen)
        del node  # now unreachable, but only a full pass looks at set-aside objects
        await passes(pacer)
        assert ref() is not None and pacer.full_passes == 0
        async with asyncio.timeout(5):
            while pacer.full_passes == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert ref() is None
    finally:
        pacer.stop()


async def test_objects_set_aside_are_still_freed_by_reference_counting() -> None:
    pacer = GcPacer(interval=0.01, full_every=60)
    pacer.start()
    try:
        node = Node()
        ref = weakref.ref(node)
        await passes(pacer)  # set aside
        del node  # no cycle: freed at once, no collection needed
        assert ref() is None
    finally:
        pacer.stop()


async def test_growth_of_what_is_set_aside_brings_the_full_pass_forward() -> None:
    pacer = GcPacer(interval=0.01, full_every=600, slack=1000, check_every=0.02)
    pacer.start()
    try:
        kept = gc.get_freeze_count()  # what the start-up pass set aside (this whole process)
        nodes = [cycle()[0] for _ in range(10)]
        refs = [weakref.ref(n) for n in nodes]
        await passes(pacer)  # set aside by young passes
        del nodes  # ten cycles among set-aside objects: unreachable now
        grown = [Node() for _ in range(kept + 5000)]  # more than doubles what is set aside
        async with asyncio.timeout(5):  # set aside, past twice what was kept + slack: a full pass
            while pacer.full_passes == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert all(r() is None for r in refs)
        del grown
    finally:
        pacer.stop()
