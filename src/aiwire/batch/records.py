"""What the batch store hands out: files, batches and claimed lines as plain values, and their
OpenAI-shaped public views."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiwire.store.models import Batch, BatchFile

Status = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
#: A batch in one of these never changes again.
TERMINAL: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
#: Batches a worker has something to do for.
ACTIVE: tuple[str, ...] = ("in_progress", "finalizing", "cancelling")
LINE_STATES = ("pending", "in_flight", "succeeded", "errored", "cancelled", "expired")
#: How a batch runs: through the router at full price, or as the provider's own batch
#: (``auto``, asked for, becomes ``native`` when the model and window allow it, else ``emulate``).
Mode = Literal["emulate", "native"]
MODES: tuple[str, ...] = ("emulate", "native", "auto")
#: The completion window the providers' batch APIs promise: ``auto`` goes native only if the
#: batch may take that long.
NATIVE_WINDOW = 24 * 3600.0

_WINDOW = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest completion window accepted (OpenAI accepts only 24h; shorter ones help tests
#: and small jobs, longer ones jobs that must stay under a low rate limit).
MAX_WINDOW = timedelta(days=7)


def window_seconds(window: str) -> float:
    """``24h``, ``30m``, ``90s``, ``2d`` in seconds; ValueError naming the accepted form."""
    match = _WINDOW.match(window)
    seconds = int(match.group(1)) * _UNIT[match.group(2)] if match else 0
    if not match or seconds <= 0 or seconds > MAX_WINDOW.total_seconds():
        raise ValueError(
            f"completion_window must be a duration such as 24h (OpenAI's only value), 30m or "
            f"90s, up to 7d; got {window!r}"
        )
    return float(seconds)


def _ts(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    key_id: str | None
    purpose: str
    filename: str
    size: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: BatchFile) -> FileRecord:
        return cls(row.id, row.key_id, row.purpose, row.filename, row.size, row.created_at)

    def public(self) -> dict[str, Any]:
        """OpenAI's file object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": _ts(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(slots=True)
class Counts:
    """Lines by state; ``total`` is their sum."""

    pending: int = 0
    in_flight: int = 0
    succeeded: int = 0
    errored: int = 0
    cancelled: int = 0
    expired: int = 0
    #: Spend and tokens of the lines that ran.
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, s) for s in LINE_STATES)

    @property
    def failed(self) -> int:
        return self.errored + self.cancelled + self.expired

    @property
    def open(self) -> int:
        """Lines that have not reached an outcome yet."""
        return self.pending + self.in_flight

    def public(self) -> dict[str, int]:
        return {"total": self.total, "completed": self.succeeded, "failed": self.failed}


@dataclass(slots=True)
class BatchRecord:
    id: str
    key_id: str | None
    team: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    mode: str
    model: str | None
    metadata: dict[str, Any] | None
    errors: dict[str, Any] | None
    total: int
    max_attempts: int
    estimate_usd: float
    output_file_id: str | None
    error_file_id: str | None
    native: dict[str, Any] | None
    run_key: str | None
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None = None
    finalizing_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    expired_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    counts: Counts = field(default_factory=Counts)

    @classmethod
    def from_row(cls, row: Batch, counts: Counts | None = None) -> BatchRecord:
        return cls(
            id=row.id,
            key_id=row.key_id,
            team=row.team,
            endpoint=row.endpoint,
            input_file_id=row.input_file_id,
            completion_window=row.completion_window,
            status=row.status,
            mode=row.mode,
            model=row.model,
            metadata=row.meta,
            errors=row.errors,
            total=row.total,
            max_attempts=row.max_attempts,
            estimate_usd=row.estimate_usd,
            output_file_id=row.output_file_id,
            error_file_id=row.error_file_id,
            native=row.native,
            run_key=row.run_key,
            created_at=row.created_at,
            expires_at=row.expires_at,
            in_progress_at=row.in_progress_at,
            finalizing_at=row.finalizing_at,
            completed_at=row.completed_at,
            failed_at=row.failed_at,
            expired_at=row.expired_at,
            cancelling_at=row.cancelling_at,
            cancelled_at=row.cancelled_at,
            counts=counts or Counts(),
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def public(self) -> dict[str, Any]:
        """OpenAI's batch object, plus ``mode`` and the spend so far (``cost_usd``): fields the
        openai SDK keeps as extras."""
        counts = self.counts
        out: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": _ts(self.created_at),
            "in_progress_at": _ts(self.in_progress_at),
            "expires_at": _ts(self.expires_at),
            "finalizing_at": _ts(self.finalizing_at),
            "completed_at": _ts(self.completed_at),
            "failed_at": _ts(self.failed_at),
            "expired_at": _ts(self.expired_at),
            "cancelling_at": _ts(self.cancelling_at),
            "cancelled_at": _ts(self.cancelled_at),
            "request_counts": counts.public()
            if self.status != "failed"
            else {"total": 0, "completed": 0, "failed": 0},
            "metadata": self.metadata,
            "model": self.model,
            "usage": {
                "input_tokens": counts.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": counts.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": counts.input_tokens + counts.output_tokens,
            },
            "mode": self.mode,
            "native": None
            if self.native is None
            else {k: self.native.get(k) for k in ("provider", "id", "status")},
            "cost_usd": round(counts.cost_usd, 10),
            "estimate_usd": round(self.estimate_usd, 10),
        }
        return out


@dataclass(frozen=True, slots=True)
class Claimed:
    """A line a worker claimed: it is ``in_flight`` under that worker's lease."""

    id: int
    batch_id: str
    idx: int
    custom_id: str
    model: str
    body: bytes
    attempts: int


@dataclass(slots=True)
class LineResult:
    """A line's outcome, as written in the transaction that ends (or re-queues) it.

    ``state`` ``pending`` puts the line back for another attempt after ``not_before``."""

    state: str
    status_code: int | None = None
    request_id: str | None = None
    response: bytes | None = None
    error: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    not_before: datetime | None = None
