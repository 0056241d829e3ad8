"""``GET /admin/models``: every deployment with its health, pacing, prices and deprecation.

- **health**: the router's circuit breaker for the deployment (``closed``, ``open`` while it
  cools down after repeated failures, ``half-open`` while a probe may go), the seconds of
  cooldown left, consecutive failures, requests in flight and a provider-requested pause;
- **pacing**: the rpm/tpm the deployment is paced to (configured, or learned from the
  provider's rate-limit headers) and how much of them the last minute used, counted from the
  request log (so every replica's traffic counts; one query on the ``ts`` index);
- **prices** and **deprecation** from the model catalog, as ``aiwire models --prices`` shows.

The numbers are this replica's view of circuits and in-flight requests (with ``server.redis``
the circuits are shared, see :mod:`aiwire.limits.health`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlalchemy import func, select

from aiwire.catalog import Catalog, ModelInfo
from aiwire.router import Deployment, Router
from aiwire.server import admin_base as base
from aiwire.server.admin_base import Timestamp
from aiwire.store.db import Database
from aiwire.store.models import RequestLog

if TYPE_CHECKING:
    from aiwire.server.app import Gateway

router = APIRouter(tags=["models"])

#: The window pacing utilisation is measured over.
WINDOW = timedelta(seconds=60)


@dataclass
class ModelsContext:
    router: Router
    database: Database | None


def _context(request: Request) -> ModelsContext:
    return cast(ModelsContext, request.app.state.models)


Models = Annotated[ModelsContext, Depends(_context)]


class Health(base.Output):
    state: Literal["closed", "open", "half-open"] = Field(
        description="The circuit breaker: open = cooling down, not sent requests."
    )
    cooldown_seconds: float = Field(description="Cooldown left (0 unless open).")
    consecutive_failures: int
    inflight: int
    max_concurrency: int | None
    rate_limited_seconds: float = Field(description="A pause the provider asked for, left.")


class Pacing(base.Output):
    source: Literal["configured", "learned"] | None = Field(
        description="Where the limits come from (null: not paced)."
    )
    rpm_limit: float | None
    tpm_limit: float | None
    requests_last_minute: int
    tokens_last_minute: int
    rpm_utilisation: float | None = Field(description="Share of rpm_limit used (0-1+).")
    tpm_utilisation: float | None


class Prices(base.Output):
    catalog_id: str
    input_per_1m: float
    cached_input_per_1m: float | None
    output_per_1m: float
    context_window: int
    max_output_tokens: int


class Deprecation(base.Output):
    date: str
    replacement: str | None
    retired: bool


class DeploymentOut(base.Output):
    id: str = Field(description="name@provider/model, as logs and metrics name it.")
    name: str
    provider: str
    provider_type: str
    model: str
    weight: float
    variant: str | None
    fallbacks: list[str]
    health: Health
    pacing: Pacing
    prices: Prices | None = Field(description="Null: the model is not in the catalog.")
    deprecation: Deprecation | None


class ModelsOut(base.Output):
    object: Literal["list"]
    catalog_as_of: str | None
    measured_at: Timestamp
    data: list[DeploymentOut]


@router.get("/models", response_model=ModelsOut, summary="Deployments: health, pacing, prices")
async def list_models(models: Models) -> dict[str, Any]:
    now = datetime.now(UTC)
    used = await _last_minute(models.database, now)
    mono = time.monotonic()
    catalog = models.router.catalog
    data = [
        _deployment(d, models.router, catalog, used.get(d.id, (0, 0)), mono)
        for d in models.router.deployments()
    ]
    return {
        "object": "list",
        "catalog_as_of": catalog.as_of if catalog is not None else None,
        "measured_at": now.isoformat(),
        "data": data,
    }


async def _last_minute(database: Database | None, now: datetime) -> dict[str, tuple[int, int]]:
    """Requests and tokens per deployment in the last :data:`WINDOW` (every replica's)."""
    if database is None:
        return {}
    query = (
        select(
            RequestLog.deployment,
            func.count(),
            func.coalesce(func.sum(RequestLog.input_tokens + RequestLog.output_tokens), 0),
        )
        .where(RequestLog.ts >= now - WINDOW, RequestLog.deployment.is_not(None))
        .group_by(RequestLog.deployment)
    )
    async with database.session() as session:
        rows = (await session.execute(query)).all()
    return {str(dep): (int(n), int(tokens)) for dep, n, tokens in rows}


def _deployment(
    dep: Deployment, router: Router, catalog: Catalog | None, used: tuple[int, int], mono: float
) -> dict[str, Any]:
    limits = router.pacer.limits(dep.id)
    configured = dep.rpm is not None or dep.tpm is not None
    requests, tokens = used
    state = dep.state(mono)
    info = _catalog_entry(catalog, dep) if catalog is not None else None
    return {
        "id": dep.id,
        "name": dep.name,
        "provider": dep.provider.name,
        "provider_type": dep.provider.type,
        "model": dep.model,
        "weight": dep.weight,
        "variant": dep.variant,
        "fallbacks": list(dep.fallbacks),
        "health": {
            "state": state,
            "cooldown_seconds": round(max(0.0, dep.open_until - mono), 3)
            if state == "open"
            else 0.0,
            "consecutive_failures": dep.consecutive_failures,
            "inflight": dep.inflight,
            "max_concurrency": dep.max_concurrency,
            "rate_limited_seconds": round(max(0.0, dep.rate_limited_until - mono), 3),
        },
        "pacing": {
            "source": ("configured" if configured else "learned") if limits.paced else None,
            "rpm_limit": limits.rpm,
            "tpm_limit": limits.tpm,
            "requests_last_minute": requests,
            "tokens_last_minute": tokens,
            "rpm_utilisation": round(requests / limits.rpm, 4) if limits.rpm else None,
            "tpm_utilisation": round(tokens / limits.tpm, 4) if limits.tpm else None,
        },
        "prices": _prices(info),
        "deprecation": _deprecation(info),
    }


def _catalog_entry(catalog: Catalog, dep: Deployment) -> ModelInfo | None:
    """The upstream model's entry; for the built-in simulator's own names, their simulator
    entries (real models' figures, never retired) - as ``aiwire models --prices`` does."""
    own = catalog.lookup(dep.name)
    if own is not None and own.provider == "simulator":
        return own
    return catalog.lookup(dep.model)


def _prices(info: ModelInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "catalog_id": info.id,
        "input_per_1m": info.input_per_1m,
        "cached_input_per_1m": info.cached_input_per_1m,
        "output_per_1m": info.output_per_1m,
        "context_window": info.context_window,
        "max_output_tokens": info.max_output_tokens,
    }


def _deprecation(info: ModelInfo | None) -> dict[str, Any] | None:
    if info is None or info.deprecation_date is None:
        return None
    return {
        "date": info.deprecation_date.isoformat(),
        "replacement": info.replacement,
        "retired": info.retired(),
    }


def install(gateway: Gateway) -> None:
    """Serve ``/admin/models`` on ``gateway``'s admin API (its router and store)."""
    if gateway.admin is None:
        return
    gateway.admin.app.state.models = ModelsContext(gateway.router, gateway.database)
    gateway.admin.include(router)


__all__ = ["ModelsContext", "install", "router"]
