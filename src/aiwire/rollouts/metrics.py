"""Per-variant figures of a canary rollout: what a team looks at to promote or roll back.

For each variant of each model name with a rollout: its configured share and the share it
really got, requests, error rate, latency (p50, p95), cost per request and in total, and, where
the model is used in flows with a human review step, how often reviewers accepted its output.

Two sources, one shape (:class:`VariantStats`):

* :class:`RolloutMetrics`, live in a process: the gateway hands it every request's log row
  (``gateway.observers.append(metrics.observe)``), the SDK or a batch can :meth:`~RolloutMetrics.
  record` attempts, and a flow's review step reports each decision through
  :meth:`~RolloutMetrics.review` (the hook for review acceptance);
* :func:`from_usage`, from the request log of any number of replicas (the usage report grouped
  by model and deployment), which is what ``aiwire models --rollout`` shows.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiwire.rollouts.split import Rollout

if TYPE_CHECKING:
    from aiwire.router import Router
    from aiwire.store.usage import UsageRow
    from aiwire.store.writer import RequestLogRow

#: Latencies kept per variant for the live percentiles.
LATENCY_WINDOW = 2048


@dataclass
class VariantStats:
    model: str
    variant: str
    #: The configured share, in percent.
    split: float
    deployments: list[str]
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    reviews: int = 0
    accepted: int = 0
    #: This variant's part of the model name's requests, in percent (None: no requests yet).
    observed_share: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_usd / self.requests if self.requests else None

    @property
    def acceptance(self) -> float | None:
        """Reviewed outputs accepted, as a fraction (None: none reviewed)."""
        return self.accepted / self.reviews if self.reviews else None

    def public(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "split": self.split,
            "observed_share": self.observed_share,
            "deployments": list(self.deployments),
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_latency_ms": self.p50_latency_ms,
            "p95_latency_ms": self.p95_latency_ms,
            "cost_usd": self.cost_usd,
            "cost_per_request": self.cost_per_request,
            "reviews": self.reviews,
            "acceptance": self.acceptance,
        }


def variants_of(router: Router) -> dict[str, tuple[str, str]]:
    """Deployment id → (model name, variant) for every deployment in a rollout."""
    out: dict[str, tuple[str, str]] = {}
    for name in router.rollouts:
        for dep in router.deployments(name):
            if dep.variant is not None:
                out[dep.id] = (name, dep.variant)
    return out


def _skeleton(
    rollouts: Mapping[str, Rollout], variants: Mapping[str, tuple[str, str]]
) -> dict[tuple[str, str], VariantStats]:
    stats: dict[tuple[str, str], VariantStats] = {}
    for name, rollout in rollouts.items():
        for variant, percent in rollout.split.items():
            stats[(name, variant)] = VariantStats(name, variant, percent, [])
    for dep_id, key in variants.items():
        if key in stats:
            stats[key].deployments.append(dep_id)
    return stats


def _shares(stats: Iterable[VariantStats]) -> None:
    totals: dict[str, int] = {}
    items = list(stats)
    for s in items:
        totals[s.model] = totals.get(s.model, 0) + s.requests
    for s in items:
        total = totals[s.model]
        s.observed_share = 100.0 * s.requests / total if total else None


def _percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest rank, as the usage report computes it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Live:
    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    reviews: int = 0
    accepted: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class RolloutMetrics:
    """Live per-variant counters for one router's rollouts (thread-safe, cheap per call)."""

    def __init__(self, router: Router) -> None:
        self.rollouts = dict(router.rollouts)
        self._variants = variants_of(router)
        self._live: dict[str, _Live] = {dep: _Live() for dep in self._variants}
        self._lock = threading.Lock()

    def variant(self, deployment_id: str | None) -> tuple[str, str] | None:
        """(model name, variant) of a deployment, or None when it is in no rollout."""
        return self._variants.get(deployment_id) if deployment_id else None

    def record(
        self, deployment_id: str | None, *, latency_ms: float, ok: bool, cost_usd: float = 0.0
    ) -> None:
        """One finished request served by ``deployment_id`` (ignored outside rollouts)."""
        live = self._live.get(deployment_id) if deployment_id else None
        if live is None:
            return
        with self._lock:
            live.requests += 1
            live.errors += 0 if ok else 1
            live.cost += cost_usd
            live.latencies.append(latency_ms)

    def observe(self, row: RequestLogRow) -> None:
        """A gateway observer: ``gateway.observers.append(metrics.observe)``."""
        self.record(
            row.deployment, latency_ms=row.latency_ms, ok=row.status < 400, cost_usd=row.cost_usd
        )

    def review(self, deployment_id: str | None, accepted: bool) -> None:
        """The review hook: a person accepted (approved, or edited and kept) or rejected an
        output made by ``deployment_id`` (a response's ``.deployment``)."""
        live = self._live.get(deployment_id) if deployment_id else None
        if live is None:
            return
        with self._lock:
            live.reviews += 1
            live.accepted += 1 if accepted else 0

    def report(self) -> list[VariantStats]:
        stats = _skeleton(self.rollouts, self._variants)
        with self._lock:
            latencies: dict[tuple[str, str], list[float]] = {}
            for dep_id, live in self._live.items():
                key = self._variants[dep_id]
                s = stats[key]
                s.requests += live.requests
                s.errors += live.errors
                s.cost_usd += live.cost
                s.reviews += live.reviews
                s.accepted += live.accepted
                latencies.setdefault(key, []).extend(live.latencies)
        for key, values in latencies.items():
            values.sort()
            stats[key].p50_latency_ms = _percentile(values, 50)
            stats[key].p95_latency_ms = _percentile(values, 95)
        _shares(stats.values())
        return list(stats.values())


def from_usage(
    rollouts: Mapping[str, Rollout],
    variants: Mapping[str, tuple[str, str]],
    rows: Iterable[UsageRow],
    reviews: Mapping[str, tuple[int, int]] | None = None,
) -> list[VariantStats]:
    """Per-variant figures from a usage report grouped by ``model`` and ``deployment``.
    ``reviews``: deployment id → (reviewed, accepted), where a review source has them.

    A variant served by several deployments sums their requests, errors and cost; its latency
    percentiles are then the request-weighted mean of theirs (the report has no raw latencies),
    exact whenever a variant has one deployment, as canaries usually do.
    """
    stats = _skeleton(rollouts, variants)
    weights: dict[tuple[str, str], list[tuple[int, float | None, float | None]]] = {}
    for row in rows:
        key = variants.get(str(row.group.get("deployment")))
        if key is None or key not in stats or row.group.get("model") != key[0]:
            continue
        s = stats[key]
        s.requests += row.requests
        s.errors += row.errors
        s.cost_usd += row.cost_usd
        weights.setdefault(key, []).append((row.requests, row.p50_latency_ms, row.p95_latency_ms))
    for key, parts in weights.items():
        stats[key].p50_latency_ms = _weighted([(n, p50) for n, p50, _ in parts])
        stats[key].p95_latency_ms = _weighted([(n, p95) for n, _, p95 in parts])
    for dep_id, (reviewed, accepted) in (reviews or {}).items():
        key = variants.get(dep_id)
        if key is not None and key in stats:
            stats[key].reviews += reviewed
            stats[key].accepted += accepted
    _shares(stats.values())
    return list(stats.values())


def _weighted(parts: list[tuple[int, float | None]]) -> float | None:
    known = [(n, v) for n, v in parts if v is not None and n > 0]
    total = sum(n for n, _ in known)
    return sum(n * v for n, v in known) / total if total else None


__all__ = ["LATENCY_WINDOW", "RolloutMetrics", "VariantStats", "from_usage", "variants_of"]
