"""Parsing of the providers' rate-limit and retry headers."""

from __future__ import annotations

import pytest

from aiwire.ratelimit import (
    format_go_duration,
    parse_anthropic_headers,
    parse_go_duration,
    parse_openai_headers,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("17ms", 0.017),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("2m59.56s", 179.56),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
        ("5x", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    got = parse_go_duration(text)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize("seconds", [0.017, 1.0, 1.5, 59.0, 360.0, 3723.5])
def test_go_duration_round_trip(seconds: float) -> None:
    assert parse_go_duration(format_go_duration(seconds)) == pytest.approx(seconds, abs=1e-3)


def test_retry_after_prefers_ms_then_seconds_then_http_date() -> None:
    assert parse_retry_after({"retry-after-ms": "1574", "retry-after": "9"}) == pytest.approx(1.574)
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, now) == 10.0
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({}) is None


def test_openai_headers() -> None:
    info = parse_openai_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        now=5.0,
    )
    assert (info.limit_requests, info.remaining_requests, info.reset_requests) == (60, 59, 1.0)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens) == (150000, 149984, 360.0)
    assert info.observed_at == 5.0 and not info.empty
    assert parse_openai_headers({}).empty


def test_anthropic_headers_reset_is_rfc3339() -> None:
    now = 1_700_000_000.0
    info = parse_anthropic_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:21Z",
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
            "anthropic-ratelimit-input-tokens-reset": "2023-11-14T22:13:50+00:00",
        },
        now=now,
    )
    assert (info.limit_requests, info.remaining_requests) == (50, 49)
    assert info.reset_requests == pytest.approx(1.0)
    assert (info.limit_tokens, info.remaining_tokens) == (40000, 39000)
    assert info.reset_tokens == pytest.approx(30.0)


def test_retry_after_from_reset_prefers_the_spent_budget() -> None:
    from aiwire.ratelimit import RateLimitInfo, retry_after_from_reset

    spent_tokens = RateLimitInfo(
        remaining_requests=5, reset_requests=0.2, remaining_tokens=0, reset_tokens=3.0
    )
    assert retry_after_from_reset(spent_tokens) == 3.0
    both = RateLimitInfo(
        remaining_requests=0, reset_requests=4.0, remaining_tokens=0, reset_tokens=3.0
    )
    assert retry_after_from_reset(both) == 4.0
    unknown = RateLimitInfo(reset_requests=0.5, reset_tokens=9.0)
    assert retry_after_from_reset(unknown) == 0.5
    assert retry_after_from_reset(RateLimitInfo()) is None
    assert retry_after_from_reset(None) is None
