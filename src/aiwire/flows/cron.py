"""A small five-field cron parser: when a scheduled flow runs next.

``minute hour day-of-month month day-of-week``, each field ``*``, a number, a range ``1-5``, a
list ``1,15``, a step ``*/15`` or ``9-17/2``; month and weekday names (``jan``, ``mon-fri``);
``0`` and ``7`` are both Sunday; ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
``@yearly``. As in Vixie cron, when both day fields are restricted a day matching either runs.
Times are evaluated in the schedule's time zone (default UTC), so ``0 9 * * mon-fri`` in
``Europe/Berlin`` follows daylight saving time.

Written here rather than taken from a dependency: it is 100 lines and the rest of croniter
(seconds, ``L``/``W``/``#``, randomised fields) is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: A schedule that never matches (``0 0 31 2 *``) is refused instead of searched forever.
_HORIZON = timedelta(days=366 * 5)


class CronError(ValueError):
    """A cron expression that does not parse; the message says which field and why."""


def _value(text: str, low: int, names: list[str] | None, name: str) -> int:
    word = text.lower()
    if names is not None and word in names:
        return names.index(word) + (1 if names is _MONTHS else 0)
    if not word.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    return int(word)


def _field(text: str, low: int, high: int, names: list[str] | None, name: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, low, names, name), _value(b, low, names, name)
        else:
            start = _value(body, low, names, name)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        expr = _MACROS.get(text.strip().lower(), text.strip())
        parts = expr.split()
        if len(parts) != 5:
            raise CronError(
                f"{text!r} is not a cron expression: expected 5 fields (minute hour "
                "day-of-month month day-of-week), e.g. '*/15 * * * *' or '0 9 * * mon-fri'"
            )
        sets = [
            _field(p, lo, hi, names, n)
            for p, (n, lo, hi, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(
            text, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*"
        )

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """The first matching minute strictly after ``after`` (aware), as an aware datetime."""
        local = after.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = local + _HORIZON
        while local < limit:
            if local.month not in self.months:
                month = local.month % 12 + 1
                year = local.year + (1 if month == 1 else 0)
                local = local.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(local):
                local = (local + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if local.hour not in self.hours:
                local = (local + timedelta(hours=1)).replace(minute=0)
                continue
            if local.minute not in self.minutes:
                local += timedelta(minutes=1)
                continue
            return local.astimezone(UTC)
        raise CronError(f"{self.text!r} never matches a real date")
