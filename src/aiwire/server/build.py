"""Assembling a gateway from configuration: router, store, keys, log writer, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from aiwire.cache import open_cache
from aiwire.cache.semantic import open_semantic
from aiwire.config import Config
from aiwire.flows.server import mount_flows
from aiwire.guardrails.gateway import Guardrails
from aiwire.limits.admission import Admission, BudgetBook
from aiwire.limits.fallback import UNAVAILABLE, FallbackState
from aiwire.limits.health import HealthSync
from aiwire.limits.pricing import CatalogPricing, Pricing
from aiwire.limits.redis_state import RedisState
from aiwire.limits.state import LimitState, MemoryState
from aiwire.observability.alerts import Alerts, Claim
from aiwire.observability.install import install_observability
from aiwire.rollouts.metrics import RolloutMetrics
from aiwire.router import Router
from aiwire.secrets import Secret
from aiwire.server import admin_models
from aiwire.server.app import Gateway, GatewaySettings
from aiwire.server.auth import Authenticator
from aiwire.server.authguard import install_auth_guard
from aiwire.server.batch_api import mount_batches
from aiwire.server.cors import install_cors
from aiwire.server.ui import install_console
from aiwire.store.budgets import BudgetRecord, BudgetStore
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore
from aiwire.store.writer import LogWriter


@dataclass
class GatewayParts:
    gateway: Gateway
    database: Database
    keys: KeyStore
    writer: LogWriter
    budgets: BudgetStore
    state: LimitState
    alerts: Alerts


def limit_state(config: Config) -> tuple[LimitState, Claim | None]:
    """Counters in Redis when ``server.redis`` is set (shared by replicas), else in process;
    and, with Redis, a cross-replica claim for de-duplicating alerts."""
    url = config.server.redis_url()
    if url is None:
        return MemoryState(), None
    state = FallbackState(RedisState(url))  # in process while Redis is unreachable

    async def claim(name: str, seconds: float) -> bool:
        ttl = max(1, int(seconds))
        try:
            return bool(await state.redis.set(f"aiw:{name}", b"1", nx=True, ex=ttl))
        except UNAVAILABLE:  # no de-duplication across replicas for now: better twice than never
            return True

    return state, claim


def build_gateway(
    config: Config,
    *,
    store_url: str,
    master_key: Secret | None,
    settings: GatewaySettings | None = None,
    auth_ttl: float = 2.0,
    pricing: Pricing | None = None,
) -> GatewayParts:
    settings = settings or GatewaySettings()
    database = Database(store_url)
    keys = KeyStore(database)
    writer = LogWriter(database, store_content=settings.store_content)
    auth = Authenticator(master_key=master_key, lookup=keys.find_by_secret, ttl=auth_ttl)
    budgets = BudgetStore(database)
    book = BudgetBook(budgets)
    state, claim = limit_state(config)
    alerts = Alerts(config.alerts, claim=claim)

    async def soft_limit(budget: BudgetRecord, window_id: str, spent: float) -> None:
        await alerts.fire(
            "budget_soft_limit",
            f"{budget.id}:{window_id}",
            f"the {budget.label} budget passed its soft limit: ${spent:.2f} of "
            f"${budget.limit_usd:.2f} spent (soft limit ${budget.soft_usd:.2f})",
            {"budget": budget.public(), "window": window_id, "spent_usd": spent},
        )

    admission = Admission(state, book, on_soft_limit=soft_limit)
    router = Router.from_config(config, state=state)
    if pricing is None and router.catalog is not None:
        pricing = CatalogPricing(router.catalog)
    health = None
    if isinstance(state, FallbackState):
        health = HealthSync(router, state.redis)
    cache = open_cache(
        config.cache,
        database=database,
        redis_client=state.redis if isinstance(state, FallbackState) else None,
    )
    gateway = Gateway(
        router,
        auth,
        database=database,
        writer=writer,
        keys=keys,
        settings=settings,
        admission=admission,
        pricing=pricing,
        alerts=alerts,
        budgets=budgets,
        cache=cache,
        cache_config=config.cache,
        guardrails=Guardrails(config.guardrails),
        semantic=open_semantic(config.cache.semantic, router, ttl=config.cache.ttl)
        if cache is not None
        else None,
    )
    install_auth_guard(gateway, state.redis if isinstance(state, FallbackState) else None)
    install_cors(gateway, config.server.cors_origins)
    if health is not None:

        async def start_health() -> None:
            health.start()

        gateway.mount_hooks(on_startup=start_health, on_shutdown=health.aclose)
    mount_batches(gateway, database)
    mount_flows(gateway)  # flow webhooks, the review API, scheduled flows
    if router.rollouts:  # per-variant latency, errors and cost of canary rollouts
        gateway.observers.append(RolloutMetrics(router).observe)
    parts = GatewayParts(gateway, database, keys, writer, budgets, state, alerts)
    install_observability(parts, config, master_key=master_key)  # metrics, logs, alerts, traces
    admin_models.install(gateway)  # /admin/models: deployments' health, pacing, prices
    # The web console at /ui, and its sessions in place of a key on the admin paths.
    install_console(gateway, keys, config.server.ui, master_key=master_key)
    return parts
