"""Rate-limit state reported by providers, and the parsers for their header formats.

OpenAI-style: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with Go-style durations
(``6m0s``, ``17ms``). Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
{limit,remaining,reset}`` with RFC 3339 reset times. Retry delays: ``retry-after-ms`` (preferred),
``retry-after`` (seconds or an HTTP date).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """Limits as the provider last reported them. Reset values are seconds from ``observed_at``."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    observed_at: float = 0.0

    @property
    def empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.limit_requests,
                self.remaining_requests,
                self.reset_requests,
                self.limit_tokens,
                self.remaining_tokens,
                self.reset_tokens,
            )
        )


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_go_duration(value: str) -> float | None:
    """``"1h2m3.5s"`` → 3723.5; ``"17ms"`` → 0.017; a bare number is seconds."""
    value = value.strip()
    if not value:
        return None
    if value[-1].isdigit():  # a bare number (no exception on the usual, suffixed, path)
        try:
            return float(value)
        except ValueError:
            return None
    if value.endswith("ms") and value[:-2].isdigit():  # the usual short reset: "17ms"
        return int(value[:-2]) / 1000
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(value):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if pos == len(value) else None


def parse_rfc3339_delay(value: str, now: float | None = None) -> float | None:
    """Seconds from now until an RFC 3339 timestamp (never negative)."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server-requested delay in seconds, or None when the response names none."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            try:
                when = parsedate_to_datetime(ra)
            except (TypeError, ValueError):
                return None
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_openai_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo:
    def dur(name: str) -> float | None:
        v = headers.get(name)
        return parse_go_duration(v) if v else None

    return RateLimitInfo(
        limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
        remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
        reset_requests=dur("x-ratelimit-reset-requests"),
        limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
        reset_tokens=dur("x-ratelimit-reset-tokens"),
        observed_at=time.time() if now is None else now,
    )


def parse_anthropic_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo:
    now = time.time() if now is None else now

    def reset(kind: str) -> float | None:
        v = headers.get(f"anthropic-ratelimit-{kind}-reset")
        return parse_rfc3339_delay(v, now) if v else None

    # `tokens` is the most restrictive limit in force; fall back to input tokens.
    tok = "tokens" if "anthropic-ratelimit-tokens-limit" in headers else "input-tokens"
    return RateLimitInfo(
        limit_requests=_int(headers.get("anthropic-ratelimit-requests-limit")),
        remaining_requests=_int(headers.get("anthropic-ratelimit-requests-remaining")),
        reset_requests=reset("requests"),
        limit_tokens=_int(headers.get(f"anthropic-ratelimit-{tok}-limit")),
        remaining_tokens=_int(headers.get(f"anthropic-ratelimit-{tok}-remaining")),
        reset_tokens=reset(tok),
        observed_at=now,
    )


def format_go_duration(seconds: float) -> str:
    """Render seconds the way OpenAI's reset headers do: ``6m0s``, ``1.5s``, ``17ms``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{round(secs, 3):g}s"


def retry_after_from_reset(info: RateLimitInfo | None) -> float | None:
    """For a 429 that names no delay: the time until the exhausted budget resets (the longest,
    when both are spent), else the nearest reset the provider reported."""
    if info is None:
        return None
    spent = [
        reset
        for remaining, reset in (
            (info.remaining_requests, info.reset_requests),
            (info.remaining_tokens, info.reset_tokens),
        )
        if remaining == 0 and reset is not None
    ]
    if spent:
        return max(spent)
    resets = [r for r in (info.reset_requests, info.reset_tokens) if r is not None]
    return min(resets) if resets else None
