"""Durations in flow files: ``30s``, ``15m``, ``48h``, ``7d``, ``2w`` or plain seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)")


def seconds(value: Any) -> float:
    """``"90m"`` → 5400.0; ValueError saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.fullmatch(value.strip().lower())):
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    raise ValueError(
        f"{value!r} is not a duration; write a number with a unit (500ms, 30s, 15m, 48h, 7d, "
        "2w) or plain seconds"
    )


Duration = Annotated[float, BeforeValidator(seconds)]
