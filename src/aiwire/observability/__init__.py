"""Seeing what the gateway does: metrics (Prometheus), traces (OpenTelemetry, optional), log
redaction and JSON logs, alert rules and webhooks, request-content retention, ``aiwire doctor``.

:func:`aiwire.observability.install.install_observability` attaches all of it to a gateway;
nothing is imported here, so the configuration can import the settings models cheaply.
"""
