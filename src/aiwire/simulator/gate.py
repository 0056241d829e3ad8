"""What every generating endpoint does before answering: expired keys, injected faults and rate
limits, then the headers and the mid-stream fault for the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from aiwire.simulator.config import SimulatorConfig
from aiwire.simulator.errors import Protocol, auth_error, fault_error, invalid_request, rate_limited
from aiwire.simulator.faults import FAULT_HEADER, SCOPE_HEADER, Fault, FaultBook, FaultSpecError
from aiwire.simulator.limits import RateLimiter
from aiwire.simulator.wire import (
    ConnectionDropped,
    NoResponse,
    Piece,
    drop_connection,
    stream_response,
    wait_or_shutdown,
)


class SimState:
    """Mutable simulator state shared by all handlers of one app."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.faults = FaultBook(config.faults)
        self.limiter = RateLimiter(config.limits)
        self.shutdown = asyncio.Event()


def state_of(request: Request) -> SimState:
    return cast(SimState, request.app.state.sim)


@dataclass(frozen=True)
class Admitted:
    headers: dict[str, str]
    fault: Fault | None  # a mid-stream fault to apply while streaming


async def admit(
    request: Request,
    protocol: Protocol,
    model: str,
    *,
    api_key: str | None,
    estimate: int,
    actual: int,
    headers: Mapping[str, str],
    stream: bool,
) -> Response | Admitted:
    """Admit one request, or return the response that refuses it."""
    state = state_of(request)
    if api_key is not None and api_key.startswith("expired"):
        return auth_error(protocol, headers)
    try:
        fault = state.faults.pick(
            request.headers.get(FAULT_HEADER), request.headers.get(SCOPE_HEADER), model
        )
    except FaultSpecError as exc:
        return invalid_request(protocol, str(exc), FAULT_HEADER, headers)
    rl_headers = {**headers, **state.limiter.headers(protocol, model)}
    if fault is not None and fault.is_error:
        return fault_error(protocol, fault, model, rl_headers)
    if fault is not None and (fault.stream_after() is None or not stream):
        if fault.kind == "hang":
            await wait_or_shutdown(state.shutdown, state.config.hang_seconds)
        elif fault.kind == "drop":
            if await drop_connection(request.scope):
                return NoResponse()
            raise ConnectionDropped("connection dropped by the simulator")
        elif fault.kind == "malformed":
            return Response(
                b'{"id": "broken", "choices": [{"index": 0, "mess',
                200,
                rl_headers,
                "application/json",
            )
        fault = None
    refusal = state.limiter.admit(protocol, model, estimate, actual)
    if refusal is not None:
        return rate_limited(protocol, model, refusal, rl_headers)
    if state.config.latency_ms:
        await wait_or_shutdown(state.shutdown, state.config.latency_ms / 1000)
    return Admitted({**headers, **state.limiter.headers(protocol, model)}, fault)


def stream(
    request: Request,
    admitted: Admitted,
    pieces: list[Piece],
    *,
    media_type: str = "text/event-stream",
    malformed: bytes = b"data: {not json\n\n",
) -> StreamingResponse:
    state = state_of(request)
    return stream_response(
        request,
        pieces,
        fault=admitted.fault,
        tokens_per_second=state.config.tokens_per_second,
        hang=state.shutdown,
        hang_seconds=state.config.hang_seconds,
        headers=admitted.headers,
        media_type=media_type,
        malformed=malformed,
    )
