"""Pacing: keep each deployment under its provider's rate limits instead of collecting 429s.

A deployment's limits are what the config says (``rpm``/``tpm``) or, failing that, what the
provider's rate-limit headers report. Before an attempt the router asks :meth:`Pacer.wait`; the
answer is how long to wait (its place in a FIFO queue, computed by the token-bucket state in
:mod:`aiwire.limits.state`) or None when that would exceed ``router.max_queue_wait`` (the
router then tries another deployment, a fallback, or answers 429). What the provider says
afterwards feeds back: actual token use corrects the estimate, its ``remaining`` counts pull
the bucket down when someone else shares the account, and a 429 halves the rate for a while.

A deployment with no configured limit is paced to learned limits only while the provider
reports less than half of them left (until more than 80 % is back): far from its limits a
request costs nothing here, not even a round trip to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiwire.limits.pricing import rough_input_tokens
from aiwire.limits.state import LimitState, PaceCheck
from aiwire.ratelimit import RateLimitInfo
from aiwire.types import ChatRequest, EmbeddingRequest

log = logging.getLogger("aiwire.pacing")

#: The share of a provider's limit pacing aims at: the margin absorbs the skew between our
#: clock and the provider's (a request reaches it a little after we release it).
SAFETY = 0.98
#: A capacity that never binds (the token dimension of a deployment with only an RPM limit).
UNLIMITED = 1e12
#: Output tokens assumed for a request with no max_tokens (corrected by the actual usage).
DEFAULT_OUTPUT_ESTIMATE = 256


#: Learned limits start pacing below this share left, and stop above ``RELEASE``.
ENGAGE, RELEASE = 0.5, 0.8


@dataclass(slots=True)
class Limits:
    rpm: float | None
    tpm: float | None
    engaged: bool = True

    @property
    def paced(self) -> bool:
        return self.rpm is not None or self.tpm is not None


@dataclass(slots=True)
class Slot:
    """One paced attempt: what it was charged, so feedback can correct it."""

    key: str
    tokens: float
    tpm: float


class Pacer:
    def __init__(self, state: LimitState, *, max_wait: float = 30.0) -> None:
        self.state = state
        self.max_wait = max_wait
        self._configured: dict[str, Limits] = {}
        self._learned: dict[str, Limits] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def configure(self, deployment_id: str, rpm: int | None, tpm: int | None) -> None:
        self._configured[deployment_id] = Limits(rpm, tpm)

    def limits(self, deployment_id: str) -> Limits:
        """Configured limits win; learned ones fill the gaps."""
        conf = self._configured.get(deployment_id)
        learned = self._learned.get(deployment_id)
        rpm = conf.rpm if conf is not None and conf.rpm is not None else None
        tpm = conf.tpm if conf is not None and conf.tpm is not None else None
        if learned is not None and learned.engaged:
            rpm = rpm if rpm is not None else learned.rpm
            tpm = tpm if tpm is not None else learned.tpm
        return Limits(rpm, tpm)

    async def wait(
        self, deployment_id: str, request: ChatRequest | EmbeddingRequest
    ) -> tuple[float, Slot | None] | None:
        """Seconds to wait before this attempt (and its slot, for feedback), or None when the
        queue is longer than ``max_wait``. ``(0.0, None)``: the deployment is not paced."""
        limits = self.limits(deployment_id)
        if not limits.paced:
            return 0.0, None
        tokens = float(_estimate(request))
        rpm = limits.rpm * SAFETY if limits.rpm else UNLIMITED
        tpm = limits.tpm * SAFETY if limits.tpm else UNLIMITED
        dims = [PaceCheck(rpm, 1.0), PaceCheck(tpm, tokens)]
        if tokens > tpm:
            tokens = tpm  # larger than a minute's worth: let the provider be the judge
            dims[1] = PaceCheck(tpm, tokens)
        key = f"pace:{deployment_id}"
        wait = await self.state.pace(key, dims, self.max_wait)
        if wait is None:
            return None
        return wait, Slot(key, tokens, tpm)

    def feedback(
        self,
        deployment_id: str,
        slot: Slot | None,
        *,
        used_tokens: int | None = None,
        ratelimit: RateLimitInfo | None = None,
        throttled: float | None = None,
    ) -> None:
        """What the provider said about one attempt (applied in the background)."""
        if ratelimit is not None:
            self._learn(deployment_id, ratelimit)
        if slot is None and throttled is None:
            return
        limits = self.limits(deployment_id)
        if not limits.paced:
            return
        key = f"pace:{deployment_id}"
        corrections = []
        if slot is not None and used_tokens is not None and limits.tpm is not None:
            corrections.append((1, limits.tpm * SAFETY, used_tokens - slot.tokens))
        remaining = []
        if ratelimit is not None:
            # The provider counted at our send time and rounds down; one unit of slack keeps
            # our own requests' latency from being charged twice (only another user of the
            # account, taking more, pulls the bucket down).
            if limits.rpm is not None and ratelimit.remaining_requests is not None:
                left = ratelimit.remaining_requests + 1.0
                remaining.append((0, limits.rpm * SAFETY, left))
            if limits.tpm is not None and ratelimit.remaining_tokens is not None:
                left = ratelimit.remaining_tokens + 1.0
                remaining.append((1, limits.tpm * SAFETY, left))
        if not corrections and not remaining and throttled is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.state.pace_feedback(
                key, corrections=corrections, remaining=remaining, throttled=throttled
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pacing feedback failed: %s", task.exception())

    def _learn(self, deployment_id: str, info: RateLimitInfo) -> None:
        rpm = float(info.limit_requests) if info.limit_requests else None
        tpm = float(info.limit_tokens) if info.limit_tokens else None
        if rpm is None and tpm is None:
            return
        shares = [
            left / limit
            for left, limit in (
                (info.remaining_requests, rpm),
                (info.remaining_tokens, tpm),
            )
            if left is not None and limit
        ]
        low = min(shares, default=1.0)
        known = self._learned.get(deployment_id)
        engaged = low < ENGAGE if known is None or not known.engaged else low < RELEASE
        if known is None or (known.rpm, known.tpm, known.engaged) != (rpm, tpm, engaged):
            self._learned[deployment_id] = Limits(rpm, tpm, engaged)
            if engaged and (known is None or not known.engaged):
                log.info(
                    "deployment %s: the provider reports %.0f%% of its limits (%s requests, "
                    "%s tokens per minute) left; pacing to them",
                    deployment_id,
                    100 * low,
                    info.limit_requests,
                    info.limit_tokens,
                )


def _estimate(request: ChatRequest | EmbeddingRequest) -> int:
    """Tokens a provider's limiter will charge at first: input, plus the output it may make."""
    if isinstance(request, EmbeddingRequest):
        return rough_input_tokens(request)
    limit = request.output_limit
    return rough_input_tokens(request) + (limit if limit is not None else DEFAULT_OUTPUT_ESTIMATE)
