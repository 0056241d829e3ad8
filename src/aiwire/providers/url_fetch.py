"""Fetching a URL that a request names (an image to send inline), through the SSRF guard.

An adapter that downloads what a user pointed at must not become a way into the gateway's own
network. The URL is checked first (:func:`aiwire.netguard.check_url_async`: no loopback, private,
link-local ... address unless allow-listed), and the download's connection resolves through
:class:`~aiwire.netguard.GuardedResolver`, so a name that passed cannot be re-pointed at a
private address between the check and the connect (DNS rebinding). Destinations that are meant
to be reached are allow-listed per provider: ``options: {fetch_allow: [host, *.domain, CIDR]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from aiwire import errors, netguard
from aiwire.providers.transport import AiohttpTransport

#: The provider option holding the allow-list.
ALLOW_OPTION = "fetch_allow"


class GuardedTransport(AiohttpTransport):
    """An :class:`AiohttpTransport` whose connections resolve through the SSRF guard."""

    def __init__(
        self, allow: netguard.AllowList, *, resolver: AbstractResolver | None = None
    ) -> None:
        super().__init__(max_connections=32)
        self._resolver = netguard.GuardedResolver(allow, resolver)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive,
                resolver=self._resolver,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session


def allow_list(options: Mapping[str, Any], provider: str) -> netguard.AllowList:
    """The provider's ``fetch_allow`` option; ConfigError naming it when malformed."""
    entries = options.get(ALLOW_OPTION) or []
    if isinstance(entries, str) or not isinstance(entries, list):
        raise errors.ConfigError(
            f"providers.{provider}.options.{ALLOW_OPTION} must be a list of hosts, *.domains, "
            "IP addresses or CIDR blocks"
        )
    return netguard.AllowList.parse(str(e) for e in entries)


async def check(url: str, allow: netguard.AllowList) -> None:
    """Raise :class:`~aiwire.netguard.BlockedURLError` for a URL the guard refuses. A name that
    does not resolve now is left to the download: its connection resolves through the guard
    too (or fails)."""
    try:
        await netguard.check_url_async(url, allow)
    except errors.ConnectionError:
        return


__all__ = ["ALLOW_OPTION", "GuardedTransport", "allow_list", "check"]
