"""``aiwire budgets``: spending limits of a running gateway, through its admin API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from aiwire.cli_keys import (
    DEFAULT_URL,
    JsonOpt,
    MasterOpt,
    UrlOpt,
    _Admin,
    _die,
    _friendly_errors,
    _print_json,
    console,
)

budgets_app = typer.Typer(
    name="budgets",
    help="Spending limits (USD) for a key, a team or everything, per day, week, month or in "
    "total. A request that could exceed one is refused with 429 budget_exceeded.\n\n"
    "Example: aiwire budgets set --team sales --period month --limit 500 --soft 400",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@budgets_app.command("set")
def set_budget(
    limit: Annotated[float, typer.Option("--limit", help="The hard limit in USD.")],
    key: Annotated[str | None, typer.Option(help="A key id (key_...): its own budget.")] = None,
    team: Annotated[str | None, typer.Option(help="A team: every key of the team.")] = None,
    period: Annotated[str, typer.Option(help="day, week, month or total.")] = "month",
    soft: Annotated[
        float | None, typer.Option(help="Alert (webhook) when spend passes this many USD.")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set (or replace) a budget; with neither --key nor --team it is global.

    Example: aiwire budgets set --key key_0123456789abcdef01234567 --period day --limit 5
    """
    if key and team:
        _die("give --key or --team, not both (neither: a global budget)")
    body: dict[str, Any] = {"period": period, "limit_usd": limit}
    if key:
        body |= {"scope": "key", "scope_id": key}
    elif team:
        body |= {"scope": "team", "scope_id": team}
    else:
        body["scope"] = "global"
    if soft is not None:
        body["soft_usd"] = soft
    with _friendly_errors():
        data = _Admin(url, master_key).call("POST", "/admin/budgets", body)
    if as_json:
        _print_json(data)
        return
    who = "global" if data["scope"] == "global" else f"{data['scope']} {data['scope_id']}"
    console.print(
        f"Budget {data['id']}: {who}, ${data['limit_usd']:g} per {data['period']}"
        + (f", alert at ${data['soft_usd']:g}" if data.get("soft_usd") is not None else ""),
        highlight=False,
        soft_wrap=True,
    )


@budgets_app.command("list")
def list_budgets(
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every budget with what its current period has spent.

    Example: aiwire budgets list
    """
    with _friendly_errors():
        data = _Admin(url, master_key).call("GET", "/admin/budgets")["data"]
    if as_json:
        _print_json(data)
        return
    if not data:
        console.print("No budgets. Set one: aiwire budgets set --limit 100")
        return
    table = Table(title="Budgets", box=box.SIMPLE_HEAD)
    for col in ("id", "scope", "period", "spent", "limit", "soft", "used"):
        table.add_column(
            col, no_wrap=col == "id", justify="right" if col in "spent limit soft used" else "left"
        )
    for b in data:
        spent = b.get("spent_usd") or 0.0
        who = "global" if b["scope"] == "global" else f"{b['scope']} {b['scope_id']}"
        used = spent / b["limit_usd"] if b["limit_usd"] else 1.0
        table.add_row(
            b["id"],
            who,
            b["period"],
            f"${spent:,.4f}",
            f"${b['limit_usd']:,.2f}",
            "-" if b.get("soft_usd") is None else f"${b['soft_usd']:,.2f}",
            f"[{'red' if used >= 1 else 'yellow' if used >= 0.8 else 'green'}]{used:.0%}[/]",
        )
    console.print(table)


@budgets_app.command("delete")
def delete_budget(
    budget_id: Annotated[str, typer.Argument(help="The budget's id (bud_...).")],
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Remove a budget.

    Example: aiwire budgets delete bud_0123456789abcdef0123
    """
    with _friendly_errors():
        _Admin(url, master_key).call("DELETE", f"/admin/budgets/{budget_id}")
    console.print(f"Deleted budget {budget_id}.", highlight=False)


__all__ = ["budgets_app"]
