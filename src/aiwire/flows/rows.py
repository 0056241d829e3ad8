"""Small shared helpers of the flow store: the clock, ids, and JSON-safe values."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

#: Record states that end a record's processing.
TERMINAL = ("done", "filtered", "rejected", "dead", "skipped")


def now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (datetimes as ISO text, Decimals as numbers)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return float(obj)
        if isinstance(obj, bytes):
            return obj.decode("utf-8", "replace")
        return str(obj)

    return orjson.loads(orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS))
