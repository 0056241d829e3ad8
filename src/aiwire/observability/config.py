"""The ``metrics:``, ``tracing:`` and ``logging:`` sections of the configuration file.

::

    metrics: {public: false, max_key_labels: 50}
    tracing: {enabled: true, exporter: otlp, service_name: aiwire}
    logging: {format: json, level: info, content_retention_days: 30}

Every field has a default that is safe on a fresh install: metrics on and behind the master key,
tracing off, logs as the process already has them, prompt content (where stored at all) purged
after 30 days.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MetricsConfig(BaseModel):
    """``/metrics`` in Prometheus' text format."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Serve ``/metrics`` without the master key (for a scraper on a trusted network).
    public: bool = False
    #: Distinct key names that get their own label value; later ones share ``other``.
    max_key_labels: int = Field(default=50, ge=0, le=10_000)
    #: Seconds between updates of the gauges (in-flight, open circuits) in multiprocess mode.
    sample_seconds: float = Field(default=1.0, gt=0)


class TracingConfig(BaseModel):
    """OpenTelemetry spans (needs ``pip install 'aiwire[otel]'``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: ``otlp`` (needs ``opentelemetry-exporter-otlp-proto-http``; endpoint from the standard
    #: ``OTEL_EXPORTER_OTLP_*`` variables), ``console`` (spans printed to stdout), or ``global``
    #: (whatever tracer provider the process set up, e.g. ``opentelemetry-instrument``).
    exporter: Literal["otlp", "console", "global"] = "otlp"
    service_name: str = "aiwire"


class LoggingConfig(BaseModel):
    """Log lines of the ``aiwire.*`` loggers, and how long stored prompt content is kept."""

    model_config = ConfigDict(extra="forbid")

    #: ``json``: one JSON object per line on stderr (the ``aiwire`` logger's own handler).
    #: ``text``: leave the process' logging as it is (the CLI's, uvicorn's).
    format: Literal["json", "text"] = "text"
    #: Level of the ``aiwire`` logger (``debug`` ... ``error``); unset: leave it as it is.
    level: Literal["debug", "info", "warning", "error"] | None = None
    #: Days prompts and completions stay in the request log for keys without their own
    #: ``retention_days`` option (the rows themselves stay for usage reports).
    content_retention_days: int = Field(default=30, ge=0)
    #: Seconds between runs of the background purge of expired content (0: never).
    purge_interval_seconds: float = Field(default=3600.0, ge=0)
