"""Operating a gateway: ``aiwire audit verify|list``, ``aiwire logs purge``, ``aiwire doctor``.

Unlike ``aiwire keys`` these read the store directly (``--store``, else ``server.store`` of the
config): verifying the audit chain must not trust the gateway whose actions it checks, and the
doctor is for when the gateway may not be running at all. Nothing printed ever contains a
secret: database URLs are shown with the password hidden, keys by id and name.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aiwire import errors
from aiwire.config import Config

T = TypeVar("T")

audit_app = typer.Typer(
    name="audit",
    help="The audit trail of admin actions (append-only, hash-chained).\n\n"
    "Example: aiwire audit verify -c aiwire.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
logs_app = typer.Typer(
    name="logs",
    help="The request log's stored content (prompts and completions).\n\n"
    "Example: aiwire logs purge --dry-run",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $AIWIRE_CONFIG, then ./aiwire.yaml).",
        exists=True,
        dir_okay=False,
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The store's URL (sqlite:///path or postgresql://...); default: server.store of "
        "the config.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


def _die(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _config(path: Path | None) -> Config:
    from aiwire.cli import _load

    try:
        return _load(path)
    except errors.AIWireError as exc:
        _die(str(exc))


def _store_url(config: Path | None, store: str | None) -> str:
    return store or _config(config).server.store


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except errors.AIWireError as exc:
        _die(str(exc))


# -- audit -----------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Check the audit trail's hash chain; exit 1 naming the first row that does not match
    (edited, or a row before it deleted or reordered).

    Example: aiwire audit verify --store sqlite:///.aiwire/aiwire.db
    """
    from aiwire.observability.audit_trail import verify_chain

    result = _run(verify_chain(_store_url(config, store)))
    if result.ok:
        console.print(f"audit trail intact: {result.rows} row(s) checked", highlight=False)
        return
    row = result.bad
    assert row is not None
    _die(
        f"audit trail broken at row {row['id']} ({row['ts']}, {row['actor']} {row['action']} "
        f"{row['target']}): its hash or its link to the row before does not match - the row "
        f"was edited, or a row before it was deleted or reordered ({result.rows} row(s) "
        "before it are intact)"
    )


@audit_app.command("list")
def audit_list(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest rows to show.")] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this (key., budget.).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only rows about this id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest admin actions: who did what to which key or budget, and what changed.

    Example: aiwire audit list --action key. --limit 20
    """
    from aiwire.observability.audit_trail import list_rows

    rows = _run(list_rows(_store_url(config, store), limit=limit, action=action, target=target))
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        console.print("no audit rows match")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("id", "time (UTC)", "actor", "action", "target", "changed"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["ts"][:19].replace("T", " "),
            escape(r["actor"]),
            escape(r["action"]),
            escape(r["target"]),
            escape(", ".join(r["changed"]) or "-"),
        )
    console.print(table)


# -- logs -------------------------------------------------------------------------------------


@logs_app.command("purge")
def logs_purge(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Keep content this many days for keys without their own retention_days "
            "(default: logging.content_retention_days of the config).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
) -> None:
    """Clear prompts and completions older than each key's retention_days (the rows stay for
    usage reports). The gateway also does this in the background; this runs it now (audited).

    Example: aiwire logs purge -c aiwire.yaml --days 7
    """
    from aiwire.observability.retention import purge_content
    from aiwire.store.db import Database

    cfg = _config(config) if store is None or days is None else None
    url = store or (cfg.server.store if cfg else "")
    default_days = days if days is not None else cfg.logging.content_retention_days if cfg else 0

    async def purge() -> Any:
        database = Database(url)
        try:
            return await purge_content(
                database,
                default_days=default_days,
                actor=f"cli:{_user()}",
                dry_run=dry_run,
            )
        finally:
            await database.aclose()

    report = _run(purge())
    verb = "would clear" if dry_run else "cleared"
    console.print(
        f"{verb} the content of {report.rows} request-log row(s) "
        f"({report.keys} key(s) with their own retention_days; others: {default_days} days)",
        highlight=False,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return "unknown"


# -- doctor -----------------------------------------------------------------------------------


def doctor(
    config: ConfigOpt = None,
    expiring_days: Annotated[
        int, typer.Option(min=0, help="Warn about keys expiring within this many days.")
    ] = 14,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per network check.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Check this installation: the config, each provider's credential (one models-list
    call each), deprecated models, the store, Redis, keys about to expire. One line per
    finding with its fix; exit 1 when any is a problem.

    Example: aiwire doctor -c aiwire.yaml --expiring-days 30
    """
    from aiwire.cli import _load
    from aiwire.observability.doctor import diagnose

    findings = asyncio.run(
        diagnose(lambda: _load(config), expiring_days=expiring_days, timeout=timeout)
    )
    if as_json:
        typer.echo(
            orjson.dumps([f.public() for f in findings], option=orjson.OPT_INDENT_2).decode()
        )
    else:
        for f in findings:
            typer.echo(f.line())
    problems = sum(f.problem for f in findings)
    if problems:
        if not as_json:
            print(f"{problems} problem(s) found", file=sys.stderr)
        raise typer.Exit(1)
