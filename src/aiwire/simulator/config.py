"""Settings of the provider simulator."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelLimit(BaseModel):
    """Per-minute limits of one model (``None`` = unlimited on that dimension)."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class SimulatorConfig(BaseModel):
    """How the simulator behaves.

    - ``tokens_per_second``: streaming speed; 0 sends chunks as fast as possible.
    - ``latency_ms``: a fixed delay before any generating endpoint answers (the model "thinking";
      for non-streamed answers the whole generation time).
    - ``limits``: model name → :class:`ModelLimit`; the key ``"*"`` applies to every model without
      its own entry. Unlisted models are never rate limited (generous limits are still reported).
    - ``faults``: model name (or ``"*"``) → fault spec applied to every request for that model,
      e.g. ``{"always-503": "503"}``; same grammar as the ``x-aiwire-sim-fault`` header.
    - ``hang_seconds``: how long the ``hang`` fault stalls.
    - ``embedding_dimensions``: vector size when the request does not ask for one.
    """

    model_config = ConfigDict(extra="forbid")

    tokens_per_second: float = Field(default=0.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    limits: dict[str, ModelLimit] = Field(default_factory=dict)
    faults: dict[str, str] = Field(default_factory=dict)
    hang_seconds: float = Field(default=300.0, ge=0)
    embedding_dimensions: int = Field(default=256, ge=1)
