"""The batch store on SQLite and PostgreSQL: claims are disjoint under concurrency, leases hand
a dead worker's lines to another, an outcome is written once, finalization is race-safe."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tests.batch.conftest import chat_lines, jsonl

from aiwire.batch import lines
from aiwire.batch.records import BatchRecord, LineResult
from aiwire.batch.store import BatchStore, Draft
from aiwire.store import Database
from aiwire.store.writer import RequestLogRow


async def _batch(store: BatchStore, n: int) -> BatchRecord:
    data = jsonl(chat_lines(n))
    parsed = lines.parse_jsonl(data, endpoint=lines.CHAT, known_model=lambda m: True)
    source = await store.add_file(key_id="key_a", purpose="batch", filename="in", content=data)
    draft = Draft(
        endpoint=lines.CHAT, input_file_id=source.id, completion_window="1h", window_seconds=3600
    )
    return await store.create(draft, parsed.lines)


def _ok(tag: str) -> LineResult:
    return LineResult(
        state="succeeded",
        status_code=200,
        request_id=f"req_{tag}",
        response=b'{"tag":"' + tag.encode() + b'"}',
        input_tokens=3,
        output_tokens=4,
        cost_usd=0.5,
    )


async def test_concurrent_claims_from_two_workers_never_overlap(database: Database) -> None:
    other = Database(database.url)
    try:
        first, second = BatchStore(database), BatchStore(other)
        batch = await _batch(first, 120)

        async def drain(store: BatchStore, owner: str) -> list[int]:
            got: list[int] = []
            while claimed := await store.claim([batch.id], owner, 7, lease=60):
                got += [c.id for c in claimed]
            return got

        a, b = await asyncio.gather(drain(first, "w1"), drain(second, "w2"))
    finally:
        await other.aclose()
    assert not set(a) & set(b)
    assert len(a) + len(b) == 120 and len(set(a) | set(b)) == 120
    counts = await first.counts(batch.id)
    assert (counts.in_flight, counts.pending, counts.total) == (120, 0, 120)


async def test_an_expired_lease_hands_the_line_to_another_worker_and_only_it_records(
    database: Database,
) -> None:
    store = BatchStore(database)
    batch = await _batch(store, 1)
    (mine,) = await store.claim([batch.id], "dead", 5, lease=0.01)
    assert mine.attempts == 1
    assert await store.claim([batch.id], "alive", 5, lease=60) == []  # held: nothing to take
    await asyncio.sleep(0.05)
    assert await store.requeue_expired([batch.id]) == 1
    (theirs,) = await store.claim([batch.id], "alive", 5, lease=60)
    assert theirs.id == mine.id and theirs.attempts == 2
    log = RequestLogRow(f"{batch.id}:{mine.id}:1", "m", "/v1/batches", 200)
    # the dead worker comes back: its outcome is refused, its (billed) call still logged
    assert not await store.finish(mine, "dead", _ok("late"), log)
    assert await store.finish(theirs, "alive", _ok("winner"), None)
    done = await store.finalize(batch.id, "completed")
    assert done is not None and done.output_file_id is not None
    output = await store.file_content(done.output_file_id)
    assert output is not None and b'"winner"' in output and b'"late"' not in output
    async with database.engine.connect() as conn:
        from sqlalchemy import text

        rows = (await conn.execute(text("SELECT request_id FROM request_log"))).all()
    assert [r[0] for r in rows] == [f"{batch.id}:{mine.id}:1"]


async def test_a_requeued_line_waits_for_its_retry_time(database: Database) -> None:
    store = BatchStore(database)
    batch = await _batch(store, 1)
    (line,) = await store.claim([batch.id], "w", 5, lease=60)
    later = store.now() + timedelta(seconds=0.3)
    assert await store.finish(line, "w", LineResult(state="pending", not_before=later), None)
    assert await store.claim([batch.id], "w", 5, lease=60) == []
    await asyncio.sleep(0.35)
    (again,) = await store.claim([batch.id], "w", 5, lease=60)
    assert again.attempts == 2


async def test_racing_finalizers_keep_one_set_of_files(database: Database) -> None:
    other = Database(database.url)
    try:
        store = BatchStore(database)
        batch = await _batch(store, 3)
        for line in await store.claim([batch.id], "w", 5, lease=60):
            await store.finish(line, "w", _ok(line.custom_id), None)
        assert await store.transition(batch.id, "finalizing", from_=("in_progress",))
        assert not await store.transition(batch.id, "finalizing", from_=("in_progress",))
        results = await asyncio.gather(
            store.finalize(batch.id, "completed"), BatchStore(other).finalize(batch.id, "completed")
        )
    finally:
        await other.aclose()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    record = winners[0]
    assert record.status == "completed" and record.counts.succeeded == 3
    assert record.counts.cost_usd == pytest.approx(1.5)
    files = await store.files(key_id=None, everyone=True, purpose="batch_output", limit=10)
    assert [f.id for f in files] == [record.output_file_id]
    assert await store.finalize(batch.id, "completed") is None


async def test_cancel_moves_an_active_batch_once_and_refuses_a_final_one(
    database: Database,
) -> None:
    store = BatchStore(database)
    batch = await _batch(store, 2)
    cancelled = await store.cancel(batch.id)
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    again = await store.cancel(batch.id)
    assert again.cancelling_at == cancelled.cancelling_at
    assert await store.close_open_lines(batch.id, "cancelled", lines.CANCELLED_ERROR) == 2
    final = await store.finalize(batch.id, "cancelled")
    assert final is not None and final.error_file_id is not None and final.output_file_id is None
    assert final.counts.public() == {"total": 2, "completed": 0, "failed": 2}
    done = await _batch(store, 1)
    await store.close_open_lines(done.id, "expired", lines.EXPIRED_ERROR)
    await store.finalize(done.id, "expired")
    with pytest.raises(Exception, match="Cannot cancel a batch with status 'expired'"):
        await store.cancel(done.id)
