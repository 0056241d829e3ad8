"""Canary rollouts: one model name split between deployments by percentage, sticky per caller
when asked, with per-variant metrics to decide whether to promote or roll back.

* :mod:`aiwire.rollouts.split`: the config's split and how one request picks its variant;
* :mod:`aiwire.rollouts.config`: reading (and refusing inconsistent) rollouts from ``models``;
* :mod:`aiwire.rollouts.metrics`: per-variant latency, error rate, cost and review acceptance,
  live (:class:`RolloutMetrics`) or from the request log (``aiwire models --rollout``).
"""

from aiwire.rollouts.split import Rollout, Sticky, bucket, caller, current_caller, set_caller

__all__ = ["Rollout", "Sticky", "bucket", "caller", "current_caller", "set_caller"]
