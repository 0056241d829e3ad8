"""Deterministic value transforms for the ``transform`` step.

Each field of a ``transform`` step names one operation or a list of them, applied in order::

    email: [trim, lower]
    name: [normalize, title]
    created_on: {date: {from: "%d/%m/%Y", to: "%Y-%m-%d"}}
    meeting_at: {date: {from: "%d/%m/%Y %H:%M", tz: Europe/Berlin, to_tz: UTC, to: iso}}
    amount: [{number: {decimal: ",", thousands: "."}},
             {currency: {from_field: currency, to: EUR, rates: {USD: 0.92, GBP: 1.17}}}]
    total: {expr: "round(price * quantity, 2)"}

Nothing guesses: a date that does not match its format, a number that does not parse or a
currency without a configured rate fails the record (it goes to the dead-letter queue with the
reason) rather than producing a plausible wrong value. Money is computed with :class:`Decimal`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiwire.errors import AIWireError
from aiwire.flows import paths
from aiwire.flows.expressions import Expression, ExpressionError


class TransformError(AIWireError):
    """A value could not be transformed (bad input for the configured operation)."""


Fn = Callable[[Any, Mapping[str, Any]], Any]
_TIME_DIRECTIVES = re.compile(r"%[HIMSpfzZXcTRr]")
_WS = re.compile(r"\s+")


def _text(value: Any, op: str) -> str:
    if value is None:
        raise TransformError(f"{op}: no value (the field is empty or missing)")
    if isinstance(value, dict | list):
        raise TransformError(f"{op}: expected text, got a {type(value).__name__}")
    return str(value)


def _skip_none(fn: Callable[[str], Any]) -> Fn:
    """Text operations leave a missing value missing (``trim`` of nothing is nothing)."""

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        return None if value is None else fn(_text(value, "text"))

    return apply


def _normalize(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _digits(text: str) -> str:
    """Keep digits and a leading ``+``: ``+49 (30) 1234-567`` → ``+49301234567``."""
    stripped = text.strip()
    body = re.sub(r"\D", "", stripped)
    return ("+" + body) if stripped.startswith("+") else body


_SIMPLE: dict[str, Fn] = {
    "trim": _skip_none(str.strip),
    "lower": _skip_none(str.lower),
    "upper": _skip_none(str.upper),
    "title": _skip_none(str.title),
    "capitalize": _skip_none(str.capitalize),
    "normalize": _skip_none(_normalize),
    "strip_accents": _skip_none(_strip_accents),
    "digits": _skip_none(_digits),
    "empty_to_null": lambda v, r: (
        None if v is None or (isinstance(v, str) and not v.strip()) else v
    ),
    "string": lambda v, r: None if v is None else str(v),
}


@dataclass(frozen=True)
class Op:
    """One parsed operation: its name (for messages) and the function applying it."""

    name: str
    fn: Fn = field(repr=False)

    def __call__(self, value: Any, record: Mapping[str, Any]) -> Any:
        try:
            return self.fn(value, record)
        except TransformError as exc:
            raise TransformError(exc.message) from None
        except ExpressionError as exc:
            raise TransformError(exc.message) from None


# --- numbers and money ------------------------------------------------------------------------


def parse_number(value: Any, decimal: str = ".", thousands: str = ",") -> Decimal:
    """``"1.234,56"`` (decimal ``,``, thousands ``.``) → ``Decimal("1234.56")``. Currency
    symbols and spaces around the number are ignored; anything else is an error."""
    if isinstance(value, bool):
        raise TransformError(f"number: {value!r} is a yes/no value, not a number")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    text = _text(value, "number").strip()
    cleaned = re.sub(r"^[^\d+\-.,]+|[^\d.,]+$", "", text).replace(" ", "").replace("\u00a0", "")
    if thousands:
        groups = cleaned.split(thousands)
        if len(groups) > 1 and not all(len(g.split(decimal)[0]) == 3 for g in groups[1:]):
            raise TransformError(
                f"number: {text!r} has {thousands!r} in a place that is not a thousands "
                "separator; check the decimal and thousands settings"
            )
        cleaned = cleaned.replace(thousands, "")
    if decimal != ".":
        if "." in cleaned:
            raise TransformError(f"number: {text!r} has '.' but the decimal mark is {decimal!r}")
        cleaned = cleaned.replace(decimal, ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise TransformError(f"number: {text!r} is not a number") from None
    if not number.is_finite():
        raise TransformError(f"number: {text!r} is not a finite number")
    return number


def _as(number: Decimal, kind: str, decimals: int | None = None) -> Any:
    if decimals is not None:
        number = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if kind == "string":
        return str(number)
    if kind == "int":
        if number != number.to_integral_value():
            raise TransformError(f"int: {number} is not a whole number")
        return int(number)
    return float(number)


def _number(spec: dict[str, Any]) -> Fn:
    _only(spec, "number", {"decimal", "thousands", "as", "decimals"})
    decimal = str(spec.get("decimal", "."))
    thousands = str(spec.get("thousands", "," if decimal == "." else "."))
    if decimal == thousands:
        raise ValueError("number: decimal and thousands separators must differ")
    kind = _choice(spec.get("as", "float"), ("float", "int", "string"), "number.as")
    decimals = _int_or_none(spec.get("decimals"), "number.decimals")

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return None
        return _as(parse_number(value, decimal, thousands), kind, decimals)

    return apply


def _currency(spec: dict[str, Any]) -> Fn:
    _only(spec, "currency", {"to", "from", "from_field", "rates", "decimals", "as"})
    target = _code(spec.get("to"), "currency.to")
    rates_raw = spec.get("rates")
    if not isinstance(rates_raw, dict) or not rates_raw:
        raise ValueError(
            "currency: give rates as units of the target currency per unit of each source, "
            "e.g. rates: {USD: 0.92, GBP: 1.17}"
        )
    rates: dict[str, Decimal] = {target: Decimal(1)}
    for code, rate in rates_raw.items():
        try:
            value = Decimal(str(rate))
        except InvalidOperation:
            raise ValueError(f"currency.rates.{code}: {rate!r} is not a number") from None
        if value <= 0 or not value.is_finite():
            raise ValueError(f"currency.rates.{code}: a rate must be a positive number")
        rates[_code(code, f"currency.rates.{code}")] = value
    fixed = spec.get("from")
    source_field = spec.get("from_field")
    if (fixed is None) == (source_field is None):
        raise ValueError("currency: give exactly one of from (a currency code) or from_field")
    fixed_code = _code(fixed, "currency.from") if fixed is not None else None
    source_path = paths.parse(str(source_field)) if source_field is not None else None
    decimals = _int_or_none(spec.get("decimals", 2), "currency.decimals")
    kind = _choice(spec.get("as", "float"), ("float", "string"), "currency.as")

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return None
        code = fixed_code
        if source_path is not None:
            raw = paths.get(record, source_path)
            if raw is paths.MISSING or raw is None or not str(raw).strip():
                raise TransformError(f"currency: the record has no currency in {source_field}")
            code = str(raw).strip().upper()
        assert code is not None
        rate = rates.get(code)
        if rate is None:
            known = ", ".join(sorted(rates))
            raise TransformError(f"currency: no rate for {code} to {target} (configured: {known})")
        amount = value if isinstance(value, Decimal) else parse_number(value)
        return _as(amount * rate, kind, decimals)

    return apply


def _code(value: Any, where: str) -> str:
    code = str(value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"{where}: {value!r} is not a 3-letter currency code (ISO 4217)")
    return code


# --- dates --------------------------------------------------------------------------------------


def _zone(name: Any, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{where}: unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
        ) from None


def _date(spec: dict[str, Any]) -> Fn:
    """``{from: "%d/%m/%Y %H:%M", tz: Europe/Berlin, to_tz: UTC, to: iso}``.

    ``from`` may be a list of formats (tried in order). A value without an offset is read in
    ``tz`` (default: left without a zone); ``to_tz`` converts. A format without a time of day
    cannot change zone (the calendar day would be a guess), so that combination is refused.
    """
    _only(spec, "date", {"from", "to", "tz", "to_tz"})
    formats = spec.get("from")
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
        raise ValueError('date: give the input format, e.g. from: "%d/%m/%Y"')
    out = str(spec.get("to", "iso"))
    tz = _zone(spec["tz"], "date.tz") if spec.get("tz") is not None else None
    to_tz = _zone(spec["to_tz"], "date.to_tz") if spec.get("to_tz") is not None else None
    if to_tz is not None and not all(_TIME_DIRECTIVES.search(f) for f in formats):
        raise ValueError(
            "date: to_tz needs an input format with a time of day (%H:%M ...); a date alone "
            "cannot move between time zones without guessing the day"
        )
    for f in formats:
        if "%" not in f:
            raise ValueError(f"date.from: {f!r} has no strptime directives (%d, %m, %Y ...)")

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return None
        text = _text(value, "date").strip()
        parsed: datetime | None = None
        for f in formats:
            try:
                parsed = datetime.strptime(text, f)
                break
            except ValueError:
                continue
        if parsed is None:
            raise TransformError(f"date: {text!r} does not match {' or '.join(formats)}")
        if parsed.tzinfo is None and tz is not None:
            parsed = parsed.replace(tzinfo=tz)
        if to_tz is not None:
            if parsed.tzinfo is None:
                raise TransformError(
                    f"date: {text!r} has no time zone; set tz to the zone it is written in"
                )
            parsed = parsed.astimezone(to_tz)
        if out == "iso":
            timed = any(_TIME_DIRECTIVES.search(f) for f in formats)
            return parsed.isoformat() if timed else parsed.date().isoformat()
        return parsed.strftime(out)

    return apply


# --- the rest -----------------------------------------------------------------------------------


def _expr(spec: Any) -> Fn:
    expression = Expression(str(spec))

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        return expression.evaluate({**record, "value": value})

    return apply


def _default(spec: Any) -> Fn:
    return lambda v, r: spec if v is None or v == "" else v


def _truncate(spec: Any) -> Fn:
    n = _int_or_none(spec, "truncate")
    if n is None or n < 1:
        raise ValueError("truncate: give the maximum length, e.g. truncate: 200")
    return lambda v, r: None if v is None else _text(v, "truncate")[:n]


def _split(spec: Any) -> Fn:
    sep = str(spec)
    return lambda v, r: (
        None if v is None else [p.strip() for p in _text(v, "split").split(sep) if p.strip()]
    )


def _join(spec: Any) -> Fn:
    sep = str(spec)

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise TransformError(f"join: expected a list, got {type(value).__name__}")
        return sep.join(str(v) for v in value)

    return apply


def _lookup(spec: Any) -> Fn:
    if not isinstance(spec, dict) or "table" not in spec or not isinstance(spec["table"], dict):
        raise ValueError("lookup: give table: {from: to, ...} and optionally default:")
    table = {str(k).strip().lower(): v for k, v in spec["table"].items()}
    has_default = "default" in spec
    default = spec.get("default")

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return default if has_default else None
        key = str(value).strip().lower()
        if key in table:
            return table[key]
        if has_default:
            return default
        raise TransformError(f"lookup: {value!r} is not in the table ({', '.join(table)})")

    return apply


def _replace(spec: Any) -> Fn:
    if not isinstance(spec, dict) or "pattern" not in spec:
        raise ValueError("replace: give pattern: (a regular expression) and with: (the text)")
    try:
        pattern = re.compile(str(spec["pattern"]))
    except re.error as exc:
        raise ValueError(f"replace.pattern: {exc}") from None
    repl = str(spec.get("with", ""))
    return _skip_none(lambda t: pattern.sub(repl, t))


def _case(spec: Any) -> Fn:
    name = _choice(spec, ("lower", "upper", "title", "capitalize"), "case")
    return _SIMPLE[name]


_WITH_ARGS: dict[str, Callable[[Any], Fn]] = {
    "date": lambda s: _date(_mapping(s, "date")),
    "number": lambda s: _number(_mapping(s, "number")),
    "currency": lambda s: _currency(_mapping(s, "currency")),
    "expr": _expr,
    "default": _default,
    "truncate": _truncate,
    "split": _split,
    "join": _join,
    "lookup": _lookup,
    "replace": _replace,
    "case": _case,
}
OPERATIONS = sorted([*_SIMPLE, *_WITH_ARGS])


def parse_op(raw: Any) -> Op:
    """``"trim"`` or ``{"date": {...}}`` → :class:`Op`; ValueError naming what is wrong."""
    if isinstance(raw, str):
        name = raw.strip()
        if name in _SIMPLE:
            return Op(name, _SIMPLE[name])
        if name in _WITH_ARGS:
            raise ValueError(f"transform {name!r} needs settings, e.g. {{{name}: ...}}")
        raise ValueError(f"unknown transform {raw!r}; known: {', '.join(OPERATIONS)}")
    if isinstance(raw, dict) and len(raw) == 1:
        name, spec = next(iter(raw.items()))
        if name in _WITH_ARGS:
            return Op(str(name), _WITH_ARGS[name](spec))
        if name in _SIMPLE:
            raise ValueError(f"transform {name!r} takes no settings; write it as a plain name")
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(OPERATIONS)}")
    raise ValueError(
        "a transform is a name (trim) or a one-key mapping ({date: {from: '%d/%m/%Y'}})"
    )


def apply_ops(ops: list[Op], value: Any, record: Mapping[str, Any]) -> Any:
    for op in ops:
        value = op(value, record)
    return value


def _mapping(spec: Any, name: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"{name}: expected settings as a mapping")
    return spec


def _only(spec: dict[str, Any], name: str, allowed: set[str]) -> None:
    extra = set(spec) - allowed
    if extra:
        raise ValueError(
            f"{name}: unknown setting(s) {', '.join(sorted(map(str, extra)))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _choice(value: Any, options: tuple[str, ...], where: str) -> str:
    if value not in options:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(options)}")
    return str(value)


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    return value
