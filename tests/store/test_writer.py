"""The background request-log writer: batching, idempotence, retries, shutdown, loss accounting."""

from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from aiwire.store import Database, LogWriter, RequestLog, RequestLogRow


def row(i: int, **kw: Any) -> RequestLogRow:
    fields: dict[str, Any] = {
        "request_id": f"req-{i}",
        "model": "gpt-4o-mini",
        "endpoint": "/v1/chat/completions",
        "status": 200,
        "input_tokens": i,
        "output_tokens": 2 * i,
    }
    return RequestLogRow(**(fields | kw))


async def count(db: Database, where: str = "") -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM request_log {where}")) or 0)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll a writer counter: the writer has no event to wait on for these, by design."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def rename_table(db: Database, old: str, new: str) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_ten_thousand_rows_from_a_tight_loop_are_written_exactly_once(
    database: Database,
) -> None:
    writer = LogWriter(database)
    n = 10_000
    for i in range(n):
        writer.submit(row(i))
    await writer.aclose()
    async with database.engine.connect() as conn:
        total, distinct, tokens = (
            await conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT request_id), sum(input_tokens) "
                    "FROM request_log"
                )
            )
        ).one()
    assert (total, distinct, tokens) == (n, n, n * (n - 1) // 2)
    assert writer.stats() == {
        "queued": 0,
        "written": n,
        "duplicates": 0,
        "dropped": 0,
        "rejected": 0,
        "failed_batches": 0,
    }


async def test_submit_is_synchronous_and_does_not_run_the_loop(database: Database) -> None:
    assert not inspect.iscoroutinefunction(LogWriter.submit)
    writer = LogWriter(database, batch_size=10)
    ran: list[bool] = []
    asyncio.get_running_loop().call_soon(ran.append, True)
    results = [writer.submit(row(i)) for i in range(25)]  # more than two full batches
    assert results == [None] * 25
    assert ran == [], "submit() let the event loop run"
    assert writer.queued == 25 and writer.written == 0
    await writer.aclose()
    assert ran == [True]
    assert await count(database) == 25


async def test_rows_are_written_in_the_background_without_flush(database: Database) -> None:
    writer = LogWriter(database, flush_interval=0.05)
    writer.submit(row(1))
    await wait_for(lambda: writer.written == 1)
    assert await count(database) == 1
    await writer.aclose()


async def test_flush_writes_everything_submitted_before_it(database: Database) -> None:
    writer = LogWriter(database, batch_size=100, flush_interval=60)
    for i in range(250):
        writer.submit(row(i))
    await writer.flush(timeout=10)
    assert await count(database) == 250
    assert writer.queued == 0
    await writer.aclose()


async def test_aclose_flushes_a_partial_batch(database: Database) -> None:
    writer = LogWriter(database, batch_size=500, flush_interval=60)
    for i in range(234):
        writer.submit(row(i))
    await asyncio.sleep(0.1)
    assert await count(database) == 0  # a partial batch waits for the (long) interval ...
    await writer.aclose()
    assert await count(database) == 234  # ... and is written at close
    assert writer.queued == 0


async def test_a_batch_retried_after_an_ambiguous_failure_is_not_duplicated(
    database: Database,
) -> None:
    """The commit reached the database but the acknowledgement was lost: the retry must not
    insert the rows a second time."""
    writer = LogWriter(database, batch_size=50, flush_interval=0.01)
    real_insert = writer._insert
    calls = 0

    async def commit_then_fail(params: list[dict[str, Any]]) -> int:
        nonlocal calls
        calls += 1
        inserted = await real_insert(params)
        if calls == 1:
            raise OperationalError("INSERT", {}, ConnectionResetError("connection lost"))
        return inserted

    writer._insert = commit_then_fail  # type: ignore[method-assign]
    for i in range(120):
        writer.submit(row(i))
    await writer.aclose()
    assert await count(database) == 120
    assert writer.failed_batches == 1
    # The writer could not know its first attempt landed: it sees those rows as duplicates.
    assert (writer.written, writer.duplicates) == (70, 50)
    assert writer.dropped == writer.rejected == 0


async def test_rows_wait_out_a_database_outage_and_are_written_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(database, batch_size=20, flush_interval=0.01, max_backoff=0.05)
    await rename_table(database, "request_log", "request_log_away")
    try:
        for i in range(50):
            writer.submit(row(i))
        await wait_for(lambda: writer.failed_batches >= 3)
        assert writer.written == 0 and writer.queued == 50
    finally:
        await rename_table(database, "request_log_away", "request_log")
    await writer.flush(timeout=10)
    async with database.engine.connect() as conn:
        total, distinct = (
            await conn.execute(text("SELECT count(*), count(DISTINCT request_id) FROM request_log"))
        ).one()
    assert (total, distinct) == (50, 50)
    assert writer.dropped == 0
    assert "retrying" in caplog.text
    await writer.aclose()


async def test_resubmitted_rows_are_ignored(database: Database) -> None:
    """Exactly one row per request id, even if a request is logged twice (e.g. replayed)."""
    first = LogWriter(database)
    for i in range(10):
        first.submit(row(i))
    await first.aclose()
    second = LogWriter(database)
    for i in range(5, 15):
        second.submit(row(i))
    await second.aclose()
    assert await count(database) == 15
    assert (second.written, second.duplicates) == (5, 5)


async def test_full_queue_drops_counts_and_logs_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(database, max_queue=10, flush_interval=60)
    with caplog.at_level(logging.ERROR, logger="aiwire.store.writer"):
        for i in range(25):
            writer.submit(row(i))
    assert writer.dropped == 15
    assert writer.queued == 10
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1, "one error per interval, not one per row"
    await writer.aclose()
    assert await count(database) == 10
    assert writer.written == 10


async def test_submit_after_close_is_counted_as_dropped(database: Database) -> None:
    writer = LogWriter(database)
    writer.submit(row(1))
    await writer.aclose()
    writer.submit(row(2))
    assert writer.dropped == 1
    assert await count(database) == 1


async def test_aclose_gives_up_after_its_timeout_and_accounts_for_the_rows(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(database, batch_size=10, flush_interval=0.01, max_backoff=0.05)
    await rename_table(database, "request_log", "request_log_away")
    try:
        for i in range(30):
            writer.submit(row(i))
        with caplog.at_level(logging.ERROR, logger="aiwire.store.writer"):
            await writer.aclose(timeout=0.3)
    finally:
        await rename_table(database, "request_log_away", "request_log")
    assert writer.dropped == 30
    assert writer.queued == 0
    assert "30 row(s) not confirmed written" in caplog.text


async def test_a_row_the_database_refuses_is_isolated_and_the_rest_written(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(database, batch_size=100)
    for i in range(40):
        writer.submit(row(i))
    writer.submit(
        RequestLogRow(
            request_id="bad",
            model="m",
            endpoint="e",
            status=200,
            ts=datetime(2025, 1, 1),  # naive: refused by the column type
        )
    )
    for i in range(40, 60):
        writer.submit(row(i))
    writer.submit(row(60, latency_ms={"not": "a number"}))  # refused by the driver
    writer.submit(row(61, model=None))  # refused by the database (NOT NULL)
    writer.submit(row(62))
    await writer.aclose(timeout=10)
    assert await count(database) == 61
    assert writer.rejected == 3
    assert writer.failed_batches == 0  # content errors are not retried ...
    assert writer.dropped == 0  # ... and do not hold up the good rows
    for request_id in ("bad", "req-60", "req-61"):
        assert f"row {request_id} rejected" in caplog.text


async def test_prompts_are_stored_only_when_configured(database: Database) -> None:
    plain = LogWriter(database)
    plain.submit(row(1, prompt="what is 2+2", completion="4"))
    await plain.aclose()
    keeping = LogWriter(database, store_content=True)
    keeping.submit(row(2, prompt="what is 3+3", completion="6"))
    await keeping.aclose()
    async with database.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT request_id, prompt, completion FROM request_log ORDER BY request_id")
            )
        ).all()
    assert [tuple(r) for r in rows] == [("req-1", None, None), ("req-2", "what is 3+3", "6")]


async def test_all_fields_round_trip(database: Database) -> None:
    ts = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    original = RequestLogRow(
        request_id="full",
        ts=ts,
        key_id="key_1",
        model="smart",
        deployment="smart@claude/x",
        provider="claude",
        endpoint="/v1/messages",
        status=429,
        error_type="rate_limit_error",
        input_tokens=10,
        output_tokens=20,
        cached_tokens=5,
        latency_ms=123.5,
        ttft_ms=45.25,
        retries=2,
        fallback=True,
        stream=True,
    )
    writer = LogWriter(database)
    writer.submit(original)
    await writer.aclose()
    async with database.session() as session:
        stored = (await session.scalars(select(RequestLog))).one()
    for name in RequestLogRow.__slots__:
        assert getattr(stored, name) == getattr(original, name), name
    assert stored.ts.tzinfo is not None


async def test_batches_of_any_size_use_a_few_statement_shapes(database: Database) -> None:
    # Every distinct multi-row INSERT is compiled, prepared and cached by SQLAlchemy and the
    # driver: batch sizes that vary with load must not mint a new statement each (memory).
    from sqlalchemy import event

    shapes: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO REQUEST_LOG"):
            shapes.add(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        writer = LogWriter(database, batch_size=300)
        i = 0
        for size in range(1, 301):  # 300 batches, each of a different size
            for _ in range(size):
                writer.submit(row(i))
                i += 1
            await writer.flush()
        await writer.aclose()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    assert await count(database) == i == 45_150 and writer.written == i
    assert 1 < len(shapes) <= 9  # 1, 2, 4, ..., 256 rows


async def test_a_full_batch_is_one_statement(database: Database) -> None:
    # Each statement is a round trip through the event loop (on SQLite, through aiosqlite's
    # thread): a saturated gateway needs few per batch or its log queue grows with the load.
    from sqlalchemy import event

    inserts: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO REQUEST_LOG"):
            inserts.append(statement.count("),"))

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        writer = LogWriter(database, batch_size=512)
        for i in range(512):
            writer.submit(row(i, ts=datetime(2025, 1, 1, 0, 0, i % 60, i, tzinfo=UTC)))
        await writer.aclose()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    assert len(inserts) == 1 and inserts[0] >= 511  # 512 value tuples in one statement
    assert writer.written == 512 == await count(database)
    async with database.session() as session:
        stored = await session.scalars(select(RequestLog).where(RequestLog.request_id == "req-7"))
        assert stored.one().ts == datetime(2025, 1, 1, 0, 0, 7, 7, tzinfo=UTC)
