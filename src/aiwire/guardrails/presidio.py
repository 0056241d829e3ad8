"""Microsoft Presidio as an optional second detector (``engine: presidio``), for what regexes
cannot find: names, places, organisations (spaCy NER).

Install with ``pip install "aiwire[presidio]"`` **and** a spaCy model package (for example
``en_core_web_lg``) from your own package mirror: aiwire never downloads a model at run time.
Presidio itself would (its spaCy engine calls ``spacy.cli.download`` for a missing model), so
the model is looked up first and Presidio is only started when it is installed; and its email
recognizer's ``tldextract`` is switched to the Public Suffix List snapshot it ships with, so
it does not fetch the list from the web either.

When Presidio or the model is missing, the guard warns once and keeps working with the
built-in detectors only; ``presidio: {required: true}`` makes that a :class:`ConfigError` at
start instead. Presidio's findings are mapped onto aiwire's kinds where they mean the same
thing (``EMAIL_ADDRESS`` → ``email``), otherwise lower-cased (``PERSON`` → ``person``), and
merged with the built-in ones (built-in kinds win where both found the same text).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiwire.errors import ConfigError
from aiwire.guardrails.detectors import BUILTIN, GROUPS, Detector, Finding, resolve_overlaps

if TYPE_CHECKING:
    from aiwire.guardrails.pii import PIIPolicy, PresidioOptions

log = logging.getLogger("aiwire.guardrails")

#: Presidio entity → aiwire kind, where both name the same thing.
ENTITY_KINDS = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
    "UK_NINO": "uk_nino",
    "ES_NIF": "es_dni",
    "IN_AADHAAR": "in_aadhaar",
    "IP_ADDRESS": "ip_address",
}

INSTALL_HINT = (
    'pip install "aiwire[presidio]" and a spaCy model package (e.g. en_core_web_lg) from your '
    "package mirror"
)


class Analyzer(Protocol):
    """The part of ``presidio_analyzer.AnalyzerEngine`` aiwire uses."""

    def analyze(self, text: str, language: str, **kwargs: Any) -> list[Any]: ...


class PresidioDetector:
    """Findings from a Presidio analyzer, with entity names mapped to aiwire kinds."""

    def __init__(
        self,
        analyzer: Analyzer,
        *,
        language: str = "en",
        entities: list[str] | None = None,
        score_threshold: float = 0.5,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self._analyzer = analyzer
        self._language = language
        self._entities = entities
        self._threshold = score_threshold
        #: Kinds to drop (built-in kinds the policy did not ask for).
        self._skip = skip
        names = entities if entities is not None else list(ENTITY_KINDS)
        self._kinds = frozenset(kind_of(e) for e in names) - skip

    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    def find(self, text: str) -> list[Finding]:
        results = self._analyzer.analyze(
            text=text,
            language=self._language,
            entities=self._entities,
            score_threshold=self._threshold,
        )
        found = [
            Finding(kind, r.start, r.end, text[r.start : r.end])
            for r in results
            if r.end > r.start and (kind := kind_of(r.entity_type)) not in self._skip
        ]
        return resolve_overlaps(found, {})


def kind_of(entity: str) -> str:
    return ENTITY_KINDS.get(entity, entity.lower())


class CombinedDetector:
    """The built-in detector first, then another one; overlaps go to the built-in kinds."""

    def __init__(self, first: Detector, second: Detector) -> None:
        self._first = first
        self._second = second
        self._kinds = first.kinds | second.kinds
        self._priority = {k: i for i, k in enumerate(BUILTIN)}

    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    def find(self, text: str) -> list[Finding]:
        a = self._first.find(text)
        b = self._second.find(text)
        if not b:
            return a
        return resolve_overlaps([*a, *b], self._priority)


def _model_installed(model: str) -> bool:
    """An installed spaCy model package (``en_core_web_lg``) or a model directory."""
    if Path(model).is_dir():
        return True
    if not model.isidentifier():
        return False
    return importlib.util.find_spec(model) is not None


def _offline_tldextract() -> None:
    """Presidio's email recognizer calls ``tldextract.extract``, whose default extractor
    fetches the Public Suffix List from the web on first use (and writes a cache under
    ``$HOME``). Point that default at the snapshot inside tldextract's wheel instead: no
    network, no files written."""
    try:
        module: Any = importlib.import_module("tldextract.tldextract")
    except ImportError:
        return
    module.TLD_EXTRACTOR = module.TLDExtract(suffix_list_urls=(), cache_dir=None)


def load_analyzer(options: PresidioOptions) -> Analyzer:
    """A Presidio ``AnalyzerEngine`` on the configured spaCy model; ConfigError (with what to
    install) when Presidio or the model is not installed. Never downloads anything."""
    try:
        analyzer_mod = importlib.import_module("presidio_analyzer")
        nlp_mod = importlib.import_module("presidio_analyzer.nlp_engine")
    except ImportError:
        raise ConfigError(
            f"pii.engine is 'presidio' but presidio-analyzer is not installed: {INSTALL_HINT}"
        ) from None
    if not _model_installed(options.model):
        raise ConfigError(
            f"pii.engine is 'presidio' but the spaCy model '{options.model}' is not installed "
            f"(aiwire does not download models): {INSTALL_HINT}, or name an installed model "
            "in pii.presidio.model"
        )
    _offline_tldextract()
    provider = nlp_mod.NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": options.language, "model_name": options.model}],
        }
    )
    engine = provider.create_engine()
    analyzer: Analyzer = analyzer_mod.AnalyzerEngine(
        nlp_engine=engine, supported_languages=[options.language]
    )
    return analyzer


def with_presidio(
    regex: Detector,
    policy: PIIPolicy,
    loader: Callable[[PresidioOptions], Analyzer] = load_analyzer,
) -> Detector:
    """``regex`` combined with Presidio; ``regex`` alone (after a warning) when Presidio cannot
    run and the policy does not require it."""
    options = policy.presidio
    try:
        analyzer = loader(options)
    except ConfigError as exc:
        if options.required:
            raise
        log.warning(
            "PII detection continues with the built-in detectors only (no names or places): %s",
            exc.message,
        )
        return regex
    # Entities: as configured; else the non-built-in kinds the policy lists (``person`` →
    # PERSON); else all Presidio knows. Built-in kinds the policy left out stay out.
    known = set(BUILTIN) | set(GROUPS) | {c.name for c in policy.custom}
    extra = [k.upper() for k in policy.kinds if k not in known]
    entities = options.entities or extra or None
    presidio = PresidioDetector(
        analyzer,
        language=options.language,
        entities=entities,
        score_threshold=options.score_threshold,
        skip=frozenset(BUILTIN) - set(policy.builtin_kinds()),
    )
    return CombinedDetector(regex, presidio)


__all__ = [
    "ENTITY_KINDS",
    "Analyzer",
    "CombinedDetector",
    "PresidioDetector",
    "kind_of",
    "load_analyzer",
    "with_presidio",
]
