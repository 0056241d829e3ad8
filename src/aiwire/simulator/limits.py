"""Provider-style rate limiting: continuous-refill token buckets per (protocol, model).

Each bucket holds at most its per-minute capacity C and refills at C/60 per second. A request is
admitted when its request bucket holds 1 and its token bucket holds the estimate (prompt tokens
plus ``max_tokens``); the token charge is then corrected to the actual usage. Models without a
configured limit are never refused; their headers report generous defaults.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiwire.ratelimit import format_go_duration
from aiwire.simulator.config import ModelLimit

DEFAULT_RPM = 10_000
DEFAULT_TPM = 10_000_000


class Bucket:
    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = float(capacity)
        self.level = float(capacity)
        self.last = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.last)
        self.level = min(self.capacity, self.level + elapsed * self.capacity / 60.0)
        self.last = now

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket holds ``cost``."""
        return max(0.0, (cost - self.level) * 60.0 / self.capacity)

    def reset_seconds(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) * 60.0 / self.capacity)

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.level))


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused."""

    dimension: str  # "requests" | "tokens"
    limit: int
    used: int
    requested: int
    retry_after: float
    too_large: bool = False


@dataclass
class _Buckets:
    requests: Bucket
    tokens: Bucket
    enforced_requests: bool
    enforced_tokens: bool


class RateLimiter:
    def __init__(
        self, limits: Mapping[str, ModelLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._state: dict[tuple[str, str], _Buckets] = {}
        #: Requests admitted and refused (429), by (model, "admitted" | "refused").
        self.counts: Counter[tuple[str, str]] = Counter()

    def _buckets(self, protocol: str, model: str) -> _Buckets:
        key = (protocol, model)
        state = self._state.get(key)
        now = self._clock()
        if state is None:
            limit = self._limits.get(model) or self._limits.get("*") or ModelLimit()
            state = _Buckets(
                Bucket(limit.rpm or DEFAULT_RPM, now),
                Bucket(limit.tpm or DEFAULT_TPM, now),
                limit.rpm is not None,
                limit.tpm is not None,
            )
            self._state[key] = state
        state.requests.refill(now)
        state.tokens.refill(now)
        return state

    def admit(self, protocol: str, model: str, estimate: int, actual: int) -> Refusal | None:
        """Charge one request; ``None`` when admitted, else why not (nothing is charged)."""
        refusal = self._admit(protocol, model, estimate, actual)
        self.counts[(model, "refused" if refusal is not None else "admitted")] += 1
        return refusal

    def _admit(self, protocol: str, model: str, estimate: int, actual: int) -> Refusal | None:
        b = self._buckets(protocol, model)
        if b.enforced_requests and b.requests.level < 1:
            cap = int(b.requests.capacity)
            return Refusal("requests", cap, cap - b.requests.remaining, 1, b.requests.wait_for(1))
        if b.enforced_tokens:
            cap = int(b.tokens.capacity)
            used = cap - b.tokens.remaining
            if estimate > b.tokens.capacity:
                return Refusal("tokens", cap, used, estimate, 0.0, too_large=True)
            if b.tokens.level < estimate:
                return Refusal("tokens", cap, used, estimate, b.tokens.wait_for(estimate))
        b.requests.level -= 1
        b.tokens.level -= actual  # estimate charged and immediately corrected to actual usage
        return None

    def headers(self, protocol: str, model: str) -> dict[str, str]:
        """Rate-limit headers in the provider's format (Gemini sends none)."""
        b = self._buckets(protocol, model)
        if protocol in ("openai", "azure"):
            return openai_headers(b.requests, b.tokens)
        if protocol == "anthropic":
            return anthropic_headers(b.requests, b.tokens)
        return {}


def openai_headers(requests: Bucket, tokens: Bucket) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(int(requests.capacity)),
        "x-ratelimit-limit-tokens": str(int(tokens.capacity)),
        "x-ratelimit-remaining-requests": str(requests.remaining),
        "x-ratelimit-remaining-tokens": str(tokens.remaining),
        "x-ratelimit-reset-requests": format_go_duration(requests.reset_seconds()),
        "x-ratelimit-reset-tokens": format_go_duration(tokens.reset_seconds()),
    }


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_headers(requests: Bucket, tokens: Bucket) -> dict[str, str]:
    remaining = tokens.remaining
    if tokens.capacity >= 100_000:  # Anthropic rounds token counts to the nearest thousand;
        remaining = round(remaining, -3)  # small simulated limits are reported exactly
    out = {
        "anthropic-ratelimit-requests-limit": str(int(requests.capacity)),
        "anthropic-ratelimit-requests-remaining": str(requests.remaining),
        "anthropic-ratelimit-requests-reset": _rfc3339(requests.reset_seconds()),
    }
    for kind in ("tokens", "input-tokens", "output-tokens"):
        out[f"anthropic-ratelimit-{kind}-limit"] = str(int(tokens.capacity))
        out[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
        out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(tokens.reset_seconds())
    return out
