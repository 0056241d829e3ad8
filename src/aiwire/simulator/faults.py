"""Fault injection: which fault (if any) a request gets.

Grammar (header ``x-aiwire-sim-fault`` or a ``SimulatorConfig.faults`` value)::

    <kind>[;times=N][;retry_after=S][;after=K]

Kinds: ``429``, ``500``, ``503``, ``529``, ``401`` (error responses in the provider's shape),
``hang`` (stall ``hang_seconds``; in a stream with ``after=K``: K content chunks, then stall),
``drop`` (close the connection: before any response, or in a stream after K content chunks,
default 2, without the terminal event), ``malformed`` (non-stream: 200 with a broken JSON body;
stream: after K content chunks, default 2, a ``data: {not json`` event and the end of the body).

``times=N`` limits the fault to the first N requests carrying that exact spec, counted per value
of the ``x-aiwire-sim-scope`` header (configured faults count per model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FAULT_HEADER = "x-aiwire-sim-fault"
SCOPE_HEADER = "x-aiwire-sim-scope"
ERROR_KINDS = frozenset({"429", "500", "503", "529", "401"})
STREAM_KINDS = frozenset({"hang", "drop", "malformed"})
KINDS = ERROR_KINDS | STREAM_KINDS


class FaultSpecError(ValueError):
    """A fault spec that does not follow the grammar."""


@dataclass(frozen=True)
class Fault:
    kind: str
    times: int | None = None
    retry_after: float | None = None
    after: int | None = None
    spec: str = ""

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS

    def stream_after(self) -> int | None:
        """Content chunks to send before a mid-stream fault; None = not a mid-stream fault."""
        if self.kind in ("drop", "malformed"):
            return 2 if self.after is None else self.after
        if self.kind == "hang":
            return self.after
        return None


def parse_fault(spec: str) -> Fault:
    parts = [p.strip() for p in spec.split(";") if p.strip()]
    if not parts or parts[0].lower() not in KINDS:
        raise FaultSpecError(
            f"unknown fault {spec!r}; expected one of {', '.join(sorted(KINDS))} "
            "with optional ;times=N ;retry_after=S ;after=K"
        )
    values: dict[str, float] = {}
    for part in parts[1:]:
        key, _, raw = part.partition("=")
        key = key.strip().lower().replace("-", "_")
        if key not in ("times", "retry_after", "after"):
            raise FaultSpecError(f"unknown fault option {key!r} in {spec!r}")
        try:
            values[key] = float(raw)
        except ValueError:
            raise FaultSpecError(f"fault option {key!r} needs a number in {spec!r}") from None
        if values[key] < 0:
            raise FaultSpecError(f"fault option {key!r} must not be negative in {spec!r}")
    times, after = values.get("times"), values.get("after")
    return Fault(
        kind=parts[0].lower(),
        times=None if times is None else int(times),
        retry_after=values.get("retry_after"),
        after=None if after is None else int(after),
        spec=spec.strip(),
    )


class FaultBook:
    """Picks the fault for each request and counts ``times=N`` budgets."""

    def __init__(self, configured: Mapping[str, str] | None = None) -> None:
        self._configured = dict(configured or {})
        self._seen: dict[tuple[str, str], int] = {}
        for spec in self._configured.values():
            parse_fault(spec)  # fail at startup, not on the first request

    def pick(self, header: str | None, scope: str | None, model: str) -> Fault | None:
        """The fault for one request; raises :class:`FaultSpecError` for a bad header."""
        if header is not None and header.strip():
            spec, key_scope = header, f"header:{scope or ''}"
        else:
            configured = self._configured.get(model, self._configured.get("*"))
            if configured is None:
                return None
            spec, key_scope = configured, f"config:{model}"
        fault = parse_fault(spec)
        if fault.times is not None:
            key = (fault.spec, key_scope)
            count = self._seen.get(key, 0)
            if count >= fault.times:
                return None
            self._seen[key] = count + 1
        return fault
