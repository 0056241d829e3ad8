"""Prompt and completion content in the request log: kept only for keys that opt in, and only
for as long as they say.

Two switches decide whether a request's content is stored: ``server.store_content`` (the
deployment allows content in the request log at all; off by default) and the key's own
``log_content: true`` option (this key's traffic may be kept). :class:`ContentPolicy` is a
gateway observer that removes the content of every other row before the log writer writes it
(rows of the master key included). Everything else in the row stays: usage reports need it.

``retention_days`` (a key option; ``logging.content_retention_days`` for keys without one)
bounds how long content stays: :func:`purge_content` clears the content of older rows, and
:class:`PurgeJob` runs it in the background every ``logging.purge_interval_seconds``. A purge
that cleared anything is recorded in the audit trail (``logs.purge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update

from aiwire.observability.directory import KeyDirectory
from aiwire.store import audit
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore
from aiwire.store.models import RequestLog
from aiwire.store.writer import RequestLogRow

log = logging.getLogger("aiwire.retention")

#: Who background purges are recorded as in the audit trail.
SYSTEM_ACTOR = "aiwire:retention"


class ContentPolicy:
    """Drops a row's prompt and completion unless its key has ``log_content: true`` (a
    ``Gateway.observers`` callback: observers run before the writer's background task reads
    the row)."""

    def __init__(self, directory: KeyDirectory) -> None:
        self.directory = directory

    def allows(self, key_id: str | None) -> bool:
        if key_id is None:
            return False
        info = self.directory.get(key_id)
        if info is None:
            # Not known yet (created a moment ago, maybe elsewhere): keep nothing this time,
            # and learn the key for its next requests.
            with contextlib.suppress(RuntimeError):
                self.directory.resolve(key_id, lambda _: None)
            return False
        return info.options.get("log_content") is True

    def observe(self, row: RequestLogRow) -> None:
        if (row.prompt is not None or row.completion is not None) and not self.allows(row.key_id):
            row.prompt = row.completion = None


@dataclass(frozen=True)
class PurgeReport:
    rows: int
    #: Keys with their own ``retention_days``.
    keys: int
    default_days: int

    def public(self) -> dict[str, Any]:
        return {"rows": self.rows, "keys": self.keys, "default_days": self.default_days}


def _has_content() -> Any:
    return or_(RequestLog.prompt.is_not(None), RequestLog.completion.is_not(None))


async def purge_content(
    database: Database,
    *,
    default_days: int,
    actor: str,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """Clear prompts and completions older than each key's ``retention_days`` (others:
    ``default_days``); the whole purge is one transaction, audited when it cleared a row."""
    now = now or datetime.now(UTC)
    records = await KeyStore(database).list()
    own: dict[str, int] = {}
    for r in records:
        days = r.options.get("retention_days")
        if isinstance(days, int) and not isinstance(days, bool):
            own[r.id] = max(0, days)
    rows = 0
    async with database.session() as session:
        for key_id, days in own.items():
            where = [RequestLog.key_id == key_id, RequestLog.ts < now - timedelta(days=days)]
            rows += await _clear(session, where, dry_run)
        where = [RequestLog.ts < now - timedelta(days=default_days)]
        if own:
            where.append(or_(RequestLog.key_id.is_(None), RequestLog.key_id.not_in(list(own))))
        rows += await _clear(session, where, dry_run)
        report = PurgeReport(rows, len(own), default_days)
        if rows and not dry_run:
            await audit.append(session, actor, "logs.purge", "request_log", None, report.public())
    return report


async def _clear(session: Any, where: list[Any], dry_run: bool) -> int:
    if dry_run:
        count = await session.scalar(
            select(func.count()).select_from(RequestLog).where(*where, _has_content())
        )
        return int(count or 0)
    result = await session.execute(
        update(RequestLog)
        .where(*where, _has_content())
        .values(prompt=None, completion=None)
        .execution_options(synchronize_session=False)
    )
    return int(cast("CursorResult[Any]", result).rowcount or 0)


class PurgeJob:
    """:func:`purge_content` every ``interval`` seconds, the first time ``first_delay`` seconds
    after start-up (not during it: the store has enough to do then)."""

    def __init__(
        self,
        database: Database,
        *,
        default_days: int,
        interval: float,
        first_delay: float = 60.0,
    ) -> None:
        self.database = database
        self.default_days = default_days
        self.interval = interval
        self.first_delay = min(first_delay, interval)
        self._task: asyncio.Task[None] | None = None
        #: The last run's report (None before the first).
        self.last: PurgeReport | None = None

    async def run_once(self) -> PurgeReport | None:
        try:
            self.last = await purge_content(
                self.database, default_days=self.default_days, actor=SYSTEM_ACTOR
            )
        except Exception as exc:  # the store may be down: try again next time
            log.warning("purging expired request content failed: %s", self.database.describe(exc))
            return None
        if self.last.rows:
            log.info("purged the content of %d request-log row(s)", self.last.rows)
        return self.last

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
