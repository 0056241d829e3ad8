"""``aiwire keys``: manage a running gateway's virtual keys through its admin API.

The commands talk HTTP to the gateway rather than to its database, so they work the same against
one SQLite replica or many PostgreSQL ones, the change is audited by the gateway, and this
replica's key cache is refreshed at once. The master key travels only in the ``Authorization``
header; it is never printed, not even in ``--help`` defaults.

A new key's secret is printed once, on a line of its own (so it can be copied or piped); the
gateway cannot show it again.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

keys_app = typer.Typer(
    name="keys",
    help="Create, list, revoke and rotate the virtual keys (aiw-...) of a running gateway.\n\n"
    "Example: aiwire keys create --name app1 --models gpt-4o-mini --expires 30d",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:4000"
TIMEOUT = 10.0
#: Terminal width from which ``keys list`` fits one row per key.
WIDE = 110

UrlOpt = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="AIWIRE_URL",
        help="The gateway's base URL (default: $AIWIRE_URL, else http://127.0.0.1:4000).",
        show_default=False,
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--master-key",
        envvar="AIWIRE_MASTER_KEY",
        help="The gateway's master key (default: $AIWIRE_MASTER_KEY; prefer the variable, "
        "so the key stays out of your shell history).",
        show_default=False,
        show_envvar=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the gateway's JSON answer, for scripts.")
]


class _Failure(Exception):
    """A problem to report as one red line."""


class _Admin:
    """A small synchronous client for ``/admin/keys``."""

    def __init__(self, url: str, master_key: str | None) -> None:
        if not master_key:
            raise _Failure(
                "no master key: export AIWIRE_MASTER_KEY=... (the gateway's master key) "
                "or pass --master-key"
            )
        if not url.startswith(("http://", "https://")):
            raise _Failure(f"--url must start with http:// or https://, e.g. {DEFAULT_URL}")
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"authorization": f"Bearer {master_key}"},
            timeout=TIMEOUT,
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            with self._client as client:
                resp = client.request(
                    method, path, content=None if body is None else orjson.dumps(body)
                )
        except httpx.ConnectError:
            raise _Failure(
                f"cannot reach the gateway at {self.url}: is it running? "
                "Point --url (or $AIWIRE_URL) at it"
            ) from None
        except httpx.TimeoutException:
            raise _Failure(
                f"the gateway at {self.url} did not answer within {TIMEOUT:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise _Failure(f"request to {self.url} failed: {type(exc).__name__}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.is_success and data is not None:
            return data
        raise _Failure(_error_line(resp.status_code, data))


def _error_line(status: int, data: Any) -> str:
    message = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
    if not message:
        return (
            f"the gateway answered {status} without an error message; is --url an aiwire gateway?"
        )
    hint = ""
    if status == 401:
        hint = " (check --master-key / $AIWIRE_MASTER_KEY)"
    return f"{status}: {message}{hint}"


@contextlib.contextmanager
def _friendly_errors() -> Iterator[None]:
    try:
        yield
    except _Failure as exc:
        _die(str(exc))


def _die(message: str) -> NoReturn:
    # soft_wrap: one logical line (the terminal wraps it), so scripts can grep it whole.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _split(value: str | None) -> list[str]:
    return [] if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_secret(secret: str, what: str) -> None:
    console.print(
        f"[bold green]{what}.[/] [bold]Store the key now: it cannot be shown again.[/]",
        highlight=False,
        soft_wrap=True,
    )
    # Alone on its line, unstyled and unwrapped, so it copies (or pipes) whole.
    console.print(secret, markup=False, highlight=False, soft_wrap=True)


def _when(iso: str | None, none: str) -> str:
    """``2026-01-31 12:00Z``: a timestamp short enough for a table cell (the JSON has it whole)."""
    if not iso:
        return none
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _revoked(record: dict[str, Any]) -> str:
    revoked = record["revoked_at"]
    if revoked and datetime.fromisoformat(revoked) > datetime.now(UTC):
        return f"{_when(revoked, '-')} (grace)"  # rotated: still works until then
    return _when(revoked, "-")


def _list_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="Virtual keys", box=box.SIMPLE_HEAD)
    # id and prefix whole, so they can be copied (into revoke / rotate) or recognised.
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("prefix", no_wrap=True)
    for col in ("models", "expires", "revoked"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            r["id"],
            r["name"],
            f"{r['key_prefix']}…",
            ", ".join(r["models"]) or "all",
            _when(r["expires_at"], "never"),
            _revoked(r),
            style="dim" if r["revoked_at"] else None,
        )
    return table


def _record_table(record: dict[str, Any]) -> Table:
    """One key, one field a row: readable at any terminal width."""
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = {
        "id": record["id"],
        "name": record["name"],
        "prefix": f"{record['key_prefix']}…",
        "models": ", ".join(record["models"]) or "all",
        "endpoints": ", ".join(record["endpoints"]) or "all",
        "team": record["team"] or "-",
        "expires": _when(record["expires_at"], "never"),
        "limits": ", ".join(f"{record[f]} {f}" for f in ("rpm", "tpm") if record.get(f) is not None)
        or "none",
    }
    if record.get("budget"):
        b = record["budget"]
        rows["budget"] = f"${b['limit_usd']:g} per {b['period']}"
    if record.get("rotated_from"):
        rows["rotated from"] = record["rotated_from"]
    if record.get("revoked_at"):
        rows["revoked"] = _revoked(record)
    for field, value in rows.items():
        table.add_row(field, value)
    return table


@keys_app.command()
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for, e.g. app1.")],
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated model names the key may use (default: all)."),
    ] = None,
    endpoints: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated endpoints the key may call, e.g. /v1/chat/completions "
            "(default: all)."
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime: 90m, 12h, 30d, 2w or seconds (default: never expires)."),
    ] = None,
    team: Annotated[str | None, typer.Option(help="Team the key belongs to.")] = None,
    rpm: Annotated[
        int | None, typer.Option(help="Requests per minute (default: no limit).")
    ] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute (default: no limit).")] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="A spending limit in USD for this key (see --budget-period)."),
    ] = None,
    budget_period: Annotated[
        str, typer.Option(help="The budget's period: day, week, month or total.")
    ] = "month",
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a virtual key and print its secret, once.

    Example: aiwire keys create --name app1 --models "gpt-4o-mini,smart" --expires 30d --rpm 120
    """
    from aiwire.server.durations import parse_duration

    body: dict[str, Any] = {"name": name}
    if models is not None:
        body["models"] = _split(models)
    if endpoints is not None:
        body["endpoints"] = _split(endpoints)
    if expires is not None:
        try:
            parse_duration(expires)  # the gateway checks too; failing here saves a round trip
        except ValueError as exc:
            _die(f"--expires: {exc}")
        body["expires_in"] = expires
    if team is not None:
        body["team"] = team
    if rpm is not None:
        body["rpm"] = rpm
    if tpm is not None:
        body["tpm"] = tpm
    with _friendly_errors():
        data = _Admin(url, master_key).call("POST", "/admin/keys", body)
        if budget is not None:
            data["budget"] = _Admin(url, master_key).call(
                "POST",
                "/admin/budgets",
                {"scope": "key", "scope_id": data["id"], "period": budget_period,
                 "limit_usd": budget},
            )  # fmt: skip
    if as_json:
        _print_json(data)
        return
    _print_secret(data["key"], f"Created key {data['id']} ({data['name']})")
    console.print(_record_table(data))


@keys_app.command()
def update(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from `aiwire keys list`.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use ('' for all).")
    ] = None,
    team: Annotated[str | None, typer.Option(help="A new team ('' for none).")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute (0 removes it).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute (0 removes it).")] = None,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's name, models, team or rate limits (audited; applies at once here).

    Example: aiwire keys update key_0123456789abcdef01234567 --rpm 600 --tpm 200000
    """
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if models is not None:
        body["models"] = _split(models)
    if team is not None:
        body["team"] = team or None
    for field, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None:
            body[field] = value or None
    if not body:
        _die("nothing to change: give --name, --models, --team, --rpm or --tpm")
    with _friendly_errors():
        data = _Admin(url, master_key).call("PATCH", f"/admin/keys/{key_id}", body)
    if as_json:
        _print_json(data)
        return
    console.print(f"Updated key {data['id']} ({data['name']}).", highlight=False)
    console.print(_record_table(data))


@keys_app.command("list")
def list_keys(
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every key: scopes, expiry and revocation (never the secrets: the gateway has none).

    Example: aiwire keys list --url http://gateway:4000
    """
    with _friendly_errors():
        data = _Admin(url, master_key).call("GET", "/admin/keys")
    records = data["data"]
    if as_json:
        _print_json(records)
        return
    if not records:
        console.print("No keys yet. Create one: aiwire keys create --name app1")
        return
    if console.width >= WIDE:
        console.print(_list_table(records))
        return
    for record in records:  # a narrow terminal: one small table per key beats a crushed one
        console.print(_record_table(record))


@keys_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from `aiwire keys list`.")],
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key now. This gateway refuses it at once, other replicas within seconds.

    Example: aiwire keys revoke key_0123456789abcdef01234567
    """
    with _friendly_errors():
        data = _Admin(url, master_key).call("POST", f"/admin/keys/{key_id}/revoke")
    if as_json:
        _print_json(data)
        return
    console.print(
        f"Revoked key {data['id']} ({data['name']}, {data['key_prefix']}…) "
        f"at {data['revoked_at']}.",
        highlight=False,
        soft_wrap=True,
    )


@keys_app.command()
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from `aiwire keys list`.")],
    grace: Annotated[
        str,
        typer.Option(
            help="How long the old key keeps working, e.g. 1h, so deployed apps can switch; "
            "0 stops it at once."
        ),
    ] = "0",
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a key with a new one (same name, scopes and expiry) and print the new secret, once.

    Example: aiwire keys rotate key_0123456789abcdef01234567 --grace 1h
    """
    from aiwire.server.durations import parse_duration

    try:
        parse_duration(grace)
    except ValueError as exc:
        _die(f"--grace: {exc}")
    with _friendly_errors():
        data = _Admin(url, master_key).call(
            "POST", f"/admin/keys/{key_id}/rotate", {"grace": grace}
        )
    if as_json:
        _print_json(data)
        return
    _print_secret(data["key"], f"Rotated {key_id} into {data['id']} ({data['name']})")
    console.print(_record_table(data))
    console.print(
        f"The old key works until {_when(data['old_key_valid_until'], 'now')}.",
        highlight=False,
        soft_wrap=True,
    )


__all__ = ["keys_app"]
