"""``aiwire usage`` against a running gateway: the Rich table with its totals row, ``--json``
and ``--csv`` (the same bytes as the admin API's CSV), filters, and one-line errors."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from aiwire.cli import app
from aiwire.cli_usage import money
from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer
from aiwire.store import Database, KeyStore, RequestLog
from aiwire.store.usage import columns

MASTER = "sk-aiwire-master-usage-cli-0123456789"
DAY = datetime(2025, 6, 1, tzinfo=UTC)
RANGE = ["--since", "2025-06-01", "--until", "2025-06-03"]
runner = CliRunner()


def _row(n: int, hours: float, **fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "request_id": f"cli-{n}",
        "ts": DAY + timedelta(hours=hours),
        "endpoint": "/v1/chat/completions",
        "model": "gpt",
        "provider": "openai",
        "deployment": "gpt@openai/gpt-4o-mini",
        "status": 200,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cached_tokens": 0,
        "latency_ms": 250.0,
        "retries": 0,
        "fallback": False,
        "stream": False,
        "cost_usd": 0.000018,
        "cache_hit": False,
        **fields,
    }
    return RequestLog(**values)


async def _seed(store_url: str) -> dict[str, str]:
    database = Database(store_url)
    try:
        keys = KeyStore(database)
        ops, _ = await keys.create("ops-app", team="ops", actor="test")
        web, _ = await keys.create("web-app", team="web", actor="test")
        rows = [
            _row(1, 1, key_id=ops.id, team="ops", cost_usd=1234.5),
            _row(2, 2, key_id=ops.id, team="ops", status=429, latency_ms=900.0),
            _row(3, 3, key_id=web.id, team="web", cost_usd=0.0042),
            _row(4, 26, key_id=web.id, team="web", model="claude", provider="anthropic"),
            _row(5, 27, key_id=None, model="=cmd()", cost_usd=0.5),  # the master key
        ]
        async with database.session() as session:
            session.add_all(rows)
        return {"ops": ops.id, "web": web.id}
    finally:
        await database.aclose()


@pytest.fixture(scope="module")
def gateway(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    store_url = f"sqlite:///{tmp_path_factory.mktemp('usage-cli') / 'aiwire.db'}"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0), store_url=store_url, master_key=Secret(MASTER)
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield server.url, asyncio.run(_seed(store_url))


def usage(
    gateway: tuple[str, dict[str, str]], *args: str, master: str | None = MASTER, width: int = 220
) -> Any:
    result = runner.invoke(
        app,
        ["usage", *args, "--url", gateway[0]],
        env={"AIWIRE_MASTER_KEY": master, "AIWIRE_URL": None, "COLUMNS": str(width)},
    )
    assert "Traceback" not in result.output and MASTER not in result.output
    return result


def api(gateway: tuple[str, dict[str, str]], query: str) -> httpx.Response:
    return httpx.get(
        f"{gateway[0]}/admin/usage?{query}",
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=10,
    )


def _line(output: str, needle: str) -> str:
    return next(line for line in output.splitlines() if needle in line)


def test_table_with_totals(gateway: tuple[str, dict[str, str]]) -> None:
    result = usage(gateway, "--by", "key", *RANGE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Usage by key, 2025-06-01 00:00 to 2025-06-03 00:00 UTC" in out
    for header in ("requests", "errors", "cache hits", "cost", "p50 ms", "p95 ms"):
        assert header in out
    ops = _line(out, "ops-app")
    assert gateway[1]["ops"] in ops and "$1,234.50" in ops  # name and id, dollars and cents
    assert " 2 " in ops and " 900 " in ops  # two requests (one a 429); p95 is the slow one
    web = _line(out, "web-app")
    assert "$0.0042" in web  # sub-cent costs keep two significant digits
    assert "master key" in out
    total = _line(out, "total")
    assert "$1,235.00" in total and " 5 " in total and "6,000" in total  # 5 x 1,200 tokens
    # Most expensive first, the totals row last.
    lines = out.splitlines()
    assert lines.index(ops) < lines.index(_line(out, "master key")) < lines.index(web)
    assert lines.index(total) > lines.index(web)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_narrow_terminals_keep_every_group_readable(
    gateway: tuple[str, dict[str, str]], width: int
) -> None:
    result = usage(gateway, "--by", "key,day", *RANGE, width=width)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in result.output  # nothing cut short
    ops = _line(result.output, "ops-app")
    assert "2025-06-01" in ops and "$1,234.50" in ops and "900" in ops  # cost and p95 stay
    assert _line(result.output, "total").split()[1:3] == ["5", "1"]
    assert gateway[1]["ops"] not in result.output and "--json has them" in result.output
    assert len([line for line in lines if "web-app" in line]) == 2  # one line per group


def test_by_day_with_filters(gateway: tuple[str, dict[str, str]]) -> None:
    result = usage(gateway, "--by", "team,day", *RANGE, "--team", "web")
    assert result.exit_code == 0, result.output
    assert "(team=web)" in result.output
    days = [line for line in result.output.splitlines() if " web " in f" {line} "]
    assert len(days) == 2 and "2025-06-01" in days[0] and "2025-06-02" in days[1]
    model = usage(gateway, "--by", "model", *RANGE, "--model", "claude", "--key", gateway[1]["web"])
    assert model.exit_code == 0 and "claude" in model.output and "gpt" not in model.output
    none = usage(gateway, *RANGE, "--provider", "nobody")
    assert none.exit_code == 0 and "No requests" in none.output


def test_json_is_the_gateway_answer(gateway: tuple[str, dict[str, str]]) -> None:
    result = usage(gateway, "--by", "key,day", *RANGE, "--json")
    assert result.exit_code == 0, result.output
    expected = api(gateway, "by=key,day&since=2025-06-01&until=2025-06-03").json()
    assert orjson.loads(result.stdout) == expected
    assert expected["totals"]["requests"] == 5


def test_csv_is_the_same_as_the_api(gateway: tuple[str, dict[str, str]]) -> None:
    result = usage(gateway, "--by", "model,status", *RANGE, "--csv")
    assert result.exit_code == 0, result.output
    expected = api(gateway, "by=model,status&since=2025-06-01&until=2025-06-03&format=csv")
    assert result.stdout_bytes == expected.content  # byte for byte (CRLF: RFC 4180)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == columns(["model", "status"])
    assert [r[:2] for r in rows[1:]] == [
        ["gpt", "200"],  # $1,234.5042
        ["'=cmd()", "200"],  # $0.50; a cell a spreadsheet would run, defused
        ["claude", "200"],  # $0.000018 each: equal costs in group order
        ["gpt", "429"],
    ]


def test_errors_are_one_line(gateway: tuple[str, dict[str, str]]) -> None:
    bad_by = usage(gateway, "--by", "colour")
    assert bad_by.exit_code == 1
    assert "400" in bad_by.output and "'by'" in bad_by.output and "choose from" in bad_by.output
    assert len(bad_by.output.strip().splitlines()) == 1
    bad_since = usage(gateway, "--since", "last tuesday")
    assert bad_since.exit_code == 1 and "'since'" in bad_since.output and "7d" in bad_since.output
    both = usage(gateway, "--csv", "--json")
    assert both.exit_code == 1 and "not both" in both.output
    missing = usage(gateway, master=None)
    assert missing.exit_code == 1 and "AIWIRE_MASTER_KEY" in missing.output
    wrong = usage(gateway, master="sk-wrong-master-key-000")
    assert wrong.exit_code == 1 and "401" in wrong.output
    assert "sk-wrong-master-key-000" not in wrong.output


def test_unreachable_gateway() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = usage((f"http://127.0.0.1:{port}", {}))
    assert result.exit_code == 1 and "cannot reach the gateway" in result.output


def test_help_has_examples_and_hides_the_master_key() -> None:
    result = runner.invoke(app, ["usage", "--help"], env={"AIWIRE_MASTER_KEY": MASTER})
    assert result.exit_code == 0
    assert "Example: aiwire usage --by key --since 7d" in result.output
    assert MASTER not in result.output


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (0, "$0.00"),
        (1234.567, "$1,234.57"),
        (1, "$1.00"),
        (0.5, "$0.50"),
        (0.123, "$0.12"),
        (0.0042, "$0.0042"),
        (0.000018, "$0.000018"),
        (3e-12, "$0.00000000"),
    ],
)
def test_money(usd: float, shown: str) -> None:
    assert money(usd) == shown
