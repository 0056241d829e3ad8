"""Durations and times as the admin API and the CLI accept them (no web framework imported, so
``aiwire keys`` starts fast)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
#: Far enough for any real key lifetime; keeps ``now + duration`` from overflowing datetime.
_MAX_DURATION = timedelta(days=365 * 100)
_DURATION_HELP = "use a number with a unit: s, m, h, d or w (e.g. 90m, 12h, 30d), or plain seconds"


def parse_duration(value: str | float) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or plain seconds (``3600``, ``"3600"``).

    Shared by the admin API and the CLI so both accept exactly the same spellings. Raises
    ValueError saying what is accepted.
    """
    if isinstance(value, bool):  # bool is an int; ``true`` is certainly not a duration
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if seconds != seconds:  # NaN
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; durations count forward from now")
    if seconds > _MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than 100 years; leave the expiry out instead")
    return timedelta(seconds=seconds)


def parse_time(value: object) -> datetime:
    """An ISO 8601 time with a time zone, in UTC (ValueError saying what is expected)."""
    when = None
    if isinstance(value, str) and len(value) <= 64:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
    if when is None or when.utcoffset() is None:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time with a time zone, e.g. 2030-01-31T12:00:00Z"
        )
    try:
        return when.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable UTC time
        raise ValueError(f"{value!r} is out of range") from None


__all__ = ["parse_duration", "parse_time"]
