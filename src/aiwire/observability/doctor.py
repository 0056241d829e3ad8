"""``aiwire doctor``: what is wrong with this installation, one line per finding, each with its
fix.

Checks, in order: the configuration parses and validates; every provider's key resolves and
the provider accepts it (the cheapest authenticated call each protocol has: listing models);
no configured model is deprecated or retired (the catalog); the store answers and its schema
is current; Redis answers (when configured); no virtual key expires within the warning window;
per-key content logging is not silently off. Nothing is changed anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from aiwire import catalog as catalog_
from aiwire.config import Config
from aiwire.errors import AIWireError, ConfigError
from aiwire.providers.base import Provider
from aiwire.providers.registry import provider_class
from aiwire.providers.transport import HttpTimeout, TransportError
from aiwire.store.db import Database, StoreError, head_revision
from aiwire.store.keys import KeyStore

Level = Literal["ok", "info", "warn", "error"]
#: Provider types whose credential is checked, and the models-list call that checks it.
_MODELS_PATH: dict[str, str] = {
    "openai": "/models",
    "huggingface": "/models",
    "azure": "/openai/models",
    "anthropic": "/v1/models",
    "gemini": "/v1beta/models",
}


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str
    message: str
    fix: str | None = None

    @property
    def problem(self) -> bool:
        return self.level in ("warn", "error")

    def line(self) -> str:
        """One line, whatever the message's own line breaks (a config error lists fields)."""
        parts = [part.strip() for part in self.message.splitlines() if part.strip()]
        first, *rest = parts or [""]
        message = f"{first} {'; '.join(rest)}" if rest else first
        fix = f" | fix: {self.fix}" if self.fix else ""
        return f"{self.level.upper():5} {self.subject}: {message}{fix}"

    def public(self) -> dict[str, str | None]:
        return {
            "level": self.level,
            "subject": self.subject,
            "message": self.message,
            "fix": self.fix,
        }


class Doctor:
    def __init__(
        self,
        config: Config,
        *,
        expiring_days: int = 14,
        timeout: float = 10.0,
        now: datetime | None = None,
    ) -> None:
        self.config = config
        self.expiring_days = expiring_days
        self.timeout = timeout
        self.now = now or datetime.now(UTC)
        self.findings: list[Finding] = []

    def add(self, level: Level, subject: str, message: str, fix: str | None = None) -> None:
        self.findings.append(Finding(level, subject, message, fix))

    async def run(self) -> list[Finding]:
        await self.providers()
        self.models()
        database = await self.store()
        if database is not None:
            try:
                await self.keys(database)
            finally:
                await database.aclose()
        await self.redis()
        self.alerting()
        return self.findings

    # -- providers --------------------------------------------------------------------------

    async def providers(self) -> None:
        config = self.config
        if not config.providers:
            self.add(
                "warn",
                "providers",
                "none configured: the gateway has nothing to route to",
                "add a providers: section, or export OPENAI_API_KEY / ANTHROPIC_API_KEY / "
                "GEMINI_API_KEY",
            )
        checks = [self._provider(name) for name in config.providers]
        for finding in await asyncio.gather(*checks):
            self.findings.append(finding)

    async def _provider(self, name: str) -> Finding:
        pconf = self.config.providers[name]
        subject = f"provider {name} ({pconf.type})"
        users = [d.name for d in self.config.models if d.provider == name]
        serving = f" (serves {', '.join(sorted(set(users)))})" if users else ""
        try:
            key = pconf.key(name)
            adapter = provider_class(pconf.type)
        except ConfigError as exc:
            return Finding("error", subject, exc.message, _key_fix(name, pconf.api_key))
        if pconf.type not in _MODELS_PATH:
            return Finding(
                "info",
                subject,
                f"credential not checked for type {pconf.type}{serving}: the first request "
                "will tell (a 401/403 also fires a provider_credential alert)",
            )
        try:
            provider = adapter(
                name=name,
                api_key=key,
                base_url=pconf.base_url,
                headers=pconf.headers,
                options=pconf.adapter_options(),
            )
        except AIWireError as exc:
            return Finding("error", subject, exc.message, f"fix providers.{name} in the config")
        try:
            return await self._credential(provider, subject, serving)
        finally:
            await provider.aclose()

    async def _credential(self, provider: Provider, subject: str, serving: str) -> Finding:
        path = _MODELS_PATH[provider.type]
        if not provider.base_url:
            return Finding(
                "error",
                subject,
                f"no base_url{serving}",
                f"give providers.{provider.name}.base_url (the provider SDK's base URL)",
            )
        params = None
        if provider.type == "azure":
            params = {"api-version": str(provider.options.get("api_version", "2024-10-21"))}
        url = provider.base_url + path
        host = urlsplit(url).netloc.rpartition("@")[2]
        timeout = HttpTimeout(connect=self.timeout, read=self.timeout)
        try:
            async with asyncio.timeout(self.timeout * 2):
                # The adapter's own headers: exactly the credentials requests will carry.
                headers = provider._request_headers()
                resp = await provider.http.request(
                    "GET", url, headers=headers, timeout=timeout, params=params
                )
        except (TransportError, TimeoutError) as exc:
            kind = exc.kind if isinstance(exc, TransportError) else "timeout"
            return Finding(
                "error",
                subject,
                f"cannot reach {host} ({kind}){serving}",
                f"check providers.{provider.name}.base_url and the network path to {host}",
            )
        status = resp.status
        if status < 300:
            return Finding("ok", subject, f"credential accepted by {host}{serving}")
        if status in (401, 403):
            source = provider.api_key.source if provider.api_key is not None else None
            where = f" (from {source})" if source else " (none configured)"
            return Finding(
                "error",
                subject,
                f"{host} rejected the credential{where} with HTTP {status}: expired, revoked, "
                f"rotated or wrong{serving}",
                f"put a valid key in providers.{provider.name}.api_key and restart the gateway",
            )
        if status == 429:
            return Finding(
                "warn",
                subject,
                f"{host} answered 429 (rate limited) to a models list; the credential is "
                f"probably valid{serving}",
                "check the account's limits and usage with the provider",
            )
        return Finding(
            "warn",
            subject,
            f"could not check the credential: {host} answered HTTP {status} to GET {path}{serving}",
            f"check providers.{provider.name}.base_url (the provider SDK's base URL)",
        )

    # -- models -----------------------------------------------------------------------------

    def models(self) -> None:
        try:
            cat = catalog_.load(self.config.catalog)
        except ConfigError as exc:
            self.add("error", "catalog", exc.message, "fix the catalog: section of the config")
            return
        today = self.now.date()
        for i, dep in enumerate(self.config.models):
            info = cat.lookup(dep.model)
            if info is None or not info.deprecated:
                continue
            retired = info.retired(today)
            when = (
                f"retired on {info.deprecation_date}"
                if retired
                else (f"deprecated, retires {info.deprecation_date}")
            )
            fix = (
                f"set models[{i}].model to {info.replacement}"
                if info.replacement
                else f"move models[{i}] to a current model (aiwire models --prices)"
            )
            self.add(
                "error" if retired else "warn",
                f"model {dep.name}",
                f"upstream model {dep.model} ({dep.provider}) is {when}",
                fix,
            )

    # -- store, keys, redis -----------------------------------------------------------------

    async def store(self) -> Database | None:
        """The store, open, when it is reachable and current (the caller closes it)."""
        url = self.config.server.store
        if _missing_sqlite_file(url):
            # Connecting (even constructing the engine) would create it: report, change nothing.
            self.add(
                "warn",
                f"store {_shown(url)}",
                "no database file yet",
                "start the gateway once (aiwire serve): it creates the store",
            )
            return None
        try:
            database = Database(url)
        except AIWireError as exc:
            self.add("error", "store", exc.message, "fix server.store in the config")
            return None
        if await self._store_ok(database):
            return database
        await database.aclose()
        return None

    async def _store_ok(self, database: Database) -> bool:
        subject = f"store {database.redact(_shown(self.config.server.store))}"
        if not await database.ping(self.timeout):
            self.add(
                "error",
                subject,
                "unreachable (no answer to SELECT 1)",
                "start the database or fix server.store (host, port, credentials)",
            )
            return False
        try:
            revision = await database.revision()
        except StoreError as exc:
            self.add("warn", subject, exc.message)
            return False
        head = head_revision()
        if revision is None:
            self.add(
                "warn",
                subject,
                "reachable but empty (no schema yet)",
                "start the gateway once (aiwire serve): it creates the schema",
            )
            return False
        if revision != head:
            self.add(
                "warn",
                subject,
                f"schema at revision {revision}, this aiwire expects {head}",
                "restart the gateway with this version: it migrates at start",
            )
            return False
        self.add("ok", subject, "reachable, schema current")
        return True

    async def keys(self, database: Database) -> None:
        records = await KeyStore(database).list(include_unusable=False)
        horizon = self.now + timedelta(days=self.expiring_days)
        soon = [r for r in records if r.expires_at is not None and r.expires_at <= horizon]
        for r in sorted(soon, key=lambda r: r.expires_at or self.now):
            assert r.expires_at is not None
            days = (r.expires_at - self.now).total_seconds() / 86400
            self.add(
                "warn",
                f"key {r.id} ({r.name})",
                f"expires in {days:.1f} days ({r.expires_at:%Y-%m-%d %H:%M} UTC)",
                f'extend it (PATCH /admin/keys/{r.id} {{"expires_in": "90d"}} with the master '
                f"key) or issue a replacement (aiwire keys create --expires 90d) and deploy it",
            )
        if not soon:
            self.add(
                "ok", "keys", f"{len(records)} usable, none expiring in {self.expiring_days} days"
            )
        logging_keys = [r for r in records if r.options.get("log_content") is True]
        if logging_keys and not self.config.server.store_content:
            names = ", ".join(sorted({r.name for r in logging_keys}))
            self.add(
                "warn",
                "content logging",
                f"keys with log_content: true ({names}) store nothing while "
                "server.store_content is false",
                "set server.store_content: true (or drop the keys' log_content option)",
            )

    async def redis(self) -> None:
        server = self.config.server
        if server.redis is None:
            return
        try:
            url = server.redis_url()
        except ConfigError as exc:
            self.add("error", "redis", exc.message, "export the variable server.redis names")
            return
        assert url is not None
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, socket_connect_timeout=self.timeout)
        where = urlsplit(url).netloc.rpartition("@")[2] or url.split("://")[0]
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except Exception as exc:  # any failure means the same thing here: not usable
            self.add(
                "error",
                f"redis {where}",
                f"unreachable ({type(exc).__name__}): shared limits, budgets and cooldowns "
                "will not work",
                "start Redis or fix server.redis",
            )
        else:
            self.add("ok", f"redis {where}", "reachable")
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def alerting(self) -> None:
        if not self.config.alerts.webhooks:
            self.add(
                "info",
                "alerts",
                "no webhooks: alerts (expired provider keys, error spikes, budgets) only reach "
                "the log",
                "add alerts.webhooks: [{url: ..., format: slack}]",
            )


def _missing_sqlite_file(url: str) -> bool:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # Database() reports it
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:":
        return False
    return not path.startswith("file:") and not Path(path).exists()


def _shown(url: str) -> str:
    """The user's own URL (not the async driver's form), password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def _key_fix(name: str, reference: object) -> str:
    if isinstance(reference, str) and reference.startswith("env:"):
        return f"export {reference[4:]}=... before starting aiwire"
    if isinstance(reference, str) and reference.startswith("file:"):
        return f"put the key in {reference[5:]}"
    return f"give providers.{name}.api_key: env:NAME and export NAME"


def load_findings(load: Callable[[], Config]) -> tuple[Config | None, list[Finding]]:
    """The configuration, or the finding that says why it cannot be loaded."""
    try:
        config = load()
    except ConfigError as exc:
        return None, [Finding("error", "config", exc.message, "edit the file at the place named")]
    return config, [Finding("ok", "config", "valid")]


async def diagnose(
    load: Callable[[], Config],
    *,
    expiring_days: int = 14,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> list[Finding]:
    config, findings = load_findings(load)
    if config is None:
        return findings
    doctor = Doctor(config, expiring_days=expiring_days, timeout=timeout, now=now)
    return findings + await doctor.run()
