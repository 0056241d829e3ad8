"""Admission for protocols whose error shapes :mod:`.errors` does not draw (Bedrock, TGI).

The same steps as :func:`.gate.admit` (expired credentials, injected faults, rate limits, fixed
latency), with every refusal rendered by the protocol's own :class:`ErrorShape`, so one fault
spec means the same thing on every protocol while each answers in its own wire shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator.faults import FAULT_HEADER, SCOPE_HEADER, Fault, FaultSpecError
from aiwire.simulator.gate import Admitted, state_of
from aiwire.simulator.limits import Refusal
from aiwire.simulator.wire import ConnectionDropped, NoResponse, drop_connection, wait_or_shutdown


class ErrorShape(Protocol):
    """How one protocol words each refusal."""

    def invalid(self, message: str, headers: Mapping[str, str]) -> Response: ...

    def expired(self, headers: Mapping[str, str]) -> Response: ...

    def fault(self, fault: Fault, model: str, headers: Mapping[str, str]) -> Response: ...

    def rate_limited(
        self, model: str, refusal: Refusal, headers: Mapping[str, str]
    ) -> Response: ...


async def admit_shaped(
    request: Request,
    shape: ErrorShape,
    protocol: str,
    model: str,
    *,
    expired: bool,
    estimate: int,
    actual: int,
    headers: Mapping[str, str],
    stream: bool,
    in_stream_errors: frozenset[str] = frozenset(),
) -> Response | Admitted:
    """Admit one request, or return the response that refuses it.

    An error fault whose kind is in ``in_stream_errors`` and that names ``after=K`` on a streamed
    request is not answered here: it comes back in :attr:`Admitted.fault`, for the protocol to
    send as an error event after K content events (Bedrock's in-stream exceptions).
    """
    state = state_of(request)
    if expired:
        return shape.expired(headers)
    try:
        fault = state.faults.pick(
            request.headers.get(FAULT_HEADER), request.headers.get(SCOPE_HEADER), model
        )
    except FaultSpecError as exc:
        return shape.invalid(str(exc), headers)
    if fault is not None and fault.is_error:
        deferred = stream and fault.after is not None and fault.kind in in_stream_errors
        if not deferred:
            return shape.fault(fault, model, headers)
    elif fault is not None and (fault.stream_after() is None or not stream):
        if fault.kind == "hang":
            await wait_or_shutdown(state.shutdown, state.config.hang_seconds)
        elif fault.kind == "drop":
            if await drop_connection(request.scope):
                return NoResponse()
            raise ConnectionDropped("connection dropped by the simulator")
        elif fault.kind == "malformed":
            return Response(b'{"output": {"message": {"con', 200, dict(headers), "application/json")
        fault = None
    refusal = state.limiter.admit(protocol, model, estimate, actual)
    if refusal is not None:
        return shape.rate_limited(model, refusal, headers)
    if state.config.latency_ms:
        await wait_or_shutdown(state.shutdown, state.config.latency_ms / 1000)
    return Admitted(dict(headers), fault)
