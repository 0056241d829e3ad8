"""Alerts to webhooks: generic JSON or a Slack-compatible payload, de-duplicated.

``Alerts.fire(kind, key, text, details)`` returns at once; delivery happens in the background
with a few retries. The same ``(kind, key)`` fires at most once per ``dedupe_seconds`` - across
replicas too when a shared ``claim`` function (Redis ``SET NX EX``) is given. A webhook URL may
itself be a secret (Slack's are): it is never logged, only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiwire import errors, netguard

log = logging.getLogger("aiwire.alerts")

Claim = Callable[[str, float], Awaitable[bool]]


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    format: Literal["json", "slack"] = "json"
    #: Alert kinds sent to this webhook (empty: all).
    kinds: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


class CredentialRule(BaseModel):
    """A provider answered 401/403: its key expired, was revoked or rotated."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class ErrorRateRule(BaseModel):
    """A deployment's share of failed upstream attempts over a sliding window."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Fires when failed / all attempts reaches this share ...
    threshold: float = Field(default=0.5, gt=0, le=1)
    #: ... over the last this many seconds ...
    window_seconds: float = Field(default=300.0, gt=0)
    #: ... once at least this many attempts were made in the window.
    min_attempts: int = Field(default=20, ge=1)


class SpendAnomalyRule(BaseModel):
    """Spend (all keys together, and each key) in the current bucket against the average of
    the buckets before it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Fires when the current bucket's spend reaches ``factor`` x the trailing average ...
    factor: float = Field(default=3.0, gt=1)
    bucket_seconds: float = Field(default=300.0, gt=0)
    #: ... of this many earlier buckets ...
    trailing_buckets: int = Field(default=12, ge=1)
    #: ... and is at least this many USD (small sums are noise).
    min_usd: float = Field(default=1.0, ge=0)


class AlertRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: CredentialRule = Field(default_factory=CredentialRule)
    error_rate: ErrorRateRule = Field(default_factory=ErrorRateRule)
    spend_anomaly: SpendAnomalyRule = Field(default_factory=SpendAnomalyRule)


#: Alerts kept in :attr:`Alerts.fired` (the oldest dropped first).
KEEP_FIRED = 1000
#: De-duplication entries kept before those past their window are dropped.
_MAX_SEEN = 10_000


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhooks: list[Webhook] = Field(default_factory=list)
    dedupe_seconds: float = Field(default=3600.0, ge=0)
    #: What fires alerts besides budgets' soft limits and deprecated models (always on).
    rules: AlertRules = Field(default_factory=AlertRules)
    #: Webhook destinations allowed although not public (the SSRF guard refuses loopback,
    #: private and link-local ones otherwise): hosts, ``*.domain``, IP addresses, CIDR blocks.
    allow_hosts: list[str] = Field(default_factory=list)

    @field_validator("allow_hosts")
    @classmethod
    def _allow_list(cls, value: list[str]) -> list[str]:
        try:
            netguard.AllowList.parse(value)
        except errors.ConfigError as exc:
            raise ValueError(exc.message) from None
        return value


class Alerts:
    def __init__(
        self,
        config: AlertsConfig | None = None,
        *,
        claim: Claim | None = None,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        self.config = config or AlertsConfig()
        self._claim = claim
        self._seen: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeout = timeout
        self._retries = retries
        #: The latest alerts fired (after de-duplication), newest last, at most ``KEEP_FIRED``.
        self.fired: list[dict[str, Any]] = []

    async def fire(self, kind: str, key: str, text: str, details: dict[str, Any]) -> bool:
        """Send an alert unless the same one went out within the de-dup window. Returns
        whether it was sent (queued for delivery)."""
        window = self.config.dedupe_seconds
        now = time.monotonic()
        seen = self._seen.get((kind, key))
        if seen is not None and now - seen < window:
            return False
        if self._claim is not None and not await self._claim(f"alert:{kind}:{key}", window):
            self._seen[(kind, key)] = now
            return False
        self._seen[(kind, key)] = now
        if len(self._seen) > _MAX_SEEN:  # forget what is past its window: memory stays bounded
            self._seen = {k: t for k, t in self._seen.items() if now - t < window}
        alert = {
            "kind": kind,
            "key": key,
            "text": text,
            "details": details,
            "at": datetime.now(UTC).isoformat(),
        }
        self.fired.append(alert)
        if len(self.fired) > KEEP_FIRED:
            del self.fired[0]
        log.warning("alert %s: %s", kind, text)
        for hook in self.config.webhooks:
            if hook.kinds and kind not in hook.kinds:
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(hook, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(self, hook: Webhook, alert: dict[str, Any]) -> None:
        body = (
            {"text": f":rotating_light: *{alert['kind']}* {alert['text']}"}
            if hook.format == "slack"
            else alert
        )
        host = urlsplit(hook.url).hostname or "?"
        headers = {"content-type": "application/json", **hook.headers}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        # The SSRF guard: the URL, and every address the connection resolves to, must be public
        # or in alerts.allow_hosts; redirects are not followed (they could lead anywhere).
        allow = netguard.AllowList.parse(self.config.allow_hosts)
        try:
            await netguard.check_url_async(hook.url, allow)
        except netguard.BlockedURLError as exc:
            log.error("alert %s not sent to webhook at %s: %s", alert["kind"], host, exc.message)
            return
        except errors.ConnectionError:
            pass  # not resolvable now: the connection resolves through the guard, or fails
        for attempt in range(self._retries):
            connector = aiohttp.TCPConnector(resolver=netguard.GuardedResolver(allow))
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                    session.post(
                        hook.url, data=orjson.dumps(body), headers=headers, allow_redirects=False
                    ) as resp,
                ):
                    if resp.status < 300:
                        return
                    problem = f"HTTP {resp.status}"
            except netguard.BlockedURLError as exc:
                problem = exc.message
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            await asyncio.sleep(0.5 * 2**attempt)
        log.error("alert %s not delivered to webhook at %s: %s", alert["kind"], host, problem)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (a bounded time) for deliveries in flight."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), timeout
                )
