"""Budget periods as windows of UTC time: which window a moment falls in, and when it ends.

A budget's spend is counted per window (``2026-12`` for a month, ``2026-W49`` for an ISO week,
``2026-12-02`` for a day, ``total`` for ever), so a new period starts from zero without anyone
resetting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["day", "week", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "total")


def window(period: Period, now: datetime) -> tuple[str, datetime, datetime | None]:
    """``(window id, start, end)`` of the window holding ``now`` (end is None for ``total``)."""
    now = now.astimezone(UTC)
    if period == "total":
        return "total", datetime(1970, 1, 1, tzinfo=UTC), None
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "day":
        return day.strftime("%Y-%m-%d"), day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())  # Monday
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}", start, start + timedelta(days=7)
    if period == "month":
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
        return start.strftime("%Y-%m"), start, end
    raise ValueError(f"unknown budget period {period!r}; known: {', '.join(PERIODS)}")
