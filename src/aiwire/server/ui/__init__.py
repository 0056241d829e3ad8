"""The web console (``/ui``): static pages over the admin API, signed in with a session cookie.

:func:`install_console` mounts it on a gateway and lets a console session stand in for a key on
the admin paths (see :mod:`aiwire.server.ui.sessions`); ``server.ui: false`` leaves both out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiwire.secrets import Secret
from aiwire.server.ui.app import PREFIX, ConsoleApp
from aiwire.server.ui.sessions import ConsoleSessions, SessionSettings
from aiwire.store.keys import KeyStore

if TYPE_CHECKING:
    from aiwire.config import UIConfig
    from aiwire.server.app import Gateway


def install_console(
    gateway: Gateway, keys: KeyStore, config: UIConfig, *, master_key: Secret | None
) -> ConsoleSessions | None:
    """Serve the console at ``/ui`` and accept its sessions (None when switched off)."""
    if not config.enabled:
        return None
    sessions = ConsoleSessions(
        keys.database,
        keys,
        master_key=master_key,
        settings=SessionSettings(
            idle=config.session_idle,
            absolute=config.session_max,
            trusted_proxies=tuple(config.trusted_proxies),
        ),
        ttl=gateway.auth.ttl,
    )
    gateway.session_auth = sessions.principal
    gateway.mount(PREFIX, ConsoleApp(sessions, gateway.principal))
    return sessions


__all__ = ["ConsoleApp", "ConsoleSessions", "install_console"]
