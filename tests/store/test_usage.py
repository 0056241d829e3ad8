"""Usage reports on SQLite and the real PostgreSQL: every grouping and filter against a plain
Python recomputation of the same seeded log, exact nearest-rank percentiles, UTC days whatever
the connection's time zone, the documented order, and a query plan that uses the indexes."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import event, text

from aiwire.store import Database, KeyStore, RequestLog
from aiwire.store.usage import (
    GROUPS,
    METRICS,
    UsageQueryError,
    UsageRow,
    columns,
    to_csv,
    usage_report,
)

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
SINCE = DAY0 - timedelta(days=1)
UNTIL = DAY0 + timedelta(days=10)
MODELS = {  # model as asked -> (provider, deployment)
    "gpt": ("openai", "gpt@openai/gpt-4o-mini"),
    "claude": ("anthropic", "claude@anthropic/claude-sonnet-4-5"),
    "gemini": ("gemini", "gemini@gemini/gemini-2.5-flash"),
}


@dataclass
class Seeded:
    rows: list[dict[str, Any]]
    names: dict[str | None, str | None]  # key id -> key name


def _row(n: int, **fields: Any) -> dict[str, Any]:
    model = fields.pop("model", "gpt")
    provider, deployment = MODELS[model]
    return {
        "request_id": f"req-{n}",
        "endpoint": "/v1/chat/completions",
        "model": model,
        "provider": provider,
        "deployment": deployment,
        "status": 200,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "latency_ms": 1.0,
        "retries": 0,
        "fallback": False,
        "stream": False,
        "cost_usd": 0.0,
        "cache_hit": False,
        "key_id": None,
        "team": None,
        **fields,
    }


async def _insert(database: Database, rows: Sequence[dict[str, Any]]) -> None:
    async with database.session() as session:
        session.add_all([RequestLog(**r) for r in rows])


@pytest.fixture
async def seeded(database: Database) -> Seeded:
    """Four days of traffic from three keys in two teams, the master key and a deleted key:
    three models on three providers, errors, cache hits, and rows on the day boundaries."""
    keys = KeyStore(database)
    alice, _ = await keys.create("alice-app", team="sales", actor="test")
    bob, _ = await keys.create("bob-app", team="sales", actor="test")
    carol, _ = await keys.create("carol-app", team="support", actor="test")
    owners = [(alice.id, "sales"), (bob.id, "sales"), (carol.id, "support"), (None, None)]
    owners.append(("key_deleted0000000000000000", "support"))
    rng = random.Random(4)
    rows = []
    for n in range(240):
        key_id, team = owners[n % len(owners)]
        cache_hit = rng.random() < 0.15
        rows.append(
            _row(
                n,
                ts=DAY0 + timedelta(days=rng.randrange(4), seconds=rng.randrange(86400)),
                key_id=key_id,
                team=team,
                model=rng.choice(list(MODELS)),
                status=rng.choice([200] * 8 + [400, 429, 500, 399]),
                input_tokens=rng.randrange(5000),
                output_tokens=rng.randrange(800),
                cached_tokens=rng.randrange(300),
                latency_ms=round(rng.uniform(5, 4000), 3),
                cost_usd=0.0 if cache_hit else round(rng.uniform(0, 0.05), 6),
                cache_hit=cache_hit,
            )
        )
    # The edges of a UTC day, and of the range.
    last = DAY0 + timedelta(days=1) - timedelta(microseconds=1)
    rows.append(_row(900, ts=last, key_id=alice.id, team="sales", cost_usd=1.0))
    rows.append(_row(901, ts=DAY0 + timedelta(days=1), key_id=alice.id, team="sales"))
    rows.append(_row(902, ts=SINCE - timedelta(microseconds=1), key_id=alice.id, cost_usd=7.0))
    rows.append(_row(903, ts=UNTIL, key_id=alice.id, cost_usd=7.0))
    await _insert(database, rows)
    names: dict[str | None, str | None] = {k.id: k.name for k in (alice, bob, carol)}
    return Seeded(rows, names)


# -- the reference: the same report, computed in Python -----------------------------------------


def _nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)  # ceil(p * n / 100), in integers
    return ordered[rank - 1]


def _group_value(name: str, row: dict[str, Any]) -> Any:
    if name == "day":
        return row["ts"].astimezone(UTC).date().isoformat()
    return row["key_id" if name == "key" else name]


def expected(
    seeded: Seeded,
    by: Sequence[str],
    filters: dict[str, str] | None = None,
    since: datetime = SINCE,
    until: datetime = UNTIL,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    columns_ = {"key": "key_id", "team": "team", "model": "model", "provider": "provider"}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in seeded.rows:
        if not since <= row["ts"] < until:
            continue
        if any(row[columns_[f]] != v for f, v in (filters or {}).items()):
            continue
        groups[tuple(_group_value(name, row) for name in by)].append(row)
    report = {}
    for group, rows in groups.items():
        latencies = [r["latency_ms"] for r in rows]
        report[group] = {
            "requests": len(rows),
            "errors": sum(r["status"] >= 400 for r in rows),
            "cache_hits": sum(r["cache_hit"] for r in rows),
            **{t: sum(r[t] for r in rows) for t in ("input_tokens", "output_tokens")},
            "cached_tokens": sum(r["cached_tokens"] for r in rows),
            "cost_usd": sum(r["cost_usd"] for r in rows),
            "p50_latency_ms": _nearest_rank(latencies, 50),
            "p95_latency_ms": _nearest_rank(latencies, 95),
            "avg_latency_ms": sum(latencies) / len(latencies),
        }
    return report


def assert_matches(rows: list[UsageRow], want: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    got = {tuple(r.group[name] for name in r.group if name != "key_name"): r for r in rows}
    assert len(got) == len(rows), "a group came back twice"
    assert set(got) == set(want)
    for group, figures in want.items():
        row = got[group]
        for metric, value in figures.items():
            tolerance = 1e-3 if metric == "avg_latency_ms" else 1e-9  # avg: to the microsecond
            assert getattr(row, metric) == pytest.approx(value, rel=1e-9, abs=tolerance), (
                group,
                metric,
            )


# -- every grouping, every filter ---------------------------------------------------------------


@pytest.mark.parametrize(
    "by",
    [
        *([g] for g in GROUPS),
        ["key", "day"],
        ["team", "model", "status"],
        ["day", "provider", "deployment"],
    ],
)
async def test_grouping_matches_the_log(database: Database, seeded: Seeded, by: list[str]) -> None:
    rows = await usage_report(database, by, SINCE, UNTIL, {})
    assert_matches(rows, expected(seeded, by))
    assert all(list(r.public()) == columns(by) for r in rows)
    if "key" in by:
        for row in rows:
            assert row.group["key_name"] == seeded.names.get(row.group["key"])


@pytest.mark.parametrize(
    "filters",
    [
        {"key": "KEY0"},
        {"team": "sales"},
        {"model": "claude"},
        {"provider": "gemini"},
        {"team": "support", "model": "gpt", "provider": "openai"},
        {"team": "nobody"},
    ],
)
async def test_filters(database: Database, seeded: Seeded, filters: dict[str, str]) -> None:
    if filters.get("key") == "KEY0":
        filters = {"key": next(k for k in seeded.names if k is not None)}
    for by in (["key"], ["day", "status"]):
        rows = await usage_report(database, by, SINCE, UNTIL, filters)
        assert_matches(rows, expected(seeded, by, filters))
    (total,) = await usage_report(database, [], SINCE, UNTIL, filters)
    want = expected(seeded, [], filters)
    if want:
        assert_matches([total], want)
    else:  # nothing matched: one row of zeros, no latency
        assert total == UsageRow({}, 0, 0, 0, 0, 0, 0, 0.0, None, None, None)


async def test_none_filters_are_ignored(database: Database, seeded: Seeded) -> None:
    rows = await usage_report(database, ["team"], SINCE, UNTIL, {"team": None, "model": None})
    assert_matches(rows, expected(seeded, ["team"]))


async def test_totals_are_the_sum_of_the_groups(database: Database, seeded: Seeded) -> None:
    rows = await usage_report(database, ["key", "model"], SINCE, UNTIL)
    (total,) = await usage_report(database, [], SINCE, UNTIL)
    for metric in ("requests", "errors", "cache_hits", "input_tokens", "cost_usd"):
        assert getattr(total, metric) == pytest.approx(sum(getattr(r, metric) for r in rows))
    assert total.requests == 242  # 240 + the two day-edge rows; the out-of-range ones excluded


# -- hand-checked figures -----------------------------------------------------------------------


async def test_percentiles_errors_and_cache_hits_by_hand(database: Database) -> None:
    """Latencies 1..20 ms: nearest-rank p50 is the 10th (10 ms), p95 the 19th (19 ms)."""
    ts = DAY0 + timedelta(hours=12)
    statuses = [200, 200, 399, 400, 404, 429, 500, 503] + [200] * 12
    rows = [
        _row(
            n,
            ts=ts,
            team="t",
            latency_ms=float(n + 1),
            status=statuses[n],
            cache_hit=n < 3,
            cost_usd=0.25,
        )
        for n in range(20)
    ]
    rows.append(_row(99, ts=ts, team="solo", latency_ms=42.5))
    await _insert(database, rows)
    by_team = {r.group["team"]: r for r in await usage_report(database, ["team"], SINCE, UNTIL)}
    t = by_team["t"]
    assert (t.requests, t.errors, t.cache_hits) == (20, 5, 3)
    assert (t.p50_latency_ms, t.p95_latency_ms, t.avg_latency_ms) == (10.0, 19.0, 10.5)
    assert t.cost_usd == 5.0
    solo = by_team["solo"]
    assert (solo.p50_latency_ms, solo.p95_latency_ms, solo.requests) == (42.5, 42.5, 1)


async def test_day_edges_and_range_bounds(database: Database, seeded: Seeded) -> None:
    alice = next(k for k, v in seeded.names.items() if v == "alice-app")
    first_day = DAY0.date().isoformat()
    rows = await usage_report(database, ["day"], SINCE, UNTIL, {"key": alice})
    days = {r.group["day"]: r for r in rows}
    assert list(days) == sorted(days)  # oldest first
    want = expected(seeded, ["day"], {"key": alice})
    assert days[first_day].requests == want[(first_day,)]["requests"]
    # 23:59:59.999999 counts for its own day, 00:00:00 for the next; since is inclusive and
    # until exclusive (the two $7 rows just outside the range are not in any report).
    assert days[first_day].cost_usd == pytest.approx(want[(first_day,)]["cost_usd"])
    assert sum(r.cost_usd for r in rows) < 7
    edge = await usage_report(
        database, ["day"], DAY0 + timedelta(days=1), DAY0 + timedelta(days=1, microseconds=1)
    )
    assert [(r.group["day"], r.requests) for r in edge] == [("2026-03-02", 1)]
    inclusive = await usage_report(
        database, [], SINCE - timedelta(microseconds=1), UNTIL + timedelta(microseconds=1)
    )
    assert inclusive[0].requests == 244


async def test_bounds_in_another_time_zone_mean_the_same_instant(
    database: Database, seeded: Seeded
) -> None:
    oslo = timezone(timedelta(hours=1))
    a = await usage_report(database, ["model"], SINCE.astimezone(oslo), UNTIL.astimezone(oslo))
    b = await usage_report(database, ["model"], SINCE, UNTIL)
    assert a == b


async def test_day_is_utc_whatever_the_session_time_zone(database: Database, backend: str) -> None:
    """A PostgreSQL connection in UTC+14 would put 23:00 UTC on the next day if the report used
    the session's zone; it must not."""
    late = DAY0 + timedelta(hours=23)
    await _insert(database, [_row(1, ts=late), _row(2, ts=late + timedelta(hours=2))])
    other = Database(database.url)
    if backend == "postgresql":

        def kiribati(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET TIME ZONE 'Pacific/Kiritimati'")
            cursor.close()

        event.listen(other.engine.sync_engine, "connect", kiribati)
    try:
        if backend == "postgresql":
            async with other.engine.connect() as conn:
                zone = (await conn.execute(text("SHOW TIME ZONE"))).scalar()
            assert zone == "Pacific/Kiritimati"
        rows = await usage_report(other, ["day"], SINCE, UNTIL)
    finally:
        await other.aclose()
    assert [(r.group["day"], r.requests) for r in rows] == [("2026-03-01", 1), ("2026-03-02", 1)]


# -- order --------------------------------------------------------------------------------------


async def test_order_is_cost_descending_or_day_ascending(
    database: Database, seeded: Seeded
) -> None:
    rows = await usage_report(database, ["key", "model"], SINCE, UNTIL)
    assert len(rows) > 5
    assert all(a.cost_usd >= b.cost_usd for a, b in pairwise(rows))
    daily = await usage_report(database, ["model", "day"], SINCE, UNTIL)
    for a, b in pairwise(daily):
        assert str(a.group["day"]) <= str(b.group["day"])
        if a.group["day"] == b.group["day"]:
            assert a.cost_usd >= b.cost_usd


async def test_master_and_deleted_keys_have_no_name(database: Database, seeded: Seeded) -> None:
    rows = {r.group["key"]: r for r in await usage_report(database, ["key"], SINCE, UNTIL)}
    assert rows[None].group["key_name"] is None  # the master key
    assert rows["key_deleted0000000000000000"].group["key_name"] is None
    assert rows[None].requests == 48  # every fifth of 240


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "filters", "since", "until", "param"),
    [
        (["key", "colour"], {}, SINCE, UNTIL, "by"),
        (["key"], {"colour": "red"}, SINCE, UNTIL, "colour"),
        (["key"], {"team": ""}, SINCE, UNTIL, "team"),
        (["key"], {}, SINCE.replace(tzinfo=None), UNTIL, "since"),
        (["key"], {}, SINCE, UNTIL.replace(tzinfo=None), "until"),
        (["key"], {}, UNTIL, SINCE, "since"),
        (["key"], {}, SINCE, SINCE, "since"),
    ],
)
async def test_bad_parameters_are_refused_by_name(
    database: Database,
    by: list[str],
    filters: dict[str, str],
    since: datetime,
    until: datetime,
    param: str,
) -> None:
    with pytest.raises(UsageQueryError) as info:
        await usage_report(database, by, since, until, filters)
    assert info.value.param == param


async def test_repeated_groupings_are_merged(database: Database, seeded: Seeded) -> None:
    rows = await usage_report(database, ["team", "team"], SINCE, UNTIL)
    assert all(list(r.group) == ["team"] for r in rows)


# -- the query plan -----------------------------------------------------------------------------


async def _plan(database: Database, filters: dict[str, str]) -> str:
    """The plan of the statement the report really runs (caught on its way to the driver)."""
    captured: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "lat_rank" in statement:
            captured.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", catch)
    try:
        await usage_report(database, ["key", "day"], SINCE, UNTIL, filters)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", catch)
    ((statement, parameters),) = captured
    async with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            # A test table is tiny: forbid the sequential scan a planner rightly prefers there,
            # and give it statistics, to see which index it picks when the table is not tiny.
            await conn.exec_driver_sql("ANALYZE request_log")
            await conn.exec_driver_sql("SET enable_seqscan = off")
            prefix = "EXPLAIN "
        else:
            prefix = "EXPLAIN QUERY PLAN "
        result = await conn.exec_driver_sql(prefix + statement, parameters)
        return "\n".join(str(row) for row in result)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "ix_request_log_ts"),
        ({"key": "key_x"}, "ix_request_log_key_id_ts"),
        ({"model": "gpt"}, "ix_request_log_model_ts"),
        ({"team": "sales"}, "ix_request_log_team_ts"),
    ],
)
async def test_the_query_uses_the_indexes(
    database: Database, seeded: Seeded, filters: dict[str, str], index: str
) -> None:
    plan = await _plan(database, filters)
    assert index in plan, plan


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_has_a_header_and_defuses_formulas() -> None:
    records = [
        {"key": "key_1", "key_name": "=HYPERLINK(1)", "requests": 3, "cost_usd": 0.5},
        {"key": None, "key_name": None, "requests": 1, "cost_usd": 0.0},
    ]
    out = to_csv(records, ["key", "key_name", "requests", "cost_usd"])
    assert out.splitlines() == [
        "key,key_name,requests,cost_usd",
        "key_1,'=HYPERLINK(1),3,0.5",
        ",,1,0.0",
    ]
    assert out.endswith("\r\n")


def test_columns() -> None:
    assert columns(["day", "key"]) == ["day", "key", "key_name", *METRICS]
