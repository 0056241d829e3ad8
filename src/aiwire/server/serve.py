"""``aiwire serve``: configuration → a running gateway under uvicorn.

With no config file the gateway starts on the embedded default: a SQLite store under
``./.aiwire/``, the built-in simulator's models (the simulator runs in-process), and every
provider whose key is set in the environment. Several workers share one configuration through
environment variables, since uvicorn starts them from an import string.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import uvicorn

from aiwire.config import Config, config_from_env, simulator_config
from aiwire.errors import ConfigError
from aiwire.secrets import Secret
from aiwire.server.app import Gateway, GatewaySettings
from aiwire.server.build import build_gateway

log = logging.getLogger("aiwire.server")

ENV_CONFIG = "AIWIRE_CONFIG"
ENV_SIMULATOR = "AIWIRE_SIMULATOR_URL"
STATE_DIR = Path(".aiwire")


def load(config_path: str | None, simulator_url: str | None) -> Config:
    """The configuration a gateway process serves."""
    if config_path:
        return Config.from_file(config_path)
    base = simulator_config(simulator_url) if simulator_url else Config()
    extra = config_from_env()
    base.providers.update(extra.providers)
    base.models += extra.models
    return Config.model_validate(base.model_dump())


def master_key(config: Config) -> Secret:
    """The configured master key; with none, one is generated once into .aiwire/master.key
    (mode 0600) and its location, never its value, is printed."""
    key = config.server.resolved_master_key()
    if key is not None:
        return key
    path = STATE_DIR / "master.key"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("sk-aiwire-" + secrets.token_urlsafe(32) + "\n")
        log.warning(
            "no AIWIRE_MASTER_KEY set: generated a master key in %s (read it with `cat %s`)",
            path,
            path,
        )
    return Secret(path.read_text().strip(), f"file:{path}")


def gateway_from_env() -> Gateway:
    """The app factory uvicorn's workers call (``aiwire.server.serve:gateway_from_env``)."""
    config = load(os.environ.get(ENV_CONFIG), os.environ.get(ENV_SIMULATOR))
    settings = GatewaySettings(
        max_body_bytes=int(config.server.max_body_mb * 1024 * 1024),
        store_content=config.server.store_content,
        freeze_gc=True,
    )
    parts = build_gateway(
        config,
        store_url=config.server.store,
        master_key=master_key(config),
        settings=settings,
        auth_ttl=config.server.auth_cache_ttl,
    )
    return parts.gateway


def run(
    *,
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int,
    simulator_url: str | None,
) -> None:
    """Serve until SIGTERM/SIGINT; then stop accepting, let in-flight work finish within the
    grace period, and flush the request log."""
    if config_path:
        os.environ[ENV_CONFIG] = str(Path(config_path).resolve())
    if simulator_url:
        os.environ[ENV_SIMULATOR] = simulator_url
    config = load(config_path, simulator_url)  # validate before forking workers
    if not config.models:
        raise ConfigError("no models configured: give --config or export a provider key")
    master_key(config)
    server = config.server
    uvicorn.run(
        "aiwire.server.serve:gateway_from_env",
        factory=True,
        lifespan="on",
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        host=host or server.host,
        port=port if port is not None else server.port,
        workers=workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(server.grace_period),
    )
