"""map and transform: renames and nested paths, dates with time zones, numbers, currencies with
configured rates, text clean-up, and safe expressions that never reach ``eval``."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aiwire.flows import paths
from aiwire.flows.context import RecordContext, StepFailure
from aiwire.flows.cron import Cron, CronError
from aiwire.flows.definition import MapStep, TransformStep
from aiwire.flows.expressions import Expression, ExpressionError
from aiwire.flows.loader import flow_from_dict
from aiwire.flows.steps import run_map, run_transform
from aiwire.flows.transforms import TransformError, parse_op

FLOW = flow_from_dict(
    {"name": "t", "source": {"kind": "csv", "path": "x"}, "sinks": [{"kind": "jsonl", "path": "o"}]}
)


def op(spec: Any, value: Any, record: dict[str, Any] | None = None) -> Any:
    return parse_op(spec)(value, record or {})


def transform(fields: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    step = TransformStep.model_validate({"kind": "transform", "fields": fields})
    return run_transform(step, RecordContext(FLOW, "k", data, data)).data


# --- dates ----------------------------------------------------------------------------------------


def test_date_day_month_year_to_iso() -> None:
    spec = {"date": {"from": "%d/%m/%Y", "to": "%Y-%m-%d"}}
    assert op(spec, "05/03/2024") == "2024-03-05"
    assert op(spec, "31/12/1999") == "1999-12-31"
    assert op({"date": {"from": "%d/%m/%Y"}}, "05/03/2024") == "2024-03-05"  # to: iso


def test_date_with_time_zones_can_change_the_calendar_day() -> None:
    berlin_to_utc = {"date": {"from": "%d/%m/%Y %H:%M", "tz": "Europe/Berlin", "to_tz": "UTC"}}
    assert op(berlin_to_utc, "31/12/2024 23:30") == "2024-12-31T22:30:00+00:00"
    assert op(berlin_to_utc, "15/07/2024 01:30") == "2024-07-14T23:30:00+00:00"  # summer: UTC+2
    ny_day = {
        "date": {
            "from": "%d/%m/%Y %H:%M",
            "tz": "America/New_York",
            "to_tz": "UTC",
            "to": "%Y-%m-%d",
        }
    }
    assert op(ny_day, "31/12/2024 21:00") == "2025-01-01"
    offset = {"date": {"from": "%d/%m/%Y %H:%M %z", "to_tz": "Asia/Tokyo", "to": "%Y-%m-%d %H:%M"}}
    assert op(offset, "01/06/2024 12:00 +0000") == "2024-06-01 21:00"


def test_dates_never_guess() -> None:
    spec = {"date": {"from": "%d/%m/%Y"}}
    with pytest.raises(TransformError, match=r"'2024-03-05' does not match %d/%m/%Y"):
        op(spec, "2024-03-05")
    with pytest.raises(TransformError, match="does not match"):
        op(spec, "31/02/2024")  # no 31st of February
    both = {"date": {"from": ["%d/%m/%Y", "%Y-%m-%d"], "to": "%d.%m.%Y"}}
    assert op(both, "2024-03-05") == "05.03.2024"
    assert op(spec, None) is None
    with pytest.raises(ValueError, match="to_tz needs an input format with a time"):
        parse_op({"date": {"from": "%d/%m/%Y", "to_tz": "UTC"}})
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        parse_op({"date": {"from": "%d/%m/%Y %H:%M", "tz": "Europe/Atlantis"}})
    no_zone = parse_op({"date": {"from": "%d/%m/%Y %H:%M", "to_tz": "UTC"}})
    with pytest.raises(TransformError, match="has no time zone; set tz"):
        no_zone("01/01/2024 10:00", {})


# --- numbers and currencies -----------------------------------------------------------------------


def test_numbers_in_local_formats() -> None:
    german = {"number": {"decimal": ",", "thousands": "."}}
    assert op(german, "1.234,56") == 1234.56
    assert op(german, "1.234.567") == 1234567
    assert op({"number": {"as": "string", "decimals": 2}}, "$1,200.5") == "1200.50"
    assert op({"number": {"as": "int"}}, "42") == 42
    with pytest.raises(TransformError, match="not a thousands separator"):
        op({"number": {}}, "12,5")  # a German decimal read with English settings
    with pytest.raises(TransformError, match="is not a number"):
        op({"number": {}}, "twelve")


def test_currency_conversion_with_configured_rates() -> None:
    rates = {"USD": 0.92, "GBP": 1.17}
    spec = {"currency": {"from_field": "currency", "to": "EUR", "rates": rates}}
    assert op(spec, 100, {"currency": "USD"}) == 92.0
    assert op(spec, "250", {"currency": "gbp"}) == 292.5
    assert op(spec, 19.99, {"currency": "EUR"}) == 19.99  # the target itself: rate 1
    # Decimal arithmetic, half-up: 0.1 + 0.2 style float noise never shows.
    assert op({"currency": {"from": "USD", "to": "EUR", "rates": {"USD": "0.3"}}}, "0.35") == 0.11
    as_text = {"currency": {"from": "USD", "to": "EUR", "rates": rates, "as": "string"}}
    assert op(as_text, "1000") == "920.00"
    with pytest.raises(TransformError, match="no rate for JPY to EUR"):
        op(spec, 5, {"currency": "JPY"})
    with pytest.raises(TransformError, match="has no currency"):
        op(spec, 5, {})
    with pytest.raises(ValueError, match="rate must be a positive number"):
        parse_op({"currency": {"from": "USD", "to": "EUR", "rates": {"USD": 0}}})
    with pytest.raises(ValueError, match="not a 3-letter currency code"):
        parse_op({"currency": {"from": "USD", "to": "euro", "rates": rates}})


def test_transform_step_chains_number_then_currency_from_a_field() -> None:
    data = transform(
        {
            "amount_eur": {
                "from": "amount",
                "ops": [
                    {"number": {"decimal": ",", "thousands": "."}},
                    {"currency": {"from_field": "currency", "to": "EUR", "rates": {"USD": 0.9}}},
                ],
            }
        },
        {"amount": "1.000,00", "currency": "USD"},
    )
    assert data == {"amount": "1.000,00", "currency": "USD", "amount_eur": 900.0}


# --- text -----------------------------------------------------------------------------------------


def test_text_operations() -> None:
    data = transform(
        {
            "name": ["normalize", "title"],
            "email": ["trim", "lower"],
            "city": ["strip_accents", {"case": "upper"}],
            "phone": ["digits"],
            "tags": {"split": ";"},
            "country": {"lookup": {"table": {"Deutschland": "DE", "Germany": "DE"}}},
            "notes": [{"default": "(none)"}],
            "title": {"truncate": 5},
        },
        {
            "name": "  anna   BERG ",
            "email": " Anna@Acme.TEST ",
            "city": "Zürich",
            "phone": "+49 (30) 1234-567",
            "tags": "vip; new ;",
            "country": "germany",
            "notes": "",
            "title": "Director",
        },
    )
    assert data["name"] == "Anna Berg"
    assert data["email"] == "anna@acme.test"
    assert data["city"] == "ZURICH"
    assert data["phone"] == "+49301234567"
    assert data["tags"] == ["vip", "new"]
    assert data["country"] == "DE"
    assert data["notes"] == "(none)"
    assert data["title"] == "Direc"


def test_transform_failure_names_the_field() -> None:
    with pytest.raises(StepFailure, match="transform created: date: '2024/01/01' does not match"):
        transform({"created": {"date": {"from": "%d/%m/%Y"}}}, {"created": "2024/01/01"})


# --- expressions ----------------------------------------------------------------------------------


def test_expressions_compute_without_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_eval(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval/exec must never be used")

    monkeypatch.setattr(builtins, "eval", no_eval)
    monkeypatch.setattr(builtins, "exec", no_eval)
    record = {
        "price": 19.5,
        "quantity": 3,
        "category": "refund",
        "confidence": 0.62,
        "email": "Anna@ACME.test",
        "tags": ["vip"],
        "lead": {"owner": {"email": "o@x"}},
    }
    assert Expression("round(price * quantity, 2)").evaluate(record) == 58.5
    assert Expression("confidence < 0.8 or category == 'refund'").test(record)
    assert not Expression("confidence >= 0.8 and category != 'refund'").test(record)
    assert Expression("email.lower().endswith('@acme.test')").test(record)
    assert Expression("'vip' in tags and len(tags) == 1").test(record)
    assert Expression("lead.owner.email").evaluate(record) == "o@x"
    assert Expression("missing.deeper is None and coalesce(missing, 'x') == 'x'").test(record)
    assert Expression("'big' if quantity > 2 else 'small'").evaluate(record) == "big"
    data = transform({"total": {"expr": "round(price * quantity * 1.2, 2)"}}, record)
    assert data["total"] == 70.2


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hacked')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd').read()",
        "[x for x in tags]",
        "lambda: 1",
        "9 ** 9 ** 9",
        "price.__class__",
        "getattr(price, 'real')",
        "email.format(1)",
        "x := 1",
    ],
)
def test_unsafe_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(text)


def test_expression_runtime_limits() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        Expression("'a' * 1000000").evaluate({})
    with pytest.raises(ExpressionError, match="failed"):
        Expression("price > 'x'").evaluate({"price": 1})


# --- map ------------------------------------------------------------------------------------------


def test_map_selects_renames_nests_and_defaults() -> None:
    step = MapStep.model_validate(
        {
            "kind": "map",
            "fields": {
                "mobile_number": "phone",
                "company": "account.name",
                "owner.email": "account.owner.email",
                "country": {"from": "address.country", "default": "DE"},
                "source": {"value": "webform"},
                "first_tag": "tags[0]",
            },
        }
    )
    record = {"phone": "+49 1", "account": {"name": "Acme", "owner": {"email": "o@acme.test"}},
              "address": {}, "tags": ["vip"], "internal": "x"}  # fmt: skip
    out = run_map(step, RecordContext(FLOW, "k", record, record)).data
    assert out == {
        "mobile_number": "+49 1",
        "company": "Acme",
        "owner": {"email": "o@acme.test"},
        "country": "DE",
        "source": "webform",
        "first_tag": "vip",
    }
    keep = MapStep.model_validate(
        {"kind": "map", "fields": {"mobile_number": "phone"}, "keep": True, "drop": ["internal"]}
    )
    kept = run_map(keep, RecordContext(FLOW, "k", record, record)).data
    assert "phone" not in kept and kept["mobile_number"] == "+49 1" and "internal" not in kept
    assert kept["account"]["name"] == "Acme"


def test_map_required_field() -> None:
    step = MapStep.model_validate(
        {"kind": "map", "fields": {"email": {"from": "email", "required": True}}}
    )
    with pytest.raises(StepFailure, match="required field 'email' is missing"):
        run_map(step, RecordContext(FLOW, "k", {}, {"email": ""}))


def test_paths() -> None:
    data: dict[str, Any] = {}
    paths.set_(data, "a.b[1].c", 5)
    assert data == {"a": {"b": [None, {"c": 5}]}}
    assert paths.get(data, "a.b[1].c") == 5
    assert paths.get(data, "a.b[7]") is paths.MISSING
    with pytest.raises(ValueError, match="is not a field path"):
        paths.parse("a..b")


# --- cron -----------------------------------------------------------------------------------------


def test_cron_next_times() -> None:
    start = datetime(2024, 3, 29, 10, 7, tzinfo=UTC)  # a Friday
    assert Cron.parse("*/15 * * * *").next_after(start) == datetime(2024, 3, 29, 10, 15, tzinfo=UTC)
    assert Cron.parse("0 9 * * mon-fri").next_after(start) == datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
    assert Cron.parse("@monthly").next_after(start) == datetime(2024, 4, 1, 0, 0, tzinfo=UTC)
    assert Cron.parse("30 2 29 2 *").next_after(start) == datetime(2028, 2, 29, 2, 30, tzinfo=UTC)
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC after the clocks go forward (31 March).
    berlin = ZoneInfo("Europe/Berlin")
    assert Cron.parse("0 9 * * *").next_after(start, berlin) == datetime(
        2024, 3, 30, 8, 0, tzinfo=UTC
    )
    after_dst = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
    assert Cron.parse("0 9 * * *").next_after(after_dst, berlin) == datetime(
        2024, 4, 1, 7, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "0 0 31 2 *"]
)
def test_bad_cron(text: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(text).next_after(datetime(2024, 1, 1, tzinfo=UTC))
