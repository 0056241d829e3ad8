"""What a step sees and what it hands back to the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from aiwire.errors import AIWireError
from aiwire.flows.store import StepMetrics

if TYPE_CHECKING:
    from aiwire.flows.loader import Flow


class StepFailure(AIWireError):
    """A step or sink failed. ``error_class`` says what kind of failure it was:
    ``invalid_output`` (a model answer that stayed invalid), ``transient`` (worth retrying),
    ``auth`` (a credential was refused), ``blocked`` (the SSRF guard), ``permanent``."""

    def __init__(
        self,
        message: str,
        *,
        error_class: str = "permanent",
        retryable: bool = False,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, status=status)
        self.error_class = error_class
        self.details = details


@dataclass
class RecordContext:
    """One record on its way through a flow."""

    flow: Flow
    key: str
    source: dict[str, Any]
    data: dict[str, Any]
    run_id: str | None = None

    def names(self) -> dict[str, Any]:
        """What templates and expressions see: the record's fields, plus ``_key``, ``_flow``,
        ``_source`` (the record as it came in) and ``vars``. Secrets are never part of it."""
        return {
            **self.data,
            "_key": self.key,
            "_flow": self.flow.name,
            "_source": self.source,
            "vars": self.flow.spec.vars,
        }

    def names_with_secrets(self) -> dict[str, Any]:
        """:meth:`names` plus ``secrets`` (only for header templates)."""
        revealed = {name: s.reveal() for name, s in self.flow.secrets().items()}
        return {**self.names(), "secrets": revealed}


@dataclass
class ReviewRequest:
    """A ``review`` step asks to hold the record for a person."""

    draft: dict[str, Any]
    editable: list[str]
    queue: str
    instructions: str | None
    timeout: float | None


@dataclass
class Outcome:
    """A step's result: the record's new data, what to checkpoint, and where to go next."""

    data: dict[str, Any]
    output: dict[str, Any] | None = None
    metrics: StepMetrics = field(default_factory=StepMetrics)
    #: ``next``, a later step's id, ``end`` (to the sinks) or ``drop``.
    goto: str = "next"
    #: Set by ``filter`` (and ``branch`` to ``drop``): the record ends as ``filtered``.
    filtered: str | None = None
    review: ReviewRequest | None = None


def record_key(flow: Flow, data: dict[str, Any], default: str | None = None) -> str:
    """A record's identity: the flow's ``key`` (a field path or a template) rendered over it,
    else ``default`` (a webhook's event id), else a hash of its content. Keys longer than
    :data:`~aiwire.flows.store.MAX_KEY` are stored as their SHA-256."""
    from aiwire.flows import paths, templates
    from aiwire.flows.store import MAX_KEY, jsonable

    spec = flow.spec.key
    if spec is not None:
        if templates.is_template(spec):
            try:
                names = {**data, "_flow": flow.name, "vars": flow.spec.vars}
                key = templates.render(spec, names).strip()
            except templates.TemplateError as exc:
                raise StepFailure(f"key: {exc.message}") from None
        else:
            value = paths.get(data, spec)
            if value is paths.MISSING or value is None or str(value).strip() == "":
                raise StepFailure(f"key: the record has no {spec!r}")
            key = str(value).strip()
        if not key:
            raise StepFailure("key: the key template gave an empty key")
    elif default is not None:
        key = default
    else:
        digest = hashlib.sha256(orjson.dumps(jsonable(data), option=orjson.OPT_SORT_KEYS))
        return "sha256:" + digest.hexdigest()
    if len(key) > MAX_KEY:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key
