"""Alert rules: what turns router attempts and request rows into :meth:`Alerts.fire` calls.

* :class:`CredentialRule` - a provider answered 401 or 403: its key expired, was revoked or
  rotated. One alert per deployment (``provider_credential``), naming provider and deployment.
* :class:`ErrorRateRule` - the share of a deployment's upstream attempts that failed over a
  sliding window reached a threshold (``deployment_error_rate``). Requests at fault (400s) and
  our own pacing refusals do not count; provider 429s, 5xx, timeouts and network errors do.
* :class:`SpendAnomalyRule` - the spend of the current time bucket reached N x the average of
  the buckets before it, for all traffic and for each key (``spend_anomaly``).

Budgets' soft limits and deprecated models fire from the admission and settlement code
(``budget_soft_limit``, ``deprecated_model``). Every rule is evaluated per process; across
replicas :class:`Alerts` de-duplicates through Redis. Each rule keeps its own short memory of
what it already sent, so a failing deployment under load does not schedule one delivery task
per request only for :class:`Alerts` to drop them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiwire import errors
from aiwire.observability import alerts as settings_of
from aiwire.observability.alerts import Alerts
from aiwire.observability.directory import KeyDirectory
from aiwire.store.writer import RequestLogRow

if TYPE_CHECKING:
    from aiwire.router import AttemptEvent, Router

log = logging.getLogger("aiwire.alerts")

Clock = Callable[[], float]


class _Sender:
    """Fires alerts from synchronous observers, remembering what it sent for ``dedupe``
    seconds (a cheap pre-check; :class:`Alerts` has the final word)."""

    def __init__(self, alerts: Alerts, clock: Clock) -> None:
        self.alerts = alerts
        self.clock = clock
        self._sent: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[bool]] = set()

    def recently(self, kind: str, key: str) -> bool:
        at = self._sent.get((kind, key))
        return at is not None and self.clock() - at < self.alerts.config.dedupe_seconds

    def send(self, kind: str, key: str, text: str, details: dict[str, Any]) -> None:
        if self.recently(kind, key):
            return
        self._sent[(kind, key)] = self.clock()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nowhere to deliver from
            log.warning("alert %s not sent (no event loop): %s", kind, text)
            return
        task = loop.create_task(self.alerts.fire(kind, key, text, details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class CredentialRule:
    def __init__(self, sender: _Sender, router: Router) -> None:
        self.sender = sender
        self.router = router

    def on_attempt(self, event: AttemptEvent) -> None:
        exc = event.error
        if not isinstance(exc, errors.AuthenticationError | errors.PermissionDeniedError):
            return
        if exc.provider is None:  # not the provider's answer
            return
        if self.sender.recently("provider_credential", event.deployment):
            return
        dep = self.router.deployment(event.deployment)
        source = None
        if dep is not None and dep.provider.api_key is not None:
            source = dep.provider.api_key.source  # e.g. env:OPENAI_API_KEY, never the value
        where = f" (now from {source})" if source else ""
        text = (
            f"provider {exc.provider} answered {exc.status} to deployment {event.deployment}: "
            f"its credential was rejected (expired, revoked or rotated). Put a valid key in "
            f"providers.{exc.provider}.api_key{where} and restart, or run `aiwire doctor`"
        )
        details = {
            "provider": exc.provider,
            "deployment": event.deployment,
            "model": exc.model,
            "status": exc.status,
            "code": exc.code,
            "key_source": source,
        }
        self.sender.send("provider_credential", event.deployment, text, details)


class _Window:
    """Attempts and failures over the last ``seconds``, in one-second buckets."""

    __slots__ = ("buckets", "errors", "seconds", "total")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.buckets: deque[list[int]] = deque()  # [second, attempts, failures]
        self.total = 0
        self.errors = 0

    def add(self, now: float, failed: bool) -> None:
        second = int(now)
        buckets = self.buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            bucket = [second, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        self.total += 1
        self.errors += failed
        oldest = now - self.seconds
        while buckets and buckets[0][0] < oldest:
            _, total, errs = buckets.popleft()
            self.total -= total
            self.errors -= errs


class ErrorRateRule:
    def __init__(self, sender: _Sender, settings: settings_of.ErrorRateRule) -> None:
        self.sender = sender
        self.settings = settings
        self._windows: dict[str, _Window] = {}

    @staticmethod
    def counts(exc: errors.ProviderError | None) -> bool | None:
        """Whether an attempt failed (None: it says nothing about the deployment)."""
        if exc is None:
            return False
        if isinstance(exc, errors.BadRequestError) or exc.provider is None:
            return None  # the request's fault, or our own refusal (pacing queue full)
        return True

    def on_attempt(self, event: AttemptEvent) -> None:
        failed = self.counts(event.error)
        if failed is None:
            return
        window = self._windows.get(event.deployment)
        if window is None:
            window = self._windows[event.deployment] = _Window(self.settings.window_seconds)
        window.add(self.sender.clock(), failed)
        s = self.settings
        if not failed or window.total < s.min_attempts:
            return
        rate = window.errors / window.total
        if rate < s.threshold:
            return
        self.sender.send(
            "deployment_error_rate",
            event.deployment,
            f"deployment {event.deployment}: {rate:.0%} of {window.total} upstream attempts "
            f"failed in the last {s.window_seconds:g}s (threshold {s.threshold:.0%}); last "
            f"error {type(event.error).__name__}",
            {
                "deployment": event.deployment,
                "attempts": window.total,
                "failures": window.errors,
                "rate": rate,
                "window_seconds": s.window_seconds,
                "threshold": s.threshold,
            },
        )


class _Spend:
    """Spend per bucket: the current one and up to ``trailing`` before it."""

    __slots__ = ("first", "history")

    def __init__(self, trailing: int) -> None:
        self.history: deque[list[float]] = deque(maxlen=trailing + 1)  # [bucket index, usd]
        self.first: int | None = None

    def add(self, index: int, usd: float) -> float:
        if self.first is None:
            self.first = index
        if self.history and int(self.history[-1][0]) == index:
            self.history[-1][1] += usd
        else:
            self.history.append([index, usd])
        return self.history[-1][1]

    def trailing_average(self, index: int, trailing: int) -> float | None:
        """The mean spend of the ``trailing`` buckets before ``index`` (empty ones count as
        nothing spent); None until that much history exists."""
        if self.first is None or index - self.first < trailing:
            return None
        earlier = sum(usd for i, usd in self.history if index - trailing <= i < index)
        return earlier / trailing


class SpendAnomalyRule:
    def __init__(
        self,
        sender: _Sender,
        settings: settings_of.SpendAnomalyRule,
        directory: KeyDirectory | None,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self.directory = directory
        self._scopes: dict[str, _Spend] = {}

    def observe(self, row: RequestLogRow) -> None:
        if row.cost_usd <= 0:
            return
        index = int(self.sender.clock() // self.settings.bucket_seconds)
        self._add("all", index, row.cost_usd, row.key_id)
        self._add(f"key:{row.key_id or 'master'}", index, row.cost_usd, row.key_id)

    def _add(self, scope: str, index: int, usd: float, key_id: str | None) -> None:
        s = self.settings
        spend = self._scopes.get(scope)
        if spend is None:
            spend = self._scopes[scope] = _Spend(s.trailing_buckets)
        current = spend.add(index, usd)
        if current < s.min_usd:
            return
        average = spend.trailing_average(index, s.trailing_buckets)
        if average is None or current < s.factor * average:
            return
        who = "all keys together"
        if scope != "all":
            info = self.directory.get(key_id) if self.directory and key_id else None
            who = f"key {info.name} ({key_id})" if info else f"key {key_id or 'master'}"
        minutes = s.bucket_seconds / 60
        self.sender.send(
            "spend_anomaly",
            scope,
            f"spend of {who}: ${current:.2f} in the last {minutes:g} min, "
            f"{current / average:.1f}x its average of ${average:.2f} over the "
            f"{s.trailing_buckets} periods before"
            if average > 0
            else f"spend of {who}: ${current:.2f} in the last {minutes:g} min after nothing "
            f"in the {s.trailing_buckets} periods before",
            {
                "scope": scope,
                "spent_usd": current,
                "trailing_average_usd": average,
                "factor": s.factor,
                "bucket_seconds": s.bucket_seconds,
            },
        )


def install_rules(
    alerts: Alerts,
    router: Router,
    observers: list[Callable[[RequestLogRow], None]],
    directory: KeyDirectory | None,
    *,
    clock: Clock = time.monotonic,
) -> list[object]:
    """Attach the configured rules to ``router`` and the gateway's ``observers``."""
    rules = alerts.config.rules
    sender = _Sender(alerts, clock)
    installed: list[object] = []
    if rules.credentials.enabled:
        credential = CredentialRule(sender, router)
        router.on_attempt.append(credential.on_attempt)
        installed.append(credential)
    if rules.error_rate.enabled:
        rate = ErrorRateRule(sender, rules.error_rate)
        router.on_attempt.append(rate.on_attempt)
        installed.append(rate)
    if rules.spend_anomaly.enabled:
        spend = SpendAnomalyRule(sender, rules.spend_anomaly, directory)
        observers.append(spend.observe)
        installed.append(spend)
    return installed


__all__ = [
    "CredentialRule",
    "ErrorRateRule",
    "SpendAnomalyRule",
    "install_rules",
]
