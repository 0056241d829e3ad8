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
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("aiwire.alerts")

Claim = Callable[[str, float], Awaitable[bool]]


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    format: Literal["json", "slack"] = "json"
    #: Alert kinds sent to this webhook (empty: all).
    kinds: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhooks: list[Webhook] = Field(default_factory=list)
    dedupe_seconds: float = Field(default=3600.0, ge=0)


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
        #: Every alert fired (after de-duplication), newest last: for tests and the console.
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
        alert = {
            "kind": kind,
            "key": key,
            "text": text,
            "details": details,
            "at": datetime.now(UTC).isoformat(),
        }
        self.fired.append(alert)
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
        for attempt in range(self._retries):
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(hook.url, data=orjson.dumps(body), headers=headers) as resp,
                ):
                    if resp.status < 300:
                        return
                    problem = f"HTTP {resp.status}"
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
