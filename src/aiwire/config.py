"""The configuration file: providers, models (deployments) and router settings.

::

    providers:
      openai: {type: openai, api_key: env:OPENAI_API_KEY}
      claude: {type: anthropic, api_key: env:ANTHROPIC_API_KEY}
    models:
      - {name: gpt-4o-mini, provider: openai, model: gpt-4o-mini-2024-07-18}
      - {name: smart, provider: claude, model: claude-sonnet-4-5, fallbacks: [gpt-4o-mini]}
    router: {retries: 2, timeout: 60}

Secrets are references (``env:NAME``, ``file:/path``); a literal key is refused. Validation errors
name the file, line and field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aiwire.cache.config import CacheConfig
from aiwire.catalog import CatalogConfig
from aiwire.errors import ConfigError
from aiwire.guardrails.gateway import GuardrailsConfig
from aiwire.observability.alerts import AlertsConfig
from aiwire.observability.config import LoggingConfig, MetricsConfig, TracingConfig
from aiwire.rollouts.split import Rollout
from aiwire.secrets import Secret, is_reference, resolve

#: The environment variable each provider type reads when config names no key.
STANDARD_KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Strict):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: str
    #: ``env:NAME`` / ``file:/path`` in files; code may also pass a :class:`Secret` directly.
    api_key: str | Secret | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    api_version: str | None = None
    organization: str | None = None
    project: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_key")
    @classmethod
    def _reference_only(cls, value: str | Secret | None) -> str | Secret | None:
        if isinstance(value, str) and not is_reference(value):
            raise ValueError(
                "a literal key in a config file is refused; write env:NAME (and export NAME) "
                "or file:/path/to/key"
            )
        return value

    def key(self, name: str) -> Secret | None:
        """Resolve the key at start-up; a missing one fails naming the variable."""
        if isinstance(self.api_key, Secret):
            return self.api_key
        if self.api_key is not None:
            return resolve(self.api_key, field=f"providers.{name}.api_key")
        if self.base_url is not None:
            # A custom server (vLLM, Ollama, ...) must not receive the official API's key.
            return None
        for var in STANDARD_KEY_VARS.get(self.type, ()):
            if os.environ.get(var):
                return resolve(f"env:{var}", field=f"providers.{name}.api_key")
        wanted = STANDARD_KEY_VARS.get(self.type)
        if wanted:
            raise ConfigError(
                f"providers.{name}: no API key: set {wanted[0]} or give api_key: env:NAME"
            )
        return None

    def adapter_options(self) -> dict[str, Any]:
        opts = dict(self.options)
        for field in ("api_version", "organization", "project"):
            value = getattr(self, field)
            if value is not None:
                opts[field] = value
        return opts


class DeploymentConfig(_Strict):
    """One entry of ``models``: a name clients ask for, served by one provider's model."""

    name: str
    provider: str
    model: str
    weight: float = Field(default=1.0, gt=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    #: Upstream requests in flight at once on this deployment; more wait for a free slot.
    max_concurrency: int | None = Field(default=None, ge=1)
    fallbacks: list[str] = Field(default_factory=list)
    context_window_fallbacks: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)
    first_byte_timeout: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)
    #: Canary rollouts: this deployment's label within its model name (``new``, ``old``) ...
    variant: str | None = Field(default=None, min_length=1)
    #: ... and, on any entry of the name, the split by label in percent (``{new: 10, old:
    #: 90}``, summing to 100; the first label takes the lowest sticky buckets) ...
    rollout: dict[str, float] | None = None
    #: ... and whether a caller keeps its variant: ``key`` (virtual key), ``user`` (the
    #: request's ``user``) or ``none`` (each request draws).
    sticky: Literal["none", "key", "user"] | None = None


class RouterConfig(_Strict):
    retries: int = Field(default=2, ge=0, le=10)
    timeout: float = Field(default=600.0, gt=0, description="total seconds for one attempt")
    connect_timeout: float = Field(default=5.0, gt=0)
    first_byte_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=30.0, gt=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(
        default=60.0, ge=0, description="longer server-requested waits go to the next fallback"
    )
    cooldown_failures: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=30.0, ge=0)
    strategy: Literal["least_inflight", "weighted"] = "least_inflight"
    #: Longest a request waits in a deployment's pacing queue (its rpm/tpm) before the router
    #: moves on to another deployment or fallback, or answers 429.
    max_queue_wait: float = Field(default=30.0, ge=0)


class UIConfig(_Strict):
    """The web console at ``/ui`` (``server.ui``; ``true``/``false`` alone switches it)."""

    enabled: bool = True
    #: Seconds a console session lasts unused, and at most in all.
    session_idle: float = Field(default=3600.0, gt=0)
    session_max: float = Field(default=43200.0, gt=0)
    #: Addresses (or networks) of reverse proxies whose ``x-forwarded-proto`` is believed when
    #: deciding whether the console was reached over HTTPS (its cookie is then ``Secure``).
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class ServerConfig(_Strict):
    """The gateway (``aiwire serve``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    #: ``env:NAME`` / ``file:/path``; default: ``AIWIRE_MASTER_KEY``.
    master_key: str | Secret | None = None
    #: ``sqlite:///path`` (default, embedded) or ``postgresql://...``.
    store: str = "sqlite:///.aiwire/aiwire.db"
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_mb: float = Field(default=20.0, gt=0)
    #: Keep prompts and completions in the request log (off: only metadata and token counts).
    store_content: bool = False
    #: Seconds that in-flight requests and streams get to finish on SIGTERM/SIGINT.
    grace_period: float = Field(default=30.0, ge=0)
    #: Seconds a virtual key stays cached: a revocation takes effect within this bound.
    auth_cache_ttl: float = Field(default=2.0, ge=0, le=5)
    #: ``redis://host:6379/0`` (a password only through ``env:``/``file:``): rate limits,
    #: budgets, pacing and cooldowns shared by every replica. Unset: in this process.
    redis: str | None = None
    #: Browser origins (``https://app.example.com``) allowed to call the model endpoints and
    #: the admin API; ``"*"`` allows any. Empty: no CORS headers at all.
    cors_origins: list[str] = Field(default_factory=list)
    #: The web console (``/ui``): on by default; ``false`` turns it off.
    ui: UIConfig = Field(default_factory=UIConfig)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            plain = f"{parts.scheme}://{parts.netloc}" == origin and "@" not in parts.netloc
            web = parts.scheme in ("http", "https") and bool(parts.hostname)
            if origin != "*" and not (web and plain):
                raise ValueError(
                    f"{origin!r} is not an origin; write scheme://host[:port] with no path or "
                    'trailing slash (e.g. https://app.example.com), or "*"'
                )
        return value

    @field_validator("redis")
    @classmethod
    def _redis_password_by_reference(cls, value: str | None) -> str | None:
        if value is None or is_reference(value):
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("server.redis must be a redis:// or rediss:// URL")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "a Redis URL with a password in a config file is refused; write "
                "env:NAME (and export NAME=redis://:password@host:6379/0) or file:/path"
            )
        return value

    def redis_url(self) -> str | None:
        if self.redis is None or not is_reference(self.redis):
            return self.redis
        return resolve(self.redis, field="server.redis").reveal()

    @field_validator("master_key")
    @classmethod
    def _reference_only(cls, value: str | Secret | None) -> str | Secret | None:
        if isinstance(value, str) and not is_reference(value):
            raise ValueError(
                "a literal master key in a config file is refused; write env:NAME or file:/path"
            )
        return value

    def resolved_master_key(self) -> Secret | None:
        if isinstance(self.master_key, Secret):
            return self.master_key
        if self.master_key is not None:
            return resolve(self.master_key, field="server.master_key")
        if os.environ.get("AIWIRE_MASTER_KEY"):
            return resolve("env:AIWIRE_MASTER_KEY", field="AIWIRE_MASTER_KEY")
        return None


class Config(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: list[DeploymentConfig] = Field(default_factory=list)
    router: RouterConfig = Field(default_factory=RouterConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    #: Overrides and additions to the shipped model catalog (prices, context windows).
    catalog: CatalogConfig = Field(default_factory=lambda: CatalogConfig({}))
    #: The response cache: backend (memory, sql, redis, off), which requests, TTL, scope.
    cache: CacheConfig = Field(default_factory=CacheConfig)
    #: ``/metrics`` (Prometheus): who may read it, how many key names get their own label.
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: OpenTelemetry spans for requests, router attempts and upstream calls (``aiwire[otel]``).
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    #: Log format (json/text) and level; how long stored prompt content is kept.
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    #: PII masking or blocking, and content-policy hooks, before requests leave.
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)

    def model_post_init(self, context: Any) -> None:
        for i, dep in enumerate(self.models):
            if dep.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none"
                raise ConfigError(
                    f"models[{i}] ({dep.name}): provider {dep.provider!r} is not defined "
                    f"under providers (defined: {known})"
                )
        names = {d.name for d in self.models}
        for i, dep in enumerate(self.models):
            for fb in (*dep.fallbacks, *dep.context_window_fallbacks):
                if fb not in names:
                    raise ConfigError(
                        f"models[{i}] ({dep.name}): fallback {fb!r} is not a model name"
                    )
        self.rollouts()  # a rollout that names no deployment, or misses one, fails here
        semantic = self.cache.semantic
        if semantic is not None and semantic.model not in names:
            raise ConfigError(
                f"cache.semantic.model: {semantic.model!r} is not a model name "
                f"(models: {', '.join(sorted(names)) or 'none'}); name an embeddings model, "
                "e.g. one with type: local"
            )

    def rollouts(self) -> dict[str, Rollout]:
        """The canary rollouts by model name (see :mod:`aiwire.rollouts`); ConfigError
        naming the entry when one is inconsistent."""
        from aiwire.rollouts.config import rollouts_of

        return rollouts_of(self.models)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> Config:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source, None)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (providers:, models:)")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, str(path), node)) from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}") from None


def _describe(exc: ValidationError, source: str, node: yaml.Node | None) -> str:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(
            ".[", "["
        )
        line = _line_of(node, loc) if node is not None else None
        where = f"{source}:{line}" if line else source
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {dotted or '(top level)'}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            node = match
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def config_from_env() -> Config:
    """A configuration with every provider whose standard key variable is set, each offering
    a few well-known models under their own names."""
    defaults = {
        "openai": ("OPENAI_API_KEY", ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]),
        "anthropic": ("ANTHROPIC_API_KEY", ["claude-sonnet-4-5", "claude-haiku-4-5"]),
        "gemini": ("GEMINI_API_KEY", ["gemini-2.5-flash", "gemini-2.5-pro"]),
    }
    providers: dict[str, ProviderConfig] = {}
    models: list[DeploymentConfig] = []
    for ptype, (var, names) in defaults.items():
        if os.environ.get(var):
            providers[ptype] = ProviderConfig(type=ptype, api_key=f"env:{var}")
            models += [DeploymentConfig(name=n, provider=ptype, model=n) for n in names]
    return Config(providers=providers, models=models)


#: Model names the built-in simulator serves, with the provider protocol behind each.
SIMULATOR_MODELS: list[tuple[str, str, str]] = [
    ("sim-gpt", "sim-openai", "gpt-4o-mini"),
    ("sim-claude", "sim-anthropic", "claude-sonnet-4-5"),
    ("sim-gemini", "sim-gemini", "gemini-2.5-flash"),
    ("sim-embed", "sim-openai", "text-embedding-3-small"),
    ("sim-gemini-embed", "sim-gemini", "text-embedding-004"),
    ("sim-image", "sim-openai", "gpt-image-2"),
    ("sim-gemini-image", "sim-gemini", "gemini-3-pro-image-preview"),
    ("sim-transcribe", "sim-openai", "gpt-4o-mini-transcribe"),
]


def simulator_config(url: str, **router: Any) -> Config:
    """A configuration that reaches the built-in simulator at ``url`` over all three protocols."""
    key = Secret("sim-key", "simulator")
    providers = {
        "sim-openai": ProviderConfig(type="openai", base_url=f"{url}/v1", api_key=key),
        "sim-anthropic": ProviderConfig(type="anthropic", base_url=url, api_key=key),
        "sim-gemini": ProviderConfig(type="gemini", base_url=url, api_key=key),
    }
    models = [DeploymentConfig(name=n, provider=p, model=m) for n, p, m in SIMULATOR_MODELS]
    return Config(providers=providers, models=models, router=RouterConfig(**router))
