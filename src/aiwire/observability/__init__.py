"""Seeing what the gateway does: alerts to webhooks (and, later, metrics, traces and logs)."""
