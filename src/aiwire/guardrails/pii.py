"""The PII guardrail: find personal data in everything a provider would see, then mask it
(placeholders, optionally restored in the answer), refuse the request, or do nothing.

::

    policy = PIIPolicy(action="mask", kinds=["email", "phone", "national_id"])
    guard = PIIGuard(policy)
    redaction = guard.apply(request)        # None: nothing found (or action off)
    if redaction is not None:
        request = redaction.request          # what goes upstream: "<EMAIL_1> wrote ..."
        ... answer = await router.chat(request)
        if redaction.vault is not None:
            answer = redaction.vault.restore(answer)   # the client sees its own values

What is scanned: every message's string content and text parts (system, developer, user,
assistant and tool results alike), assistant refusals, tool-call arguments (JSON: the string
values inside are masked, so the arguments stay valid JSON), the ``user`` field and every string
inside fields aiwire passes through unknown (``metadata``...). Image parts are not text.

Within one request the same value of the same kind always gets the same placeholder, numbered
per kind in order of appearance (``<EMAIL_1>``, ``<EMAIL_2>``, ``<PHONE_1>``); numbers already
used by placeholder-shaped text in the request are skipped, so a restore never swaps a
client's literal ``<EMAIL_1>`` for a value. Values are never logged, never put in an error
and never kept beyond the request's :class:`Vault`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiwire import errors
from aiwire.guardrails.detectors import BUILTIN, GROUPS, Detector, Finding, RegexDetector
from aiwire.guardrails.restore import TOKEN, Vault
from aiwire.types import ChatRequest, Message, TextPart

Action = Literal["off", "mask", "block"]

# --- configuration ----------------------------------------------------------------------------


class CustomPattern(BaseModel):
    """A user's own kind: a name (its placeholder stem) and a regex."""

    model_config = ConfigDict(extra="forbid")

    #: Lower-case kind name; ``employee_id`` gives placeholders ``<EMPLOYEE_ID_1>``.
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    #: A Python regex; the whole match is the value.
    pattern: str
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.fullmatch(""):
            raise ValueError("the pattern matches the empty string; it would match everywhere")
        return value

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


class PresidioOptions(BaseModel):
    """How the optional Presidio engine runs (``engine: presidio``)."""

    model_config = ConfigDict(extra="forbid")

    language: str = "en"
    #: An installed spaCy model package (or a model directory); aiwire never downloads one.
    model: str = "en_core_web_lg"
    #: Presidio entity names to report (``PERSON``, ``LOCATION``...); default: all it knows.
    entities: list[str] | None = None
    score_threshold: float = Field(default=0.5, ge=0, le=1)
    #: Refuse to start when Presidio or the model is missing (default: warn and carry on with
    #: the built-in detectors only).
    required: bool = False


class PIIPolicy(BaseModel):
    """What to do with personal data, for one key or one model."""

    model_config = ConfigDict(extra="forbid")

    action: Action = "off"
    #: Built-in kinds to look for; ``national_id`` stands for all national ID kinds. With
    #: ``engine: presidio`` also Presidio entities in lower case (``person``, ``location``).
    #: Custom patterns always apply.
    kinds: list[str] = Field(default_factory=lambda: list(BUILTIN))
    #: Put the real values back into the answer (``mask`` only).
    restore: bool = True
    custom: list[CustomPattern] = Field(default_factory=list)
    engine: Literal["builtin", "presidio"] = "builtin"
    presidio: PresidioOptions = Field(default_factory=PresidioOptions)

    @model_validator(mode="after")
    def _known_kinds(self) -> PIIPolicy:
        custom = {c.name for c in self.custom}
        clash = custom & (set(BUILTIN) | set(GROUPS))
        if clash:
            raise ValueError(f"custom pattern names clash with built-in kinds: {sorted(clash)}")
        if len(custom) != len(self.custom):
            raise ValueError("custom pattern names must be unique")
        if self.engine == "builtin":
            unknown = set(self.kinds) - set(BUILTIN) - set(GROUPS) - custom
            if unknown:
                known = ", ".join([*BUILTIN, *GROUPS])
                raise ValueError(f"unknown PII kinds {sorted(unknown)}; known kinds: {known}")
        return self

    def builtin_kinds(self) -> list[str]:
        """The built-in kinds this policy asks for, groups expanded, in priority order."""
        wanted: set[str] = set()
        for kind in self.kinds:
            wanted.update(GROUPS.get(kind, (kind,)))
        return [k for k in BUILTIN if k in wanted]


def build_detector(policy: PIIPolicy) -> Detector:
    """The detector a policy asks for (the Presidio engine only if installed and usable)."""
    regex = RegexDetector(policy.builtin_kinds(), [(c.name, c.compiled()) for c in policy.custom])
    if policy.engine == "presidio":
        from aiwire.guardrails.presidio import with_presidio

        return with_presidio(regex, policy)
    return regex


# --- the guard --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redaction:
    """A masked request and what is needed to undo the masking in its answer."""

    request: ChatRequest
    #: Placeholders → values; ``None`` when the policy does not restore.
    vault: Vault | None
    #: Findings per kind (for metrics and logs: counts only, no values).
    counts: dict[str, int]


TextFn = Callable[[str, str], str]  # (text, where) → text


class PIIGuard:
    """A policy with its detector, built once (at config load) and used for every request."""

    def __init__(self, policy: PIIPolicy, detector: Detector | None = None) -> None:
        self.policy = policy
        self.detector = detector if detector is not None else build_detector(policy)

    def __repr__(self) -> str:
        return f"PIIGuard(action={self.policy.action!r}, kinds={sorted(self.detector.kinds)})"

    def scan(self, text: str) -> list[Finding]:
        return self.detector.find(text)

    def apply(self, request: ChatRequest) -> Redaction | None:
        """Enforce the policy on ``request``.

        ``off``, or nothing found: ``None``. ``block``: raises :class:`BadRequestError`
        (400, code ``pii_detected``) naming the kinds found and where, never the values.
        ``mask``: a :class:`Redaction` with a masked copy of the request (the original is not
        changed).
        """
        action = self.policy.action
        if action == "off":
            return None
        found: dict[str, list[Finding]] = {}  # the same text (a repeated prompt) scans once
        where: list[str] = []
        counts: Counter[str] = Counter()

        def scan(text: str, path: str) -> str:
            findings = found.get(text)
            if findings is None:
                findings = found[text] = self.detector.find(text)
            if findings:
                where.append(path)
                counts.update(f.kind for f in findings)
            return text

        rewrite_request(request, scan)
        if not where:
            return None
        if action == "block":
            raise pii_error(counts, where[0])
        masker = _Masker(self.detector, found, reserved=_placeholders_in(found))
        masked = rewrite_request(request, masker.mask)
        vault = Vault(masker.values) if self.policy.restore else None
        return Redaction(masked, vault, dict(counts))


def pii_error(counts: Counter[str] | dict[str, int], where: str) -> errors.BadRequestError:
    kinds = ", ".join(sorted(counts))
    return errors.BadRequestError(
        f"The request contains personal data ({kinds}) that this key's or model's PII policy "
        f"does not allow to send to the model provider (first found in {where}). Remove it, "
        "or ask an administrator to set the policy to mask it instead.",
        code="pii_detected",
        param=where,
    )


def _placeholders_in(texts: dict[str, Any]) -> set[str]:
    return {tok for t in texts if "<" in t for tok in TOKEN.findall(t)}


class _Masker:
    """One request's masking state: which value got which placeholder."""

    def __init__(
        self, detector: Detector, found: dict[str, list[Finding]], reserved: set[str]
    ) -> None:
        self._detector = detector
        self._found = found
        self._reserved = reserved
        self._by_value: dict[tuple[str, str], str] = {}
        self._counters: Counter[str] = Counter()
        self.values: dict[str, str] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        token = self._by_value.get(key)
        if token is None:
            stem = kind.upper()
            while True:
                self._counters[stem] += 1
                token = f"<{stem}_{self._counters[stem]}>"
                if token not in self._reserved:
                    break
            self._by_value[key] = token
            self.values[token] = value
        return token

    def mask(self, text: str, where: str) -> str:
        findings = self._found.get(text)
        if findings is None:
            findings = self._detector.find(text)
        if not findings:
            return text
        out: list[str] = []
        pos = 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(self._placeholder(f.kind, text[f.start : f.end]))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)


# --- walking every text of a request ----------------------------------------------------------


def rewrite_request(request: ChatRequest, fn: TextFn) -> ChatRequest:
    """``request`` with ``fn`` applied to every text a provider will see; the same object when
    ``fn`` changed nothing (so a scan-only ``fn`` costs no copies)."""
    update: dict[str, Any] = {}
    messages = request.messages
    new_messages: list[Message] | None = None
    for i, m in enumerate(messages):
        nm = _rewrite_message(m, fn, f"messages[{i}]")
        if nm is not m:
            if new_messages is None:
                new_messages = list(messages)
            new_messages[i] = nm
    if new_messages is not None:
        update["messages"] = new_messages
    if request.user:
        user = fn(request.user, "user")
        if user != request.user:
            update["user"] = user
    for key, value in (request.model_extra or {}).items():
        new = _rewrite_value(value, fn, key)
        if new is not value:
            update[key] = new
    return request.model_copy(update=update) if update else request


def _rewrite_message(m: Message, fn: TextFn, path: str) -> Message:
    update: dict[str, Any] = {}
    content = m.content
    if isinstance(content, str):
        new = fn(content, f"{path}.content")
        if new != content:
            update["content"] = new
    elif content:
        parts = list(content)
        changed = False
        for j, p in enumerate(parts):
            if isinstance(p, TextPart):
                text = fn(p.text, f"{path}.content[{j}].text")
                if text != p.text:
                    parts[j] = p.model_copy(update={"text": text})
                    changed = True
        if changed:
            update["content"] = parts
    if m.refusal:
        new = fn(m.refusal, f"{path}.refusal")
        if new != m.refusal:
            update["refusal"] = new
    if m.tool_calls:
        calls = list(m.tool_calls)
        changed = False
        for j, call in enumerate(calls):
            args = call.function.arguments
            new = _rewrite_json_text(args, fn, f"{path}.tool_calls[{j}].function.arguments")
            if new != args:
                fn_new = call.function.model_copy(update={"arguments": new})
                calls[j] = call.model_copy(update={"function": fn_new})
                changed = True
        if changed:
            update["tool_calls"] = calls
    return m.model_copy(update=update) if update else m


def _rewrite_json_text(text: str, fn: TextFn, path: str) -> str:
    """Tool-call arguments are JSON: ``fn`` applies to the values inside (strings, and integers
    such as a card number sent as a number), so masked arguments are still valid JSON.
    Arguments that are not JSON are treated as plain text."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return fn(text, path)
    new = _rewrite_value(data, fn, path)
    return text if new is data else orjson.dumps(new).decode()


def _rewrite_value(value: Any, fn: TextFn, path: str) -> Any:
    """``value`` (JSON data) with ``fn`` applied to its strings and integers; the same object
    when nothing changed."""
    if isinstance(value, str):
        new = fn(value, path)
        return value if new == value else new
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
        new = fn(digits, path)
        return value if new == digits else new
    if isinstance(value, list):
        items = [_rewrite_value(v, fn, f"{path}[{i}]") for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        out = {k: _rewrite_value(v, fn, f"{path}.{k}") for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    return value


__all__ = [
    "Action",
    "CustomPattern",
    "PIIGuard",
    "PIIPolicy",
    "PresidioOptions",
    "Redaction",
    "build_detector",
    "pii_error",
    "rewrite_request",
]
