"""Wiring observability into a gateway: the one call :func:`aiwire.server.build.build_gateway`
makes. Everything here attaches to the gateway's public hooks (observers, router events,
mounts, start-up/shutdown hooks); the request path itself is unchanged.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiwire.observability import logs
from aiwire.observability.directory import KeyDirectory
from aiwire.observability.metrics import (
    Metrics,
    MetricsEndpoint,
    PacingMeter,
    Publisher,
    multiprocess_dir,
)
from aiwire.observability.retention import ContentPolicy, PurgeJob
from aiwire.observability.rules import install_rules
from aiwire.secrets import Secret

if TYPE_CHECKING:
    from aiwire.config import Config
    from aiwire.observability.tracing import Tracing
    from aiwire.server.app import Gateway
    from aiwire.server.build import GatewayParts

METRICS_PATH = "/metrics"
#: Webhook headers whose values are credentials (others, like content-type, are not).
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "signature")


@dataclass
class Observability:
    """What :func:`install_observability` attached to one gateway."""

    directory: KeyDirectory
    content: ContentPolicy
    purge: PurgeJob
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    rules: list[object] = field(default_factory=list)


_installed: weakref.WeakKeyDictionary[Gateway, Observability] = weakref.WeakKeyDictionary()


def observability_of(gateway: Gateway) -> Observability | None:
    """What was installed on ``gateway`` (None: nothing)."""
    return _installed.get(gateway)


def install_observability(
    parts: GatewayParts, config: Config, *, master_key: Secret | None = None
) -> Observability:
    """Log redaction and format, metrics at ``/metrics``, alert rules, the content policy and
    its purge job, and (when configured) tracing. Installing twice is a no-op."""
    gateway = parts.gateway
    done = _installed.get(gateway)
    if done is not None:
        return done
    logs.install_redaction(*known_secrets(parts, config, master_key))
    logs.configure(config.logging.format, config.logging.level)

    directory = KeyDirectory(parts.keys)
    gateway.mount_hooks(on_startup=directory.start, on_shutdown=directory.aclose)
    # The gateway itself keeps content only for keys with log_content (and masked when the
    # PII guardrail masked it); the policy object stays for the purge's view of the keys.
    content = ContentPolicy(directory)

    settings = config.logging
    purge = PurgeJob(
        parts.database,
        default_days=settings.content_retention_days,
        interval=settings.purge_interval_seconds,
    )
    gateway.mount_hooks(on_startup=purge.start, on_shutdown=purge.aclose)

    obs = Observability(directory, content, purge)
    if config.metrics.enabled:
        obs.metrics = _install_metrics(gateway, config, directory)
    obs.rules = install_rules(parts.alerts, gateway.router, gateway.observers, directory)
    if config.tracing.enabled:
        obs.tracing = _install_tracing(gateway, config)
    _installed[gateway] = obs
    return obs


def _install_metrics(gateway: Gateway, config: Config, directory: KeyDirectory) -> Metrics:
    router = gateway.router
    metrics = Metrics(
        models=router.names,
        deployments={d.id: d.provider.name for d in router.deployments()},
        directory=directory,
        max_key_labels=config.metrics.max_key_labels,
    )
    gateway.observers.append(metrics.observe)
    router.on_attempt.append(metrics.on_attempt)
    router.on_cooldown.append(metrics.on_cooldown)
    router.pacer.state = PacingMeter(router.pacer.state, metrics.on_pace)

    def sample() -> None:
        metrics.sample_gauges(gateway.inflight, router.deployments())

    metrics.sampler = sample
    gateway.mount(
        METRICS_PATH, MetricsEndpoint(metrics, gateway.principal, public=config.metrics.public)
    )
    if multiprocess_dir() is not None:
        publisher = Publisher(metrics, config.metrics.sample_seconds)
        gateway.mount_hooks(on_startup=publisher.start, on_shutdown=publisher.aclose)
    return metrics


def _install_tracing(gateway: Gateway, config: Config) -> Tracing:
    from aiwire.observability import tracing

    provider, shutdown = tracing.tracer_provider(config)
    installed = tracing.install(gateway, provider)
    if shutdown is not None:
        flush = shutdown

        async def close() -> None:
            await asyncio.to_thread(flush)  # exports what is batched; may block on the network

        gateway.mount_hooks(on_shutdown=close)
    return installed


def known_secrets(
    parts: GatewayParts, config: Config, master_key: Secret | None
) -> Iterator[str | None]:
    """Every secret value this gateway holds, for the log redactor: the master key, provider
    keys, passwords in the store and Redis URLs, webhook URLs (Slack's are credentials)."""
    if master_key is not None:
        yield master_key.reveal()
    for dep in parts.gateway.router.deployments():
        key = dep.provider.api_key
        if key is not None:
            yield key.reveal()
    yield parts.database.url.password
    try:
        redis = config.server.redis_url()
    except Exception:  # an unresolvable reference fails elsewhere, with its own message
        redis = None
    if redis:
        yield urlsplit(redis).password
    for hook in config.alerts.webhooks:
        yield hook.url
        for name, value in hook.headers.items():
            if any(word in name.lower() for word in _CREDENTIAL_WORDS):
                yield value
