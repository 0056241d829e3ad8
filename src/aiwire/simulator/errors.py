"""Error responses in each provider's shape (reference §1.5, §2.5, §3.5, §4.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from starlette.responses import Response

from aiwire.ratelimit import format_go_duration
from aiwire.simulator.faults import Fault
from aiwire.simulator.limits import Refusal
from aiwire.simulator.wire import json_response

Protocol = Literal["openai", "azure", "anthropic", "gemini"]

_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(
    status: int,
    message: str,
    type_: str | None = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status, headers)


def anthropic_error(
    status: int, message: str, type_: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    headers = dict(headers or {})
    body = {
        "type": "error",
        "error": {"type": type_ or _ANTHROPIC_TYPE.get(status, "api_error"), "message": message},
        "request_id": headers.get("request-id"),
    }
    return json_response(body, status, headers)


def gemini_error(
    status: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    grpc_status: str | None = None,
) -> Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": grpc_status or _GRPC_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return json_response({"error": error}, status, headers)


def invalid_request(
    protocol: Protocol,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 400,
    code: str | None = None,
) -> Response:
    """A 4xx for a malformed request, in the protocol's shape."""
    if protocol == "anthropic":
        return anthropic_error(status, message, headers=headers)
    if protocol == "gemini":
        return gemini_error(status, message, headers=headers)
    return openai_error(status, message, "invalid_request_error", param, code, headers)


def auth_error(protocol: Protocol, headers: Mapping[str, str], missing: bool = False) -> Response:
    if protocol == "anthropic":
        msg = "x-api-key header is required" if missing else "invalid x-api-key"
        return anthropic_error(401, msg, headers=headers)
    if protocol == "gemini":
        if missing:
            return gemini_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                headers=headers,
            )
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return gemini_error(401, "API key not valid. Please pass a valid API key.", [info], headers)
    if protocol == "azure":
        msg = (
            "Access denied due to missing subscription key. Make sure to include subscription "
            "key when making requests to an API."
            if missing
            else "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
        return json_response({"error": {"code": "401", "message": msg}}, 401, headers)
    if missing:
        msg = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return openai_error(401, msg, "invalid_request_error", None, None, headers)
    msg = (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return openai_error(401, msg, "invalid_request_error", None, "invalid_api_key", headers)


def rate_limited(
    protocol: Protocol, model: str, refusal: Refusal, headers: Mapping[str, str]
) -> Response:
    """The provider's 429 for an exceeded (real or injected) limit."""
    out = dict(headers)
    wait = refusal.retry_after
    per_min = (
        "requests per min (RPM)" if refusal.dimension == "requests" else "tokens per min (TPM)"
    )
    if not refusal.too_large:
        out["retry-after"] = str(math.ceil(wait))
        if protocol in ("openai", "azure"):
            out["retry-after-ms"] = str(round(wait * 1000))
    if protocol in ("openai", "azure"):
        if refusal.too_large:
            msg = (
                f"Request too large for {model} in organization org-simulator on {per_min}: "
                f"Limit {refusal.limit}, Requested {refusal.requested}. The input or output "
                "tokens must be reduced in order to run successfully."
            )
        else:
            msg = (
                f"Rate limit reached for {model} in organization org-simulator on {per_min}: "
                f"Limit {refusal.limit}, Used {refusal.used}, Requested {refusal.requested}. "
                f"Please try again in {format_go_duration(wait)}. Visit "
                "https://platform.openai.com/account/rate-limits to learn more."
            )
        return openai_error(429, msg, refusal.dimension, None, "rate_limit_exceeded", out)
    if protocol == "anthropic":
        unit = "requests" if refusal.dimension == "requests" else "tokens"
        msg = (
            f"This request would exceed your organization's rate limit of {refusal.limit} "
            f"{unit} per minute (model: {model}). For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later."
        )
        return anthropic_error(429, msg, "rate_limit_error", out)
    metric, quota_id = (
        ("generate_content_requests", "GenerateRequestsPerMinutePerProjectPerModel")
        if refusal.dimension == "requests"
        else ("generate_content_input_token_count", "GenerateContentInputTokensPerModelPerMinute")
    )
    delay = math.ceil(wait)
    msg = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: generativelanguage.googleapis.com/{metric}, "
        f"limit: {refusal.limit}, model: {model}\nPlease retry in {wait:.1f}s."
    )
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                    "quotaId": quota_id,
                    "quotaDimensions": {"model": model, "location": "global"},
                    "quotaValue": str(refusal.limit),
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if not refusal.too_large:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"}
        )
    # Gemini sends no retry-after header: the delay is in RetryInfo only.
    gemini_headers = {k: v for k, v in out.items() if k not in ("retry-after", "retry-after-ms")}
    return gemini_error(429, msg, details, gemini_headers)


def fault_error(
    protocol: Protocol, fault: Fault, model: str, headers: Mapping[str, str]
) -> Response:
    """The error response an injected error fault stands for."""
    kind = fault.kind
    if kind == "429":
        wait = 1.0 if fault.retry_after is None else fault.retry_after
        out = dict(headers)
        if protocol in ("openai", "azure"):
            out["x-ratelimit-remaining-requests"] = "0"
            out["x-ratelimit-reset-requests"] = format_go_duration(wait)
        elif protocol == "anthropic":
            out["anthropic-ratelimit-requests-remaining"] = "0"
        refusal = Refusal("requests", _limit_of(out), _limit_of(out), 1, wait)
        return rate_limited(protocol, model, refusal, out)
    if kind == "401":
        return auth_error(protocol, headers)
    status = int(kind)
    if protocol == "anthropic":
        messages = {500: "Internal server error", 503: "Service unavailable", 529: "Overloaded"}
        return anthropic_error(status, messages[status], headers=headers)
    if protocol == "gemini":
        messages = {
            500: "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
            503: "The model is overloaded. Please try again later.",
            529: "The service is overloaded. Please try again later.",
        }
        return gemini_error(status, messages[status], headers=headers)
    messages = {
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The engine is currently overloaded, please try again later.",
        529: "The service is overloaded, please try again later.",
    }
    return openai_error(status, messages[status], "server_error", None, None, headers)


def _limit_of(headers: Mapping[str, str]) -> int:
    for name in ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"):
        if name in headers:
            return int(headers[name])
    return 10_000
