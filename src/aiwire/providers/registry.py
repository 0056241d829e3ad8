"""Maps a provider ``type:`` in config to its adapter class.

Adapters are imported lazily so a missing optional dependency of one protocol never breaks the
others. Third-party adapters register with :func:`register`.
"""

from __future__ import annotations

import importlib

from aiwire.errors import ConfigError
from aiwire.providers.base import Provider

_BUILTIN: dict[str, str] = {
    "local": "aiwire.providers.local:LocalEmbeddingProvider",
    "openai": "aiwire.providers.openai:OpenAIProvider",
    "azure": "aiwire.providers.openai:AzureOpenAIProvider",
    "anthropic": "aiwire.providers.anthropic:AnthropicProvider",
    "gemini": "aiwire.providers.gemini:GeminiProvider",
    "vertex": "aiwire.providers.vertex:VertexProvider",
    "bedrock": "aiwire.providers.bedrock:BedrockProvider",
    "huggingface": "aiwire.providers.huggingface:HuggingFaceProvider",
}
_registered: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Make ``cls`` available as ``type: <cls.type>`` in config. Usable as a decorator."""
    _registered[cls.type] = cls
    return cls


def provider_types() -> list[str]:
    return sorted({*_BUILTIN, *_registered})


def provider_class(type_name: str) -> type[Provider]:
    if type_name in _registered:
        return _registered[type_name]
    target = _BUILTIN.get(type_name)
    if target is None:
        known = ", ".join(provider_types())
        raise ConfigError(f"unknown provider type {type_name!r}; known types: {known}")
    module_name, _, attr = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), attr)
    return cls
