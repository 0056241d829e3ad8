"""Image generation on Gemini: OpenAI's ``images/generations`` as ``generateContent`` with
``responseModalities: [TEXT, IMAGE]`` (the Gemini image models, e.g. ``gemini-2.5-flash-image``).

Gemini answers with the image bytes inline (``inlineData``), one image per call, so ``n``
images are ``n`` calls; it has no URLs (``response_format: url`` is refused), no quality or
style settings (refused by name), and takes the shape as an aspect ratio (``imageConfig``):
an OpenAI ``size`` maps to its exact ratio when Gemini has that ratio, and is refused otherwise.
"""

from __future__ import annotations

from math import gcd
from typing import Any

from aiwire import errors
from aiwire.providers.media import ImageData, ImageRequest, ImageUsage

#: The aspect ratios Gemini image models accept (``imageConfig.aspectRatio``).
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
#: Request fields with no Gemini equivalent that are harmless at their neutral value.
_NEUTRAL = {"quality": ("auto",), "background": ("auto",), "output_format": ("png",)}
_REFUSED_FIELDS = ("quality", "style", "background", "output_format", "user")


def check(request: ImageRequest, provider: str) -> None:
    """Refuse, by name, what Gemini cannot honour (never drop it silently)."""

    def refuse(param: str, why: str) -> errors.BadRequestError:
        return errors.BadRequestError(
            f"gemini provider {provider!r} cannot honour `{param}`: {why}",
            provider=provider,
            model=request.model,
            param=param,
            code="unsupported_parameter",
        )

    if request.response_format == "url":
        raise refuse("response_format", "Gemini returns image bytes only; ask for b64_json")
    for name in _REFUSED_FIELDS:
        value = getattr(request, name)
        if value is not None and value not in _NEUTRAL.get(name, ()):
            raise refuse(name, "Gemini image models have no such setting")
    extra = sorted(request.model_extra or {})
    if extra:
        raise refuse(extra[0], "not a parameter Gemini image models take")
    aspect_ratio(request, provider)


def aspect_ratio(request: ImageRequest, provider: str) -> str | None:
    """``1536x1024`` → ``3:2``; None for no size or ``auto``."""
    size = request.size
    if size is None or size == "auto":
        return None
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) == 0 or int(height) == 0:
        raise errors.BadRequestError(
            f"size {size!r} is not WIDTHxHEIGHT", provider=provider, param="size"
        )
    w, h = int(width), int(height)
    d = gcd(w, h)
    ratio = f"{w // d}:{h // d}"
    if ratio not in ASPECT_RATIOS:
        raise errors.BadRequestError(
            f"gemini provider {provider!r} cannot make a {size} image: its aspect ratio {ratio} "
            f"is not one Gemini offers ({', '.join(sorted(ASPECT_RATIOS))})",
            provider=provider,
            model=request.model,
            param="size",
            code="unsupported_parameter",
        )
    return ratio


def body(request: ImageRequest, provider: str) -> dict[str, Any]:
    """The ``generateContent`` body for one image."""
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    ratio = aspect_ratio(request, provider)
    if ratio is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    return {
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
        "generationConfig": config,
    }


def image_of(data: Any, provider: str, model: str) -> tuple[ImageData, ImageUsage]:
    """The image (and the tokens) in one ``generateContent`` answer. A blocked prompt or a
    refused image is a :class:`~aiwire.errors.ContentFilteredError`."""
    candidates = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(candidates, list) or not candidates:
        feedback = data.get("promptFeedback") if isinstance(data, dict) else None
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if reason:
            raise errors.ContentFilteredError(
                f"{provider} blocked the image prompt (blockReason {reason})",
                provider=provider,
                model=model,
                code=str(reason),
            )
        raise errors.ServerError(
            f"{provider} answered with a body that has no candidates",
            provider=provider,
            model=model,
        )
    first = candidates[0] if isinstance(candidates[0], dict) else {}
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    image: str | None = None
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str) and image is None:
            image = inline["data"]
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    if image is None:
        finish = str(first.get("finishReason") or "")
        raise errors.ContentFilteredError(
            f"{provider} made no image (finishReason {finish or 'none'})",
            provider=provider,
            model=model,
            code=finish or None,
        )
    meta = data.get("usageMetadata")
    meta = meta if isinstance(meta, dict) else {}
    prompt = meta.get("promptTokenCount")
    output = meta.get("candidatesTokenCount")
    usage = ImageUsage(
        input_tokens=prompt if isinstance(prompt, int) else 0,
        output_tokens=output if isinstance(output, int) else 0,
    )
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    return ImageData(b64_json=image, revised_prompt="".join(texts) or None), usage


__all__ = ["ASPECT_RATIOS", "aspect_ratio", "body", "check", "image_of"]
