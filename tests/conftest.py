"""Shared fixtures: a running simulator, and the rule for tests that need real services."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from aiwire.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    """One simulator for the session: no streaming delay, no limits."""
    with SimulatorServer(SimulatorConfig(tokens_per_second=0)) as sim:
        yield sim


def require_service(name: str, how_to_start: str) -> None:
    """Skip (on a developer machine) or fail (in CI, AIWIRE_REQUIRE_SERVICES=1) when a service
    a test needs is not reachable."""
    message = f"{name} is not reachable; start it with: {how_to_start}"
    if os.environ.get("AIWIRE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (AIWIRE_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(message)
