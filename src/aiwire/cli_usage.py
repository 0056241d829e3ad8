"""``aiwire usage``: what a running gateway's traffic cost, from its request log.

Like ``aiwire keys`` it asks the gateway's admin API (``GET /admin/usage``) rather than its
database, so it works the same against one SQLite replica or many sharing PostgreSQL, and the
grouping, percentiles and UTC days are computed in one place (:mod:`aiwire.store.usage`).
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich import box
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

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

#: Columns the table shows for the metrics of each row (JSON and CSV have them all).
_TABLE_METRICS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("cache_hits", "cache hits"),
    ("input_tokens", "input tok"),
    ("output_tokens", "output tok"),
    ("cached_tokens", "cached tok"),
    ("cost_usd", "cost"),
    ("p50_latency_ms", "p50 ms"),
    ("p95_latency_ms", "p95 ms"),
)
#: What a terminal too narrow for the whole table gives up first: key ids (the JSON has them),
#: then these columns, in this order. Requests, errors, cost and p95 always stay.
_DROP_ORDER = ("cache_hits", "cached_tokens", "p50_latency_ms", "output_tokens", "input_tokens")
#: Group cells (key names, models, days) never shrink below this many characters.
_GROUP_MIN = 12
#: A width no terminal has: measuring a table in it gives its natural (unfolded) width.
_UNBOUNDED = 100_000


def money(usd: float) -> str:
    """``$1,234.57`` from a dollar up; below that enough decimals to show two significant
    digits (``$0.0042``, ``$0.000018``), since per-request costs are fractions of a cent."""
    if usd == 0:
        return "$0.00"
    if abs(usd) >= 1:
        return f"${usd:,.2f}"
    decimals = min(8, max(2, 1 - math.floor(math.log10(abs(usd)))))
    return f"${usd:,.{decimals}f}"


def _count(value: int) -> str:
    return f"{value:,}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _metric(name: str, record: dict[str, Any]) -> str:
    value = record[name]
    if name == "cost_usd":
        return money(value)
    if name.endswith("_latency_ms"):
        return _ms(value)
    if name == "errors" and value:
        return f"[red]{_count(value)}[/]"
    return _count(value)


def _group_cells(by: list[str], record: dict[str, Any], key_ids: bool) -> list[str]:
    cells = []
    for name in by:
        value = record.get(name)
        if name == "key":
            # The name to read, the id to act on (aiwire keys ...); no id: the master key.
            label = escape(record.get("key_name") or "(unknown key)")
            if not value:
                cells.append("master key / none")
            else:
                cells.append(f"{label} [dim]{escape(value)}[/]" if key_ids else label)
        else:
            cells.append("-" if value is None else escape(str(value)))
    return cells


def _title(answer: dict[str, Any]) -> str:
    since, until = (answer[k][:16].replace("T", " ") for k in ("since", "until"))
    title = f"Usage by {', '.join(answer['by'])}, {since} to {until} UTC"
    filters = answer.get("filters") or {}
    if filters:
        title += " (" + ", ".join(f"{k}={v}" for k, v in filters.items()) + ")"
    return title


def usage_table(answer: dict[str, Any], width: int) -> Table:
    """The gateway's ``/admin/usage`` answer as a Rich table with a totals row, fitted to a
    terminal ``width`` wide by leaving out what matters least (see :data:`_DROP_ORDER`)."""
    metrics = [name for name, _ in _TABLE_METRICS]
    key_ids = "key" in answer["by"]
    table = _table(answer, metrics, key_ids)
    for step in ("key ids", *_DROP_ORDER):
        if _fits(table, width):
            break
        if step != "key ids":
            metrics.remove(step)
        elif key_ids:
            key_ids = False
        else:
            continue  # not grouped by key: no ids to give up
        table = _table(answer, metrics, key_ids)
    if not key_ids and "key" in answer["by"]:
        table.caption = "Key ids left out to fit the terminal: --json has them."
    return table


def _fits(table: Table, width: int) -> bool:
    """Whether every cell fits on one line: Rich would otherwise fold the group cells, and
    squeeze them away entirely once the number columns alone fill the width."""
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), table)
    return natural.maximum <= width


def _table(answer: dict[str, Any], metrics: list[str], key_ids: bool) -> Table:
    by: list[str] = answer["by"]
    table = Table(title=escape(_title(answer)), box=box.SIMPLE_HEAD)
    rows = [_group_cells(by, record, key_ids) for record in answer["data"]]
    for i, name in enumerate(by):
        # min_width: numbers do not wrap, so without it a narrow terminal squeezes these away.
        longest = max((Text.from_markup(row[i]).cell_len for row in rows), default=0)
        table.add_column(name, overflow="fold", min_width=max(len(name), min(longest, _GROUP_MIN)))
    for name, header in _TABLE_METRICS:
        if name in metrics:
            table.add_column(header, justify="right", no_wrap=True)
    for cells, record in zip(rows, answer["data"], strict=True):
        table.add_row(*cells, *(_metric(n, record) for n in metrics))
    table.add_section()
    table.add_row(
        "total",
        *([""] * (len(by) - 1)),
        *(_metric(n, answer["totals"]) for n in metrics),
        style="bold",
    )
    return table


def usage(
    by: Annotated[
        str,
        typer.Option(
            help="Group by one or more of key, team, model, deployment, provider, day (UTC) "
            "and status, comma-separated."
        ),
    ] = "key",
    since: Annotated[
        str,
        typer.Option(
            help="Start: a duration back from now (7d, 12h, 90m) or an ISO date/time "
            "(2030-01-31, 2030-01-31T12:00Z; UTC unless it has an offset)."
        ),
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(help="End, not included, in the same forms (default: now)."),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Only this key id (key_...).")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (as clients ask).")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV with a header row, for spreadsheets.")
    ] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Requests, errors, cache hits, tokens, cost and p50/p95 latency from the request log.

    Example: aiwire usage --by key --since 7d

    Example: aiwire usage --by team,day --since 2030-01-01 --until 2030-02-01 --csv > jan.csv
    """
    if as_csv and as_json:
        _die("give --csv or --json, not both")
    query = {"by": by, "since": since, "until": until}
    query |= {"key": key, "team": team, "model": model, "provider": provider}
    path = "/admin/usage?" + urlencode({k: v for k, v in query.items() if v is not None})
    with _friendly_errors():
        answer = _Admin(url, master_key).call("GET", path)
    if as_json:
        _print_json(answer)
        return
    if as_csv:
        from aiwire.store.usage import columns, to_csv  # sqlalchemy: only when needed

        sys.stdout.write(to_csv(answer["data"], columns(answer["by"])))
        return
    if not answer["data"]:
        console.print(f"No requests: {escape(_title(answer))}.", highlight=False, soft_wrap=True)
        return
    console.print(usage_table(answer, console.width))


__all__ = ["money", "usage", "usage_table"]
