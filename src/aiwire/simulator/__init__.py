"""A local fake upstream that speaks the OpenAI, Anthropic and Gemini wire protocols.

Deterministic answers, real streaming formats, provider rate-limit headers and 429s, and fault
injection (``x-aiwire-sim-fault: 429;retry_after=1``) — the offline backend of the demo, the
tests and the benchmarks. Independent of :mod:`aiwire.providers` on purpose.
"""

from aiwire.simulator.app import create_app
from aiwire.simulator.config import ModelLimit, SimulatorConfig
from aiwire.simulator.server import SimulatorServer

__all__ = ["ModelLimit", "SimulatorConfig", "SimulatorServer", "create_app"]
