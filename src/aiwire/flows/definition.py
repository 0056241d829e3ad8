"""The flow file: ``source`` → ordered ``steps`` → ``sinks``, validated with pydantic.

::

    version: 1
    name: lead-followup
    source: {kind: csv, path: leads.csv}
    key: lead_id
    secrets: {CRM_TOKEN: env:CRM_TOKEN}
    schedule: "*/15 * * * *"
    on_error: {retries: 2, backoff: 2s, action: dead_letter}
    steps:
      - {kind: map, fields: {mobile_number: phone, company: account.name}}
      - {kind: prompt, template: "Write to {{ first_name }} at {{ company }} ..."}
      - {kind: model, id: draft, model: sim-gpt, schema: {type: object, ...}}
      - {kind: review, editable: [draft.subject, draft.body]}
    sinks:
      - {kind: http, url: "https://crm.example.com/activities", json: {lead: "{{ lead_id }}"}}

Every kind is a pydantic model with ``extra="forbid"``; templates, expressions, paths, cron
schedules and JSON schemas are compiled while loading, so a mistake is reported before any
record moves, as ``flow.yaml:14: steps[2].schema: ...`` (the technique of :mod:`aiwire.config`).
The format is documented in ``docs/flows.md``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiwire.flows import paths, templates
from aiwire.flows.cron import Cron, CronError
from aiwire.flows.durations import Duration
from aiwire.flows.expressions import Expression, ExpressionError
from aiwire.flows.transforms import Op, parse_op
from aiwire.guardrails.pii import PIIPolicy
from aiwire.observability.alerts import Webhook
from aiwire.secrets import is_reference

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Where a ``branch`` may send a record besides a later step's id.
SPECIAL_TARGETS = ("next", "end", "drop")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _expression(value: str | None) -> str | None:
    if value is not None:
        try:
            Expression(value)
        except ExpressionError as exc:
            raise ValueError(exc.message) from None
    return value


def _template(value: str | None) -> str | None:
    if value is not None:
        try:
            templates.check(value)
        except templates.TemplateError as exc:
            raise ValueError(exc.message) from None
    return value


def _path(value: str | None) -> str | None:
    if value is not None:
        paths.parse(value)
    return value


def _path_or_template(value: str) -> str:
    return str(_template(value)) if templates.is_template(value) else str(_path(value))


def _db_url(value: str) -> str:
    """A database URL: a reference, or a literal without a password."""
    if is_reference(value):
        return value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL (e.g. sqlite:///data/crm.db or env:CRM_DATABASE_URL)"
        ) from None
    if parsed.password:
        raise ValueError(
            "a database URL with a password in a flow file is refused; write env:NAME (and "
            "export NAME=postgresql://user:password@host/db) or file:/path"
        )
    return value


def _reference(value: str) -> str:
    if not is_reference(value):
        raise ValueError(
            "a literal secret in a flow file is refused; write env:NAME (and export NAME) or "
            "file:/path/to/secret"
        )
    return value


# --- sources --------------------------------------------------------------------------------------


class CsvSource(_Strict):
    """Rows of a CSV file (header row = field names). ``path`` is relative to the flow file."""

    kind: Literal["csv"]
    path: str
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"


class JsonlSource(_Strict):
    """One JSON object per line."""

    kind: Literal["jsonl"]
    path: str
    encoding: str = "utf-8"


class WebhookSource(_Strict):
    """``POST /flows/{name}/events``: HMAC-SHA256 signed events (:mod:`aiwire.flows.webhook`)."""

    kind: Literal["webhook"]
    #: The shared secret, ``env:NAME`` or ``file:/path``.
    secret: str
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"
    event_id_header: str = "X-Event-Id"
    #: A path in the JSON body holding the event id (used when the header is absent).
    event_id_field: str | None = None
    #: How old (or how far in the future) a timestamp may be.
    tolerance: Duration = 300.0
    #: ``timestamp.body``: the signature covers ``<timestamp>.<raw body>`` (a replayed body
    #: cannot be given a fresh timestamp); ``body``: the raw body only (GitHub-style senders).
    signed_payload: Literal["timestamp.body", "body"] = "timestamp.body"
    max_body_kb: int = Field(default=256, ge=1, le=20_480)

    _secret = field_validator("secret")(classmethod(lambda cls, v: _reference(v)))
    _id_path = field_validator("event_id_field")(classmethod(lambda cls, v: _path(v)))


class Cursor(_Strict):
    """Incremental polling: send the highest ``field`` seen so far as query parameter ``param``."""

    field: str
    param: str
    initial: str | int | None = None

    _field = field_validator("field")(classmethod(lambda cls, v: _path(v)))


class Pagination(_Strict):
    """``next_url``: the body holds the next page's URL at ``path``; ``next_token``: the body
    holds a token at ``path``, sent back as ``param``; ``page``: ``param`` counts pages from
    ``start`` until a page has no items."""

    style: Literal["next_url", "next_token", "page"]
    path: str | None = None
    param: str | None = None
    start: int = 1
    max_pages: int = Field(default=100, ge=1, le=100_000)

    @model_validator(mode="after")
    def _complete(self) -> Pagination:
        if self.style in ("next_url", "next_token") and not self.path:
            raise ValueError(f"pagination style {self.style} needs path: (where the body has it)")
        if self.style in ("next_token", "page") and not self.param:
            raise ValueError(f"pagination style {self.style} needs param: (the query parameter)")
        if self.path:
            paths.parse(self.path)
        return self


class HttpSource(_Strict):
    """Poll an HTTP API (GET) for new records, with a cursor and pagination."""

    kind: Literal["http"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: Path to the list of records in the response (none: the body is the list).
    items: str | None = None
    cursor: Cursor | None = None
    pagination: Pagination | None = None
    timeout: Duration = 30.0
    #: Hosts/CIDRs the SSRF guard lets through for this source (added to ``allow_hosts``).
    allow: list[str] = Field(default_factory=list)

    _items = field_validator("items")(classmethod(lambda cls, v: _path(v)))

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for v in value.values():
            _template(v)
        return value


class Incremental(_Strict):
    """Fetch only rows whose ``column`` is above the highest value seen so far."""

    column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    initial: str | int | float | None = None


class SqlSource(_Strict):
    """A query on any SQLAlchemy URL (``url`` may be ``env:NAME`` when it holds a password)."""

    kind: Literal["sql"]
    url: str
    query: str
    incremental: Incremental | None = None
    batch_size: int = Field(default=1000, ge=1, le=100_000)

    _url = field_validator("url")(classmethod(lambda cls, v: _db_url(v)))


Source = Annotated[
    CsvSource | JsonlSource | WebhookSource | HttpSource | SqlSource, Field(discriminator="kind")
]


# --- steps --------------------------------------------------------------------------------------


class _Step(_Strict):
    #: Names the step in checkpoints, run history and ``branch`` targets (default: its kind,
    #: numbered when repeated).
    id: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    #: Run the step only when this expression holds (otherwise it is skipped).
    when: str | None = None
    #: Attempts after the first for retryable failures (default: ``on_error.retries``).
    retries: int | None = Field(default=None, ge=0, le=10)

    _when = field_validator("when")(classmethod(lambda cls, v: _expression(v)))


class MapField(_Strict):
    """``from`` a path (with an optional ``default``), or a constant ``value``."""

    from_: str | None = Field(default=None, alias="from")
    value: Any = None
    default: Any = None
    required: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> MapField:
        if (self.from_ is None) == ("value" not in self.model_fields_set):
            raise ValueError("give exactly one of from: (a field path) or value: (a constant)")
        if self.from_ is not None:
            paths.parse(self.from_)
        return self


class MapStep(_Step):
    """Select, rename and nest fields: ``{mobile_number: phone, city: address.city}``."""

    kind: Literal["map"]
    fields: dict[str, MapField]
    #: Keep the fields not mentioned (default: the output has only the mapped fields).
    keep: bool = False
    drop: list[str] = Field(default_factory=list)

    @field_validator("fields")
    @classmethod
    def _targets(cls, value: dict[str, MapField]) -> dict[str, MapField]:
        for target in value:
            paths.parse(target)
        return value


class TransformField(_Strict):
    from_: str | None = Field(default=None, alias="from")
    ops: list[Op]

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ops" in data:
            return data
        return {"ops": data if isinstance(data, list) else [data]}

    @field_validator("ops", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> list[Op]:
        if not isinstance(value, list) or not value:
            raise ValueError("give one transform or a list of them")
        return [v if isinstance(v, Op) else parse_op(v) for v in value]


class TransformStep(_Step):
    """Dates, numbers, currencies, text clean-up and computed fields (:mod:`.transforms`)."""

    kind: Literal["transform"]
    fields: dict[str, TransformField]


class PromptStep(_Step):
    """Render a sandboxed Jinja2 template over the record into a field (default ``prompt``)."""

    kind: Literal["prompt"]
    template: str
    into: str = "prompt"

    _template_ok = field_validator("template")(classmethod(lambda cls, v: _template(v)))
    _into = field_validator("into")(classmethod(lambda cls, v: _path(v)))


class ModelStep(_Step):
    """A model call through the router with a validated structured answer."""

    kind: Literal["model"]
    model: str
    #: The field holding the user message (rendered by a ``prompt`` step).
    input: str = "prompt"
    system: str | None = None
    #: A JSON schema (inline), ``file:schemas/x.json`` (relative to the flow file) or
    #: ``package.module:Model`` (a pydantic model). None: the answer is kept as text.
    schema_: dict[str, Any] | str | None = Field(default=None, alias="schema")
    #: Re-asks with the validation error after an invalid answer.
    reasks: int = Field(default=2, ge=0, le=5)
    #: Ask for a ``confidence`` (0-1) in the answer and record it.
    confidence: bool = False
    #: Where the answer goes (default: the step's id).
    into: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    #: Mask personal data before the prompt leaves (restored in the answer).
    pii: PIIPolicy | None = None

    _input = field_validator("input")(classmethod(lambda cls, v: _path(v)))
    _system = field_validator("system")(classmethod(lambda cls, v: _template(v)))
    _into = field_validator("into")(classmethod(lambda cls, v: _path(v)))


class ClassifyStep(_Step):
    """One label from a fixed set, validated (the model cannot answer anything else)."""

    kind: Literal["classify"]
    model: str
    #: A field path, or a template over the record.
    input: str
    labels: list[str] = Field(min_length=2)
    instructions: str | None = None
    into: str | None = None
    confidence: bool = False
    reasks: int = Field(default=2, ge=0, le=5)

    _input = field_validator("input")(classmethod(lambda cls, v: _path_or_template(v)))
    _into = field_validator("into")(classmethod(lambda cls, v: _path(v)))

    @field_validator("labels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("labels must be unique")
        return value


class ChunkStep(_Step):
    """Text too long for one call: split by tokens, ``map_prompt`` each part, then reduce."""

    kind: Literal["chunk"]
    model: str
    field: str
    into: str | None = None
    #: Tokens per part (default: what the model's context window leaves for the prompt).
    chunk_tokens: int | None = Field(default=None, ge=50)
    overlap_tokens: int = Field(default=0, ge=0)
    #: Template with ``{{ chunk }}``, ``{{ index }}`` (1-based) and ``{{ total }}``.
    map_prompt: str
    #: Template with ``{{ parts }}`` (the list of map answers); none: answers joined.
    reduce_prompt: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)

    _field = field_validator("field")(classmethod(lambda cls, v: _path(v)))
    _into = field_validator("into")(classmethod(lambda cls, v: _path(v)))
    _map = field_validator("map_prompt")(classmethod(lambda cls, v: _template(v)))
    _reduce = field_validator("reduce_prompt")(classmethod(lambda cls, v: _template(v)))

    @model_validator(mode="after")
    def _overlap(self) -> ChunkStep:
        if self.chunk_tokens is not None and self.overlap_tokens >= self.chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return self


class BranchCase(_Strict):
    when: str
    goto: str

    _when = field_validator("when")(classmethod(lambda cls, v: _expression(v)))


class BranchStep(_Step):
    """The first case whose ``when`` holds sends the record to ``goto``: a later step's id,
    ``end`` (straight to the sinks) or ``drop`` (no sink write); none holds: ``default``."""

    kind: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: str = "next"


class ReviewStep(_Step):
    """Hold the record for a person: approve, edit (only ``editable`` fields) or reject."""

    kind: Literal["review"]
    queue: str = "default"
    #: Fields the reviewer sees (default: every field).
    show: list[str] = Field(default_factory=list)
    editable: list[str] = Field(default_factory=list)
    #: Approve without a person when this holds (the decision is recorded as ``auto``).
    auto_approve: str | None = None
    timeout: Duration | None = None
    on_timeout: Literal["approve", "reject", "dead_letter"] = "reject"
    #: After a rejection: ``stop`` (no sink write) or ``continue`` (sinks see the decision in
    #: ``_review`` and can use ``when:``).
    on_reject: Literal["stop", "continue"] = "stop"
    instructions: str | None = None

    _auto = field_validator("auto_approve")(classmethod(lambda cls, v: _expression(v)))

    @field_validator("show", "editable")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for p in value:
            paths.parse(p)
        return value


class FilterStep(_Step):
    """Keep the record only when ``keep`` holds; otherwise it ends as ``filtered``."""

    kind: Literal["filter"]
    keep: str
    reason: str | None = None

    _keep = field_validator("keep")(classmethod(lambda cls, v: _expression(v)))


Step = Annotated[
    MapStep
    | TransformStep
    | PromptStep
    | ModelStep
    | ClassifyStep
    | ChunkStep
    | BranchStep
    | ReviewStep
    | FilterStep,
    Field(discriminator="kind"),
]
STEP_KINDS = (
    "map",
    "transform",
    "prompt",
    "model",
    "classify",
    "chunk",
    "branch",
    "review",
    "filter",
)


# --- sinks --------------------------------------------------------------------------------------


class _Sink(_Strict):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    when: str | None = None
    retries: int | None = Field(default=None, ge=0, le=10)

    _when = field_validator("when")(classmethod(lambda cls, v: _expression(v)))


class HttpSink(_Sink):
    """Send the record to an HTTP API, with an ``Idempotency-Key`` so re-delivery is harmless."""

    kind: Literal["http"]
    url: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    #: Templates; only here (and in HTTP source headers) may ``{{ secrets.NAME }}`` appear.
    headers: dict[str, str] = Field(default_factory=dict)
    #: A JSON body whose strings are templates (see :func:`templates.render_value`).
    json_: Any = Field(default=None, alias="json")
    #: A text body template (instead of ``json``), sent with ``content_type``.
    body: str | None = None
    content_type: str = "text/plain; charset=utf-8"
    idempotency_header: str | None = "Idempotency-Key"
    timeout: Duration = 30.0
    backoff: Duration = 0.5
    allow: list[str] = Field(default_factory=list)

    _url = field_validator("url")(classmethod(lambda cls, v: _template(v)))
    _body = field_validator("body")(classmethod(lambda cls, v: _template(v)))

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for v in value.values():
            _template(v)
        return value

    @field_validator("json_")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            templates.check_value(value)
        except templates.TemplateError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpSink:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give json: or body:, not both")
        return self


def _columns(value: dict[str, str]) -> dict[str, str]:
    for v in value.values():
        _path_or_template(v)
    return value


class SqlSink(_Sink):
    """Upsert one row per record: ``key`` columns identify it; ``columns`` are paths or
    templates. The table needs a unique index on the key columns."""

    kind: Literal["sql"]
    url: str
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    key: list[str] = Field(min_length=1)
    columns: dict[str, str]

    _cols = field_validator("columns")(classmethod(lambda cls, v: _columns(v)))
    _url = field_validator("url")(classmethod(lambda cls, v: _db_url(v)))

    @model_validator(mode="after")
    def _key_in_columns(self) -> SqlSink:
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(f"key column(s) {', '.join(missing)} must be in columns")
        for name in self.columns:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"column name {name!r} is not a plain SQL identifier")
        return self


class JsonlSink(_Sink):
    """Append one JSON line per record (``fields``: a selection; ``record``: a template)."""

    kind: Literal["jsonl"]
    path: str
    fields: list[str] | None = None
    record: dict[str, Any] | None = None

    @field_validator("record")
    @classmethod
    def _record(cls, value: Any) -> Any:
        try:
            templates.check_value(value)
        except templates.TemplateError as exc:
            raise ValueError(exc.message) from None
        return value


class CsvSink(_Sink):
    """Append one CSV row per record; the header is written with the first row."""

    kind: Literal["csv"]
    path: str
    columns: dict[str, str]
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    _cols = field_validator("columns")(classmethod(lambda cls, v: _columns(v)))


class EmlSink(_Sink):
    """An ``.eml`` draft per record (``X-Unsent: 1``) in ``dir``, for a person to send."""

    kind: Literal["eml"]
    dir: str
    to: str
    from_: str = Field(alias="from")
    subject: str
    body: str
    cc: str | None = None
    file_name: str = "{{ _key }}.eml"

    @field_validator("to", "from_", "subject", "body", "cc", "file_name")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return _template(value)


Sink = Annotated[HttpSink | SqlSink | JsonlSink | CsvSink | EmlSink, Field(discriminator="kind")]


# --- the flow -----------------------------------------------------------------------------------


class OnError(_Strict):
    """What happens when a step or sink fails: retry retryable failures ``retries`` times with
    exponential backoff, then ``dead_letter`` the record (default), ``skip`` it, or ``stop``
    the run."""

    retries: int = Field(default=2, ge=0, le=10)
    backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    action: Literal["dead_letter", "skip", "stop"] = "dead_letter"


class FlowAlerts(_Strict):
    """Webhook alerts: a failed run, and a dead-letter queue that grew past ``dlq_threshold``."""

    webhooks: list[Webhook] = Field(default_factory=list)
    dlq_threshold: int = Field(default=0, ge=0)
    dedupe_seconds: Duration = 900.0


class FlowSpec(_Strict):
    version: Literal[1] = 1
    name: str
    description: str = ""
    source: Source
    #: A field path or a template giving each record's identity (default: the webhook event
    #: id, else a hash of the record's content).
    key: str | None = None
    #: Names → ``env:``/``file:`` references, usable as ``{{ secrets.NAME }}`` in headers.
    secrets: dict[str, str] = Field(default_factory=dict)
    #: Named constants for templates and expressions (``{{ vars.crm_url }}``), overridable at
    #: run time (``aiwire flow run ... --var crm_url=http://...``). Not for secrets.
    vars: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    schedule: str | None = None
    timezone: str = "UTC"
    concurrency: int = Field(default=4, ge=1, le=64)
    on_error: OnError = Field(default_factory=OnError)
    #: Hosts/CIDRs (loopback, private) HTTP sources and sinks may reach despite the SSRF guard.
    allow_hosts: list[str] = Field(default_factory=list)
    alerts: FlowAlerts = Field(default_factory=FlowAlerts)
    steps: list[Step] = Field(default_factory=list)
    sinks: list[Sink] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                "a flow name is lower-case letters, digits, '-' and '_' (it appears in URLs: "
                "/flows/<name>/events)"
            )
        return value

    _key = field_validator("key")(
        classmethod(lambda cls, v: None if v is None else _path_or_template(v))
    )

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"secret name {name!r} must be an identifier")
            _reference(ref)
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Cron.parse(value)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC") from None
        return value

    def step_ids(self) -> list[str]:
        """Each step's id: its own, else its kind (numbered ``model_2`` when repeated)."""
        return _ids([(s.id, s.kind) for s in self.steps])

    def sink_ids(self) -> list[str]:
        return _ids([(s.id, s.kind) for s in self.sinks])


def _ids(items: list[tuple[str | None, str]]) -> list[str]:
    given = {i for i, _ in items if i}
    out: list[str] = []
    counts: dict[str, int] = {}
    for own, kind in items:
        if own:
            out.append(own)
            continue
        counts[kind] = counts.get(kind, 0) + 1
        name = kind if counts[kind] == 1 else f"{kind}_{counts[kind]}"
        while name in given or name in out:
            counts[kind] += 1
            name = f"{kind}_{counts[kind]}"
        out.append(name)
    return out


Loc = tuple[str | int, ...]


def semantic_problems(spec: FlowSpec) -> list[tuple[Loc, str]]:
    """What pydantic cannot see field by field: duplicate ids, branch targets, secrets used in
    templates but not declared. Each problem comes with the location of the offending field."""
    problems: list[tuple[Loc, str]] = []
    step_ids = spec.step_ids()
    for ids, what in ((step_ids, "steps"), (spec.sink_ids(), "sinks")):
        seen: set[str] = set()
        for i, sid in enumerate(ids):
            if sid in seen:
                problems.append(((what, i, "id"), f"id {sid!r} is used twice"))
            seen.add(sid)
    for i, step in enumerate(spec.steps):
        if isinstance(step, BranchStep):
            targets: list[tuple[Loc, str]] = [
                (("cases", j, "goto"), c.goto) for j, c in enumerate(step.cases)
            ]
            targets.append((("default",), step.default))
            for loc, target in targets:
                if target in SPECIAL_TARGETS:
                    continue
                if target not in step_ids:
                    problems.append(
                        (
                            ("steps", i, *loc),
                            f"goto {target!r} is not a step id (ids: {', '.join(step_ids)}; "
                            f"or {', '.join(SPECIAL_TARGETS)})",
                        )
                    )
                elif step_ids.index(target) <= i:
                    problems.append((("steps", i, *loc), f"goto {target!r} must name a later step"))
    declared = set(spec.secrets)
    used: list[tuple[Loc, str]] = []
    for i, sink in enumerate(spec.sinks):
        if isinstance(sink, HttpSink):
            used += [(("sinks", i, "headers", h), v) for h, v in sink.headers.items()]
    if isinstance(spec.source, HttpSource):
        used += [(("source", "headers", h), v) for h, v in spec.source.headers.items()]
    for where, header in used:
        for name in re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", header):
            if name not in declared:
                problems.append((where, f"secret {name!r} is not declared under secrets:"))
    leaks: list[tuple[Loc, str]] = []
    for i, step in enumerate(spec.steps):
        for fname in ("template", "system", "map_prompt", "reduce_prompt", "input"):
            value = getattr(step, fname, None)
            if isinstance(value, str):
                leaks.append((("steps", i, fname), value))
    for i, sink in enumerate(spec.sinks):
        for fname in ("url", "body", "subject", "to", "path"):
            value = getattr(sink, fname, None)
            if isinstance(value, str):
                leaks.append((("sinks", i, fname), value))
    for loc, text in leaks:
        if re.search(r"\bsecrets\.", text):
            problems.append(
                (
                    loc,
                    "secrets may appear only in headers (so they never reach a prompt, a "
                    "file, a URL in a log line or the dead-letter queue)",
                )
            )
    return problems
