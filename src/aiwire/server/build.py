"""Assembling a gateway from configuration: router, store, keys, log writer, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from aiwire.config import Config
from aiwire.router import Router
from aiwire.secrets import Secret
from aiwire.server.app import Gateway, GatewaySettings
from aiwire.server.auth import Authenticator
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore
from aiwire.store.writer import LogWriter


@dataclass
class GatewayParts:
    gateway: Gateway
    database: Database
    keys: KeyStore
    writer: LogWriter


def build_gateway(
    config: Config,
    *,
    store_url: str,
    master_key: Secret | None,
    settings: GatewaySettings | None = None,
    auth_ttl: float = 2.0,
) -> GatewayParts:
    settings = settings or GatewaySettings()
    database = Database(store_url)
    keys = KeyStore(database)
    writer = LogWriter(database, store_content=settings.store_content)
    auth = Authenticator(master_key=master_key, lookup=keys.find_by_secret, ttl=auth_ttl)
    gateway = Gateway(
        Router.from_config(config),
        auth,
        database=database,
        writer=writer,
        keys=keys,
        settings=settings,
    )
    return GatewayParts(gateway, database, keys, writer)
