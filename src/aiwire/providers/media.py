"""Canonical types for image generation and speech to text, in OpenAI's shape.

Like :mod:`aiwire.types` for chat, these are what the router, the SDK and the gateway pass
around; adapters translate them to their protocol. Fields only aiwire knows (which deployment
answered, rate-limit state) are excluded from serialisation.

An image request keeps unknown fields (``model_extra``): OpenAI-compatible servers get them
unchanged, other protocols refuse them by name. A transcription keeps the upstream's answer as
it came (:attr:`TranscriptionResponse.raw`), because its format is the client's choice (JSON,
plain text, SRT, VTT) and a gateway hands it on unchanged.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aiwire.ratelimit import RateLimitInfo

#: What ``response_format`` a transcription may ask for; the last three are plain text.
TranscriptFormat = Literal["json", "verbose_json", "diarized_json", "text", "srt", "vtt"]
TEXT_FORMATS: frozenset[str] = frozenset({"text", "srt", "vtt"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --- images -----------------------------------------------------------------------------------


class ImageRequest(BaseModel):
    """``POST /v1/images/generations``: a prompt and how many images of which size."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str = Field(min_length=1)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    style: str | None = None
    output_format: str | None = None
    background: str | None = None
    user: str | None = None

    @property
    def count(self) -> int:
        return self.n or 1


class ImageData(_Model):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImageUsage(_Model):
    """Token usage of token-billed image models (GPT Image); others report none."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class ImageResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    created: int = Field(default_factory=lambda: int(time.time()))
    data: list[ImageData]
    usage: ImageUsage | None = None

    # Known to aiwire only; never serialised to clients.
    provider: str | None = Field(default=None, exclude=True)
    deployment: str | None = Field(default=None, exclude=True)
    ratelimit: RateLimitInfo | None = Field(default=None, exclude=True)


# --- speech to text ---------------------------------------------------------------------------


class TranscriptionRequest(BaseModel):
    """``POST /v1/audio/transcriptions``: an audio file and how to transcribe it.

    ``fields`` holds form fields aiwire has no name for (``chunking_strategy``, a server's own
    options); OpenAI-compatible servers get them unchanged.
    """

    model: str
    file: bytes = Field(repr=False)
    filename: str = "audio"
    content_type: str = "application/octet-stream"
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    timestamp_granularities: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    fields: list[tuple[str, str]] = Field(default_factory=list)

    @property
    def format(self) -> str:
        return self.response_format or "json"


class TranscriptionUsage(_Model):
    """Token usage of token-billed transcription models (``usage.type: tokens``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class TranscriptionResponse(BaseModel):
    """A transcript: its text, the audio's length when known (from the answer's
    ``usage.seconds`` / ``duration``, else the file's header) and the answer as sent."""

    text: str
    #: Seconds of audio, when the answer or the file's header says (what per-minute prices use).
    duration: float | None = None
    usage: TranscriptionUsage | None = None
    #: The upstream's body and media type, handed on unchanged by the gateway.
    raw: bytes = Field(default=b"", repr=False)
    media_type: str = "application/json"

    provider: str | None = Field(default=None, exclude=True)
    deployment: str | None = Field(default=None, exclude=True)
    ratelimit: RateLimitInfo | None = Field(default=None, exclude=True)


__all__ = [
    "TEXT_FORMATS",
    "ImageData",
    "ImageRequest",
    "ImageResponse",
    "ImageUsage",
    "TranscriptFormat",
    "TranscriptionRequest",
    "TranscriptionResponse",
    "TranscriptionUsage",
]
