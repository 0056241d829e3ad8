"""Hugging Face: Inference Providers (``https://router.huggingface.co/v1``), Inference
Endpoints and self-hosted Text Generation Inference (TGI).

With ``options.api: openai`` (the default) requests go to the OpenAI-compatible
``/chat/completions`` (:class:`HuggingFaceProvider`, an :class:`OpenAIProvider`); with
``options.api: native`` to TGI's own ``/generate`` and ``/generate_stream``
(:class:`~aiwire.providers.tgi.TGIProvider`). Both speak TGI's error shape,
``{"error": "...", "error_type": "..."}``, besides OpenAI's, and the serverless API's
``{"error": "Model … is currently loading", "estimated_time": 20.0}``.

The token is ``api_key`` or ``HF_TOKEN`` (``HUGGING_FACE_HUB_TOKEN`` as the hub library's
older name), sent only to Hugging Face's own hosts: a self-hosted TGI at another ``base_url``
gets a key only when config names one.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from aiwire import errors
from aiwire.providers.base import FEATURES, Capabilities, Support
from aiwire.providers.openai import OpenAIProvider
from aiwire.providers.transport import Headers
from aiwire.secrets import Secret

TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
APIS = ("openai", "native")

HF_CAPABILITIES = Capabilities(
    features={name: Support.SUPPORTED for name in FEATURES},
    notes={
        "chat": "`options.api: openai` (default): the OpenAI-compatible `/chat/completions` of "
        "Inference Providers, Inference Endpoints or TGI; parameters go through unchanged and "
        "the model served decides what it honours. `options.api: native`: TGI's `/generate` "
        "and `/generate_stream`, the messages rendered with `options.chat_template` (`raw`: "
        "one user message as is; `chatml`; `llama3`); there only streaming, usage, system "
        "prompts (with a template), temperature, top_p, stop (4 at most), seed, "
        "frequency_penalty and json_object/json_schema (TGI grammars) are supported, and "
        "anything else is refused by name.",
        "embeddings": "`/embeddings` of an OpenAI-compatible server such as Text Embeddings "
        "Inference (set `base_url` to it); the Inference Providers router has no such route "
        "and answers NotFoundError.",
    },
)

# TGI's error_type → class (and the status it implies inside a 200 stream).
_TGI_ERRORS: dict[str, tuple[type[errors.ProviderError], int]] = {
    "validation": (errors.BadRequestError, 422),
    "overloaded": (errors.OverloadedError, 429),
    "generation": (errors.ServerError, 500),
    "incomplete_generation": (errors.ServerError, 500),
    "authentication": (errors.AuthenticationError, 401),
}
# TGI rejects an over-long prompt as a validation error; only its wording tells it apart.
_CONTEXT = re.compile(
    r"`inputs` tokens \+ `max_new_tokens` must be|inputs` must have less than"
    r"|maximum context length|context length",
    re.IGNORECASE,
)


class HuggingFaceProvider(OpenAIProvider):
    """Hugging Face's OpenAI-compatible routes; ``options.api: native`` builds a
    :class:`~aiwire.providers.tgi.TGIProvider` instead (same ``type:``, other protocol)."""

    type = "huggingface"
    default_base_url = "https://router.huggingface.co/v1"
    capabilities = HF_CAPABILITIES

    def __new__(cls, *args: Any, **kwargs: Any) -> HuggingFaceProvider:
        options = kwargs.get("options") or {}
        target: type[HuggingFaceProvider] = cls
        if cls is HuggingFaceProvider and options.get("api") == "native":
            from aiwire.providers.tgi import TGIProvider

            target = TGIProvider
        instance: HuggingFaceProvider = object.__new__(target)
        return instance

    def __init__(
        self, *, api_key: Secret | None = None, base_url: str | None = None, **kwargs: Any
    ) -> None:
        options = kwargs.get("options") or {}
        name = kwargs.get("name") or self.type
        api = options.get("api", "openai")
        if api not in APIS:
            raise errors.ConfigError(
                f"providers.{name}.options.api must be one of {', '.join(APIS)}, got {api!r}"
            )
        if api_key is None and (base_url is None or _hf_hosted(base_url)):
            api_key = _token_from_env()
        super().__init__(api_key=api_key, base_url=base_url, **kwargs)
        if self.api_key is None and base_url is None:
            raise errors.ConfigError(
                f"providers.{self.name}: no Hugging Face token: set HF_TOKEN or give "
                "api_key: env:NAME"
            )

    def _error_from_body(
        self, body: dict[str, Any], status: int, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        err = body.get("error")
        if not isinstance(err, str):
            return super()._error_from_body(body, status, headers, model)
        etype = body.get("error_type")
        cls, implied = _TGI_ERRORS.get(str(etype), (None, 500))
        if status < 400:  # an error event inside a 200 stream
            status = implied
        cls = cls or errors.error_for_status(status)
        retry_after = self.retry_after(status, headers)
        wait = body.get("estimated_time")
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            cls = errors.OverloadedError  # the model is loading: capacity, coming back
            retry_after = float(wait) if retry_after is None else retry_after
        if cls is errors.BadRequestError and _CONTEXT.search(err):
            cls = errors.ContextWindowExceededError
        retryable: bool | None = None
        if status == 402:  # out of prepaid credits: paying, not waiting, fixes it
            cls, retryable = errors.PermissionDeniedError, False
        return cls(
            errors.scrub(err, self._secrets()),
            status=status,
            provider=self.name,
            model=model,
            retryable=retryable,
            retry_after=retry_after,
            code=str(etype) if etype else None,
            body=body,
        )


def _hf_hosted(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    # Spaces (*.hf.space) run their owners' code: they get a token only when config names one.
    return host in ("huggingface.co", "hf.co") or host.endswith(
        (".huggingface.co", ".huggingface.cloud", ".hf.co")
    )


def _token_from_env() -> Secret | None:
    for var in TOKEN_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return Secret(value, f"env:{var}")
    return None
