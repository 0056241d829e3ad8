"""Choosing a rollout variant: which deployments of a model name serve one request.

A model name with a rollout (``rollout: {new: 10, old: 90}`` on its ``models`` entries, each
deployment labelled with ``variant:``) sends each request to one variant by percentage. Not
sticky, a request draws at random. Sticky (``sticky: user`` or ``key``), the caller's identity is
hashed to a fixed bucket in [0, 100): the same caller always lands on the same variant while
the split stays the same, and since variants take the buckets in the order they are listed,
raising the first variant's share (10 → 25) keeps every caller it already had.

The caller's key comes from the gateway (:func:`caller`, a context variable, so the router
needs no new parameter); the user is the request's own ``user`` field.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

Sticky = Literal["none", "key", "user"]

_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aiwire_rollout_caller", default=None
)


@contextlib.contextmanager
def caller(key_id: str | None) -> Iterator[None]:
    """Within this block, requests are made on behalf of ``key_id`` (sticky ``key`` rollouts
    keep it on one variant). The gateway sets it per request; SDK users may too."""
    token = _caller.set(key_id)
    try:
        yield
    finally:
        _caller.reset(token)


def set_caller(key_id: str | None) -> None:
    """Set the caller for the rest of the current task (the gateway's per-request form)."""
    _caller.set(key_id)


def current_caller() -> str | None:
    return _caller.get()


@dataclass(frozen=True)
class Rollout:
    """A model name's split: variant → percent (summing to 100), in bucket order."""

    name: str
    split: Mapping[str, float]
    sticky: Sticky = "none"

    def __post_init__(self) -> None:
        total = sum(self.split.values())
        if not self.split or abs(total - 100.0) > 1e-6:
            raise ValueError(f"rollout of {self.name!r}: percentages add up to {total:g}, not 100")
        if any(p < 0 for p in self.split.values()):
            raise ValueError(f"rollout of {self.name!r}: a percentage is negative")

    def identity(self, user: str | None) -> str | None:
        """Who the request is for, as the ``sticky`` setting reads it (the other identity
        when the asked one is missing); None: not sticky, or nobody known."""
        if self.sticky == "none":
            return None
        key = current_caller()
        if self.sticky == "user":
            return user or key
        return key or user

    def choose(self, user: str | None = None, rng: random.Random | None = None) -> str:
        """The variant for one request."""
        who = self.identity(user)
        point = bucket(self.name, who) if who is not None else (rng or random).random() * 100
        return self.at(point)

    def at(self, point: float) -> str:
        """The variant owning ``point`` in [0, 100)."""
        edge = 0.0
        last = ""
        for variant, percent in self.split.items():
            if percent <= 0:
                continue
            edge += percent
            last = variant
            if point < edge:
                return variant
        return last  # rounding at the top edge


def bucket(name: str, identity: str) -> float:
    """A stable point in [0, 100) for ``identity`` within model ``name`` (SHA-256: the same on
    every replica and across restarts, unlike ``hash()``)."""
    digest = hashlib.sha256(f"{name}\0{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


__all__ = ["Rollout", "Sticky", "bucket", "caller", "current_caller", "set_caller"]
