"""The catalog's value types: one model's prices and limits, and a config override of them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

Modality = Literal["text", "image", "audio", "video", "embeddings"]
#: ``image``: image generation; ``transcription``: speech to text (see :class:`ModelInfo`).
Mode = Literal["chat", "embedding", "image", "transcription"]

_PER_TOKEN = 1_000_000


class LongContextPrice(BaseModel):
    """Prices that apply to a whole request once its prompt exceeds ``threshold`` tokens
    (Gemini 2.5 Pro above 200k, GPT-5.4 above 272k)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: int = Field(gt=0)
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)
    cached_input_per_1m: float | None = Field(default=None, ge=0)


class ModelInfo(BaseModel):
    """One model's prices (USD per 1M tokens), limits, modalities and deprecation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    provider: str
    mode: Mode = "chat"
    input_per_1m: float = Field(ge=0)
    #: Input tokens read from the provider's prompt cache; ``None``: billed as ordinary input.
    cached_input_per_1m: float | None = Field(default=None, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)
    long_context: LongContextPrice | None = None
    #: Input plus output tokens one request may use.
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(ge=0)
    modalities: tuple[Modality, ...] = ("text",)
    #: The provider's announced shutdown date (deprecated from the announcement on).
    deprecation_date: dt.date | None = None
    replacement: str | None = None
    aliases: tuple[str, ...] = ()
    note: str | None = None
    #: Image models priced per image: USD for one image (any size and quality) ...
    per_image: float | None = Field(default=None, ge=0)
    #: ... or by ``quality/size`` (``high/1024x1024``), ``size`` or ``quality``, most specific
    #: first; ``per_image`` covers the rest. Token-priced image models (GPT Image) have neither:
    #: their answer's usage is priced at ``input_per_1m`` / ``output_per_1m``.
    per_image_by: dict[str, float] = Field(default_factory=dict)
    #: Speech-to-text models priced per minute of audio (billed on the duration); a token
    #: usage in the answer, where the model reports one, is priced by the token prices instead.
    per_minute: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _output_fits(self) -> ModelInfo:
        if self.max_output_tokens > self.context_window:
            raise ValueError(
                f"max_output_tokens {self.max_output_tokens} is more than its context window "
                f"{self.context_window}"
            )
        return self

    @property
    def deprecated(self) -> bool:
        """The provider has announced this model's shutdown (or it is already past)."""
        return self.deprecation_date is not None

    def retired(self, today: dt.date | None = None) -> bool:
        """Past its shutdown date: the provider no longer serves it."""
        today = today or dt.date.today()
        return self.deprecation_date is not None and self.deprecation_date < today

    def image_price(
        self, size: str | None = None, quality: str | None = None, *, dearest: bool = False
    ) -> float | None:
        """USD for one image of ``size`` and ``quality``; None when priced by tokens. With
        ``dearest``, an unlisted size or quality costs the most any does (for reservations)."""
        table = self.per_image_by
        for key in (f"{quality}/{size}", size, quality):
            if key is not None and key in table:
                return table[key]
        if dearest and table:
            return max([*table.values(), self.per_image or 0.0])
        return self.per_image

    def price(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """USD for one request. ``input_tokens`` includes the cached ones (OpenAI's convention);
        cached tokens are billed at the cached price, the rest at the input price. Embedding
        models bill input only."""
        cached = max(0, min(cached_input_tokens, input_tokens))
        tier = self.long_context
        if tier is not None and input_tokens > tier.threshold:
            rates = (tier.input_per_1m, tier.cached_input_per_1m, tier.output_per_1m)
        else:
            rates = (self.input_per_1m, self.cached_input_per_1m, self.output_per_1m)
        input_rate, cached_rate, output_rate = rates
        if cached_rate is None:
            cached_rate = input_rate
        output = 0 if self.mode == "embedding" else max(0, output_tokens)
        micro = (input_tokens - cached) * input_rate + cached * cached_rate + output * output_rate
        return micro / _PER_TOKEN


class ModelOverride(BaseModel):
    """A partial catalog entry from the config's ``catalog:`` section.

    For a model the catalog knows, only the given fields change. For an alias or dated variant of
    a known model (``gpt-4o-2024-08-06``) a separate entry is made from that model's figures. For
    a new model, ``provider``, ``input_per_1m``, ``context_window`` and (chat models)
    ``output_per_1m`` are required.
    """

    model_config = ConfigDict(extra="forbid")

    provider: str | None = None
    mode: Mode | None = None
    input_per_1m: float | None = Field(default=None, ge=0)
    cached_input_per_1m: float | None = Field(default=None, ge=0)
    output_per_1m: float | None = Field(default=None, ge=0)
    long_context: LongContextPrice | None = None
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    modalities: tuple[Modality, ...] | None = None
    deprecation_date: dt.date | None = None
    replacement: str | None = None
    aliases: tuple[str, ...] | None = None
    note: str | None = None
    per_image: float | None = Field(default=None, ge=0)
    per_image_by: dict[str, float] | None = None
    per_minute: float | None = Field(default=None, ge=0)

    def given(self) -> dict[str, object]:
        """The fields the config actually set (an explicit ``null`` clears a field)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class CatalogConfig(RootModel[dict[str, ModelOverride]]):
    """The config file's ``catalog:`` section: model id → partial entry that overrides or adds::

    catalog:
      gpt-4o: {input_per_1m: 2.0}                     # a negotiated price
      my-finetune: {provider: openai, input_per_1m: 0.3, output_per_1m: 1.2,
                    context_window: 128000, max_output_tokens: 16384}
    """

    root: dict[str, ModelOverride] = Field(default_factory=dict)
