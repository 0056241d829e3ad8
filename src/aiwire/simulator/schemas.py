"""Deterministic JSON values that validate against a JSON schema.

Understands standard JSON Schema (``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf``/
``allOf``, ``enum``, ``const``, type lists, ``format``, numeric bounds, ``minItems``/``maxItems``,
``minLength``/``maxLength``) and the Gemini OpenAPI subset (upper-case ``type`` values,
``nullable``). Strings take words from a supplied list in order (the capitalised words of the
user's text), then deterministic filler words.
"""

from __future__ import annotations

import math
import re
from typing import Any

FALLBACK_WORDS = (
    "alpha", "bravo", "cedar", "delta", "ember", "fjord", "grove", "harbor",
    "indigo", "juniper", "kestrel", "lumen", "meadow", "nimbus", "orchid", "prairie",
)  # fmt: skip

_FORMATS = {
    "date": "2024-05-17",
    "date-time": "2024-05-17T09:30:00Z",
    "time": "09:30:00",
    "email": "jane.doe@example.com",
    "idn-email": "jane.doe@example.com",
    "uri": "https://example.com/item",
    "url": "https://example.com/item",
    "iri": "https://example.com/item",
    "uuid": "7f1c2b1e-3d4a-4c5b-8e6f-9a0b1c2d3e4f",
    "ipv4": "192.0.2.10",
    "ipv6": "2001:db8::10",
    "hostname": "example.com",
    "duration": "PT1H",
}
_MAX_DEPTH = 8


class ValueGenerator:
    """Builds values for schemas rooted at ``root``; one instance per generated document."""

    def __init__(self, root: dict[str, Any], words: list[str], seed: int, hint: str = "") -> None:
        self.root = root
        self.words = list(words)
        self.seed = seed
        self.text = hint
        self.hint = hint.lower()
        self._word_pos = 0
        self._counter = 0
        self._field = ""

    def generate(self, schema: Any = None, depth: int = 0) -> Any:
        return self._value(self.root if schema is None else schema, depth)

    # --- helpers ------------------------------------------------------------------------------

    def _tick(self) -> int:
        self._counter += 1
        return self.seed + self._counter * 7919

    def next_word(self) -> str:
        if self._word_pos < len(self.words):
            word = self.words[self._word_pos]
        else:
            word = FALLBACK_WORDS[(self.seed + self._word_pos) % len(FALLBACK_WORDS)]
        self._word_pos += 1
        return word

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            target: Any = self.root
            if not isinstance(ref, str) or not ref.startswith("#"):
                return {k: v for k, v in schema.items() if k != "$ref"}
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, dict) else {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**(target if isinstance(target, dict) else {}), **rest}
            seen += 1
        return schema

    @staticmethod
    def _type_of(schema: dict[str, Any]) -> str | None:
        t = schema.get("type")
        if isinstance(t, list):
            options = [str(x).lower() for x in t if str(x).lower() != "null"]
            return options[0] if options else "null"
        if isinstance(t, str) and t.upper() != "TYPE_UNSPECIFIED":
            return t.lower()
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if "minimum" in schema or "maximum" in schema:
            return "number"
        return None

    # --- dispatch -----------------------------------------------------------------------------

    def _value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict):
            return self.next_word() if schema is not False else None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = [o for o in options if not _is_null_schema(self._resolve_any(o))]
                base = {k: v for k, v in schema.items() if k != key}
                pick = self._resolve_any(chosen[0] if chosen else options[0])
                return self._value({**base, **pick}, depth)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self._resolve_any(part))
            return self._value(merged, depth)
        kind = self._type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._tick() % 2 == 0
        if kind == "null":
            return None
        return self._string(schema)

    def _resolve_any(self, schema: Any) -> dict[str, Any]:
        return self._resolve(schema) if isinstance(schema, dict) else {}

    def _enum(self, values: list[Any]) -> Any:
        for v in values:
            if isinstance(v, str) and v and v.lower() in self.hint:
                return v
        return values[self._tick() % len(values)]

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if depth >= _MAX_DEPTH and name not in required:
                continue
            self._field = str(name)
            out[name] = self._value(sub, depth + 1)
        for name in required:
            if name not in out:
                extra = schema.get("additionalProperties")
                out[name] = self._value(extra if isinstance(extra, dict) else {}, depth + 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        lo = _int(schema.get("minItems"), 0)
        hi = _int(schema.get("maxItems"), max(lo, 1))
        count = min(max(lo, 1), hi) if depth < _MAX_DEPTH else lo
        out: list[Any] = []
        for i in range(count):
            if isinstance(prefix, list) and i < len(prefix):
                out.append(self._value(prefix[i], depth + 1))
            else:
                out.append(self._value(items if items is not None else {}, depth + 1))
        return out

    def _bounds(self, schema: dict[str, Any]) -> tuple[float | None, float | None, bool, bool]:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        lo_ex = hi_ex = False
        if isinstance(xlo, int | float) and not isinstance(xlo, bool):
            lo, lo_ex = xlo, True
        if isinstance(xhi, int | float) and not isinstance(xhi, bool):
            hi, hi_ex = xhi, True
        lo = float(lo) if isinstance(lo, int | float) and not isinstance(lo, bool) else None
        hi = float(hi) if isinstance(hi, int | float) and not isinstance(hi, bool) else None
        return lo, hi, lo_ex, hi_ex

    def _integer(self, schema: dict[str, Any]) -> int:
        lo_f, hi_f, lo_ex, hi_ex = self._bounds(schema)
        lo = None if lo_f is None else (math.floor(lo_f) + 1 if lo_ex else math.ceil(lo_f))
        hi = None if hi_f is None else (math.ceil(hi_f) - 1 if hi_ex else math.floor(hi_f))
        if lo is None and hi is None:
            lo, hi = 1, 10
        elif lo is None:
            lo = min(hi or 0, 1) if hi is not None and hi < 1 else 1
        elif hi is None:
            hi = lo + 9
        assert lo is not None and hi is not None
        if hi < lo:  # unsatisfiable: answer the lower bound (a real model would also fail)
            return lo
        value = lo + self._tick() % (hi - lo + 1)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = math.ceil(value / step) * step
            if value > hi:
                value -= step
        return value

    def _number(self, schema: dict[str, Any]) -> float:
        lo, hi, _, hi_ex = self._bounds(schema)
        if lo is None and hi is None:
            return round(1.5 + self._tick() % 20, 1)
        if lo is None:
            assert hi is not None
            return hi - 1.0 if hi_ex else hi
        if hi is None:
            return lo + 1.5
        if hi < lo:
            return lo
        value = lo + (hi - lo) / 2
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = math.ceil(lo / step) * step
        return value

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt.lower() in _FORMATS:
            return _FORMATS[fmt.lower()]
        value = self._from_text(self._field.lower()) or self.next_word()
        lo = _int(schema.get("minLength"), 0)
        hi = _int(schema.get("maxLength"), 0) or None
        while len(value) < lo:
            value = (value + " " + self.next_word()).strip()
        if hi is not None and len(value) > hi:
            value = value[:hi]
        return value

    def _from_text(self, field: str) -> str | None:
        """A value found in the prompt for fields whose name says what they hold."""
        if "email" in field:
            found = _EMAIL.search(self.text)
            return found.group(0) if found else f"{self.next_word().lower()}@example.com"
        if "phone" in field or "mobile" in field:
            found = _PHONE.search(self.text)
            return found.group(0).strip() if found else None
        if "url" in field or "website" in field:
            found = _URL.search(self.text)
            return found.group(0) if found else None
        if field in ("company", "organization", "organisation", "employer", "account"):
            found = _COMPANY.search(self.text)
            return found.group(1) if found else None
        if field in _PERSON_FIELDS:
            found = _PERSON.search(self.text)
            return found.group(0) if found else None
        return None


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_URL = re.compile(r"https?://[^\s)>\]]+")
_COMPANY = re.compile(r"\b(?:from|at|of|with)\s+([A-Z][\w&-]*(?:\s+[A-Z][\w&-]*)*)")
_PERSON_FIELDS = {
    "name",
    "full_name",
    "fullname",
    "contact",
    "contact_name",
    "person",
    "customer",
    "customer_name",
    "sender",
    "author",
    "requester",
}
_PERSON = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b")


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _is_null_schema(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    return isinstance(t, str) and t.lower() == "null"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **{k: v for k, v in b.items() if k not in ("properties", "required")}}
    if "properties" in a or "properties" in b:
        out["properties"] = {**(a.get("properties") or {}), **(b.get("properties") or {})}
    if "required" in a or "required" in b:
        out["required"] = list(
            dict.fromkeys([*(a.get("required") or []), *(b.get("required") or [])])
        )
    return out
