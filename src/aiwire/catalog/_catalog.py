"""Loading the shipped catalog, applying config overrides, and answering price questions."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from aiwire import errors
from aiwire.catalog._model import CatalogConfig, ModelInfo, ModelOverride
from aiwire.providers.media import ImageUsage, TranscriptionUsage
from aiwire.types import EmbeddingUsage, Usage

#: What may follow a known id in a dated or versioned variant: ``-2024-07-18``, ``-20250929``,
#: ``@20241022``, ``-001``, ``-preview-05-20``, ``-latest``, ``-v1:0``. Anything else
#: (``gpt-4o-mini-tts``, ``gpt-4o-search-preview``) is another product and is not matched.
_VERSION_SUFFIX = re.compile(r"(?:[-@](?:\d{2,8}|v\d+(?::\d+)?|latest|preview|exp))+")
#: Figures a ``same_as`` entry does not inherit: they describe the original, not the copy.
_NOT_INHERITED = ("aliases", "deprecation_date", "replacement", "note")
_REQUIRED_NEW = ("provider", "input_per_1m", "context_window")


class UnknownModelError(errors.ConfigError, LookupError):
    """The catalog has no entry for a model whose price is needed."""


class Catalog:
    """Models by id and alias; see :func:`load`."""

    def __init__(self, models: Mapping[str, ModelInfo], *, as_of: str = "", source: str = ""):
        self.as_of = as_of
        self.source = source
        self._models = {k.lower(): v for k, v in models.items()}
        self._aliases = {
            alias.lower(): key
            for key, info in self._models.items()
            for alias in info.aliases
            if alias.lower() not in self._models
        }
        self._prefixes = sorted([*self._models, *self._aliases], key=len, reverse=True)
        self._cache: dict[str, ModelInfo | None] = {}

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    def lookup(self, model: str) -> ModelInfo | None:
        """The entry for ``model``: its exact id, then an alias, then the longest known id or
        alias that it extends with a date or version (``claude-sonnet-4-5-20250929``).
        Path prefixes (``openai/``, ``models/``) are ignored. ``None`` when unknown."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._find(model.strip().lower().rsplit("/", 1)[-1])
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def _find(self, name: str) -> ModelInfo | None:
        key = name if name in self._models else self._aliases.get(name)
        if key is not None:
            return self._models[key]
        for prefix in self._prefixes:
            if name.startswith(prefix) and _VERSION_SUFFIX.fullmatch(name, len(prefix)):
                return self._models[self._aliases.get(prefix, prefix)]
        return None

    def require(self, model: str) -> ModelInfo:
        """Like :meth:`lookup`, raising :class:`UnknownModelError` when unknown."""
        info = self.lookup(model)
        if info is None:
            raise UnknownModelError(
                f"model {model!r} is not in the catalog, so its cost is unknown; add it under "
                f"catalog: in the config ({model}: {{provider: ..., input_per_1m: ..., "
                "output_per_1m: ..., context_window: ...}})",
                model=model,
            )
        return info

    def cost(self, model: str, usage: Usage | EmbeddingUsage) -> float:
        """USD for a finished request: cached input tokens at the cached price, the rest of
        ``prompt_tokens`` at the input price, completion tokens at the output price (embedding
        models: input only)."""
        if isinstance(usage, Usage):
            return self.require(model).price(
                usage.prompt_tokens, usage.completion_tokens, usage.cached_input_tokens
            )
        return self.require(model).price(usage.prompt_tokens, 0)

    def image_cost(
        self,
        model: str,
        *,
        images: int,
        size: str | None = None,
        quality: str | None = None,
        usage: ImageUsage | None = None,
    ) -> float | None:
        """USD for generated images: per image where the model is priced so (plus its prompt
        tokens, when reported), else the reported token usage; None when neither is known."""
        info = self.require(model)
        each = info.image_price(size, quality)
        if each is not None:
            prompt = usage.input_tokens if usage is not None else 0
            return images * each + info.price(prompt, 0)
        if usage is not None:
            return info.price(usage.input_tokens, usage.output_tokens)
        return None

    def image_max_cost(
        self,
        model: str,
        *,
        images: int,
        prompt_tokens: int,
        size: str | None = None,
        quality: str | None = None,
    ) -> float:
        """The most an image request can cost (what a budget reserves): the dearest matching
        per-image price, or for token-priced models ``max_output_tokens`` per image."""
        info = self.require(model)
        each = info.image_price(size, quality, dearest=True)
        if each is not None:
            return images * each + info.price(prompt_tokens, 0)
        return info.price(prompt_tokens, images * info.max_output_tokens)

    def transcription_cost(
        self, model: str, *, seconds: float | None, usage: TranscriptionUsage | None = None
    ) -> float | None:
        """USD for one transcription: a reported token usage at the token prices, else the
        duration at ``per_minute``; None when neither is known."""
        info = self.require(model)
        if usage is not None and (info.input_per_1m or info.output_per_1m):
            return info.price(usage.input_tokens, usage.output_tokens)
        if seconds is not None and info.per_minute is not None:
            return info.per_minute * seconds / 60
        return None

    def transcription_max_cost(self, model: str, *, seconds: float | None) -> float:
        """The most a transcription can cost: its duration at ``per_minute`` when both are
        known, else a whole context window in and the maximum output out."""
        info = self.require(model)
        if seconds is not None and info.per_minute is not None:
            by_time = info.per_minute * seconds / 60
            if not (info.input_per_1m or info.output_per_1m):
                return by_time
            # Token-billed models answer with tokens; reserve whichever is larger.
            return max(by_time, info.price(info.context_window, info.max_output_tokens))
        return info.price(info.context_window, info.max_output_tokens)

    def max_cost(self, model: str, input_tokens: int, max_output: int | None = None) -> float:
        """The most a request can cost: every input token uncached, and the full output
        allowance (the caller's cap, or the model's maximum when none or a larger one is given).
        What a budget reserves before the request is sent."""
        info = self.require(model)
        limit = info.max_output_tokens
        output = limit if max_output is None else min(max_output, limit)
        return info.price(input_tokens, output)

    def context_check(self, model: str, input_tokens: int, max_output: int | None = None) -> None:
        """Raise :class:`~aiwire.errors.ContextWindowExceededError` (code
        ``context_window_exceeded``) when the prompt plus the requested output cannot fit the
        model's context window, before any money is spent. Unknown models are not checked."""
        info = self.lookup(model)
        if info is None:
            return
        window = info.context_window
        output = max_output or 0
        if input_tokens + output <= window:
            return
        if input_tokens >= window:
            advice = "shorten the messages or choose a model with a larger context window"
        else:
            advice = (
                f"lower max_tokens to at most {window - input_tokens:,}, shorten the messages, "
                "or choose a model with a larger context window"
            )
        asked = f" + max output {output:,}" if output else ""
        raise errors.ContextWindowExceededError(
            f"the request needs {input_tokens + output:,} tokens (prompt {input_tokens:,}"
            f"{asked}) but {info.id}'s context window is {window:,}: {advice}",
            model=model,
            code="context_window_exceeded",
            param="messages",
        )


def load(
    overrides: CatalogConfig | Mapping[str, ModelOverride | Mapping[str, Any]] | None = None,
) -> Catalog:
    """The shipped catalog with ``overrides`` (the config's ``catalog:`` section) applied.

    Raises :class:`~aiwire.errors.ConfigError` naming the entry when an override is invalid.
    """
    as_of, source, base = _shipped()
    models = dict(base)
    if overrides is None:
        return Catalog(models, as_of=as_of, source=source)
    items = overrides.root if isinstance(overrides, CatalogConfig) else overrides
    shipped = Catalog(base)
    for model_id, raw in items.items():
        try:
            override = raw if isinstance(raw, ModelOverride) else ModelOverride.model_validate(raw)
        except ValidationError as exc:
            raise errors.ConfigError(f"catalog.{model_id}: {_first_error(exc)}") from None
        key = model_id.lower()
        existing = models.get(key) or shipped.lookup(model_id)
        fields = override.given()
        if existing is None:
            missing = [f for f in _REQUIRED_NEW if fields.get(f) is None]
            if fields.get("mode") in (None, "chat") and fields.get("output_per_1m") is None:
                missing.append("output_per_1m")
            if missing:
                raise errors.ConfigError(
                    f"catalog.{model_id}: {model_id!r} is not a known model, so it needs "
                    f"{', '.join(missing)}"
                )
            fields.setdefault("max_output_tokens", fields["context_window"])
            merged: dict[str, Any] = fields
        elif key in models:
            merged = {**existing.model_dump(), **fields}
        else:  # an alias or dated variant of a known model gets its own entry
            merged = {**_inheritable(existing), **fields}
        models[key] = _validated(model_id, {**merged, "id": model_id})
    return Catalog(models, as_of=as_of, source=source)


def _inheritable(info: ModelInfo) -> dict[str, Any]:
    data = info.model_dump()
    for name in _NOT_INHERITED:
        data.pop(name, None)
    return data


def _validated(model_id: str, data: Mapping[str, Any]) -> ModelInfo:
    try:
        return ModelInfo.model_validate(data)
    except ValidationError as exc:
        raise errors.ConfigError(f"catalog.{model_id}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


@cache
def _shipped() -> tuple[str, str, dict[str, ModelInfo]]:
    """The shipped data file, parsed once per process."""
    text = resources.files("aiwire.catalog").joinpath("models.yaml").read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)
    models: dict[str, ModelInfo] = {}
    for model_id, entry in data["models"].items():
        entry = dict(entry)
        if "same_as" in entry:
            entry = {**_inheritable(models[entry.pop("same_as").lower()]), **entry}
        models[model_id.lower()] = _validated(model_id, {**entry, "id": model_id})
    as_of = data.get("as_of")
    as_of = as_of.isoformat() if isinstance(as_of, dt.date) else str(as_of or "")
    return as_of, " ".join(str(data.get("source", "")).split()), models
