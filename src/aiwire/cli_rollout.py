"""``aiwire models --rollout``: each canary rollout's variants side by side, to promote or roll
back.

The split and the deployments come from the config; the figures (requests, observed share, error
rate, p50/p95 latency, cost) from the gateway's request log in ``server.store`` over ``--since``
(every replica writes there). Review acceptance shows where a review source reports it
(:meth:`aiwire.rollouts.metrics.RolloutMetrics.review` in a running process); the request log
does not hold review decisions.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from aiwire.rollouts.metrics import VariantStats, from_usage, variants_of

if TYPE_CHECKING:
    from aiwire.config import Config
    from aiwire.router import Router


def rollout_report(cfg: Config, router: Router, since: str) -> tuple[list[VariantStats], str]:
    """The variants' figures and a note on where they came from."""
    if not router.rollouts:
        return [], "no model in this config has a rollout"
    from aiwire.server.admin_base import parse_duration

    try:
        start = datetime.now(UTC) - parse_duration(since)
    except ValueError:
        raise typer.BadParameter(
            f"{since!r} is not a duration (e.g. 24h, 7d, 90m)", param_hint="--since"
        ) from None
    variants = variants_of(router)
    store = cfg.server.store
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).exists():
        note = f"no request log yet at {store}: showing the configured split only"
        return from_usage(router.rollouts, variants, []), note
    rows, note = asyncio.run(_usage(store, start))
    return from_usage(router.rollouts, variants, rows), note


async def _usage(store: str, start: datetime) -> tuple[list[Any], str]:
    """The request log grouped by model and deployment since ``start`` (no rows, and why,
    when there is no log to read)."""
    from aiwire.store.db import Database
    from aiwire.store.usage import usage_report

    database = Database(store)
    try:
        rows = await usage_report(database, ["model", "deployment"], start)
    except Exception as exc:  # a missing table, an unreachable server: say so, show the split
        return [], f"could not read the request log ({type(exc).__name__}): split only"
    finally:
        await database.aclose()
    return rows, f"request log since {start:%Y-%m-%d %H:%M} UTC"


def print_rollouts(
    console: Console, stats: list[VariantStats], note: str, *, as_json: bool
) -> None:
    """One table per model name: its variants' split, served share, requests, error rate,
    latency, cost per request and review acceptance (``--json``: every figure, totals too)."""
    if as_json:
        typer.echo(json.dumps([s.public() for s in stats], indent=2))
        return
    if not stats:
        console.print(note)
        return
    by_model: dict[str, list[VariantStats]] = {}
    for s in stats:
        by_model.setdefault(s.model, []).append(s)
    for model, variants in by_model.items():
        where = " · ".join(
            f"{s.variant}: {', '.join(d.split('@', 1)[-1] for d in s.deployments) or '-'}"
            for s in variants
        )
        table = Table(
            title=f"Rollout of {model}",
            caption=f"{where}\nreview: outputs accepted by reviewers (flows)",
            box=box.SIMPLE_HEAD,
        )
        table.add_column("variant")
        # Short headers: the table fits an 80-column terminal (``--json`` spells them out).
        for col in ("split", "served", "reqs", "errors", "p50 ms", "p95 ms", "$/req", "review"):
            table.add_column(col, justify="right")
        for s in variants:
            table.add_row(
                s.variant,
                f"{s.split:g}%",
                _pct(s.observed_share),
                f"{s.requests:,}",
                _pct(None if s.error_rate is None else 100 * s.error_rate, red=True),
                _ms(s.p50_latency_ms),
                _ms(s.p95_latency_ms),
                _usd(s.cost_per_request),
                _pct(None if s.acceptance is None else 100 * s.acceptance),
            )
        console.print(table)
    console.print(f"[dim]{note}[/]")
    console.print(
        "[dim]Promote: give the new variant 100 in the model's rollout: (and 0 to the old); "
        "roll back: the reverse. Then reload the gateway.[/]"
    )


def _pct(value: float | None, *, red: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}%"
    return f"[red]{text}[/]" if red and value > 0 else text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.2g}" if value >= 0.0001 else f"${value:.1e}"


__all__ = ["print_rollouts", "rollout_report"]
