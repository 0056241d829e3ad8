"""Rate limits, budgets and pacing: the counters (in process or in Redis), the gateway's
admission of a request against its key's limits and budgets, and the router's pacing of
deployments under their providers' limits."""

from aiwire.limits.state import (
    BudgetCheck,
    LimitState,
    MemoryState,
    PaceCheck,
    RateCheck,
    Verdict,
)
from aiwire.limits.windows import PERIODS, Period, window

__all__ = [
    "PERIODS",
    "BudgetCheck",
    "LimitState",
    "MemoryState",
    "PaceCheck",
    "Period",
    "RateCheck",
    "Verdict",
    "window",
]
