"""Slowing, then blocking, client addresses that keep presenting bad keys.

The gateway consults :class:`AuthGuard` around every authentication (``Gateway.auth_guard``):
:meth:`~AuthGuard.check` before (a 429 if this address must wait), :meth:`~AuthGuard.failed` or
:meth:`~AuthGuard.succeeded` after. Per client address (an IPv6 client by its /64, the block one
subscriber usually holds):

- the first ``free`` failures cost nothing: typos and stale keys happen;
- each failure after those makes the address wait before its next try - 1 s, 2 s, 4 s ... up to
  ``max_delay`` - answered 429 with ``retry-after`` (a wait the OpenAI and Anthropic SDKs honour);
- ``block_after`` failures block the address for ``block_seconds`` (429, ``x-should-retry:
  false``);
- failures are forgotten ``window`` seconds after the last one, and all at once on a success.

It never blocks the whole gateway: it keys on the client's address, and addresses that may be
many clients at once are exempt - none at all (a Unix socket) and, by default, loopback, where a
reverse proxy on the same host would make every client one address. (Behind a proxy elsewhere,
exempt its address too.) At most ``max_clients`` addresses are remembered, the longest quiet
forgotten first. The checks are dictionary lookups, and nothing at all while no address has
failed: with ``server.redis`` the failure counts are shared between replicas, but Redis is told in
the background and its count applied to the next request, so a slow Redis delays nobody.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from aiwire import errors
from aiwire.server.asgi import Scope

if TYPE_CHECKING:
    from aiwire.server.app import Gateway

log = logging.getLogger("aiwire.server.authguard")

#: Addresses never throttled by default: a reverse proxy on this host makes all clients one.
DEFAULT_EXEMPT = ("127.0.0.0/8", "::1/128")
_REDIS_PREFIX = "aiw:authfail:"
#: Background Redis updates in flight at most; beyond that, counting stays local for a moment.
_MAX_PENDING = 256


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    #: Refused until then (monotonic clock).
    until: float = 0.0
    blocked: bool = False


class AuthGuard:
    def __init__(
        self,
        *,
        free: int = 5,
        max_delay: float = 30.0,
        block_after: int = 20,
        block_seconds: float = 900.0,
        window: float = 600.0,
        max_clients: int = 100_000,
        exempt: Iterable[str] = DEFAULT_EXEMPT,
        redis: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``redis``: a ``redis.asyncio`` client shared by the replicas (optional)."""
        if not 0 <= free < block_after:
            raise ValueError("need 0 <= free < block_after")
        self.free = free
        self.max_delay = max_delay
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.window = window
        self.max_clients = max_clients
        self.exempt = tuple(ipaddress.ip_network(n, strict=False) for n in exempt)
        self.redis = redis
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._pending: set[asyncio.Task[None]] = set()

    # -- the gateway's hooks ------------------------------------------------------------------

    def check(self, scope: Scope) -> None:
        """Raise a 429 :class:`~aiwire.errors.RateLimitError` if this address must wait."""
        if not self._records:  # the usual case: nobody has failed lately
            return
        client = _client_key(scope)
        record = self._records.get(client) if client is not None else None
        if record is None:
            return
        now = self._clock()
        if now < record.until:
            raise self._refusal(record, now)

    def failed(self, scope: Scope) -> None:
        address = _address(scope)
        if address is None or any(address in net for net in self.exempt):
            return
        client = _key(address)
        now = self._clock()
        record = self._records.get(client)
        if record is None or now - record.last_failure > self.window:
            record = _Record()
        record.failures += 1
        record.last_failure = now
        self._apply(record, now)
        self._remember(client, record)
        if self.redis is not None:
            self._in_background(self._share(client))

    def succeeded(self, scope: Scope) -> None:
        if not self._records:
            return
        client = _client_key(scope)
        forgotten = client is not None and self._records.pop(client, None) is not None
        if forgotten and client is not None and self.redis is not None:
            self._in_background(self._forget_shared(client))

    # -- policy -------------------------------------------------------------------------------

    def _apply(self, record: _Record, now: float) -> None:
        """Set how long the address waits after ``record.failures`` failures."""
        if record.failures >= self.block_after:
            record.until, record.blocked = now + self.block_seconds, True
        elif record.failures > self.free:
            delay = min(self.max_delay, 2.0 ** (record.failures - self.free - 1))
            record.until = max(record.until, now + delay)

    def _refusal(self, record: _Record, now: float) -> errors.RateLimitError:
        wait = record.until - now
        if record.blocked:
            return errors.RateLimitError(
                f"too many failed authentication attempts from this address: blocked for "
                f"{wait:.0f} more seconds; check the key you send (`Authorization: Bearer ...`)",
                retry_after=wait,
                retryable=False,
                code="auth_blocked",
            )
        return errors.RateLimitError(
            f"{record.failures} failed authentication attempts from this address: wait "
            f"{wait:.1f} s before the next one; check the key you send",
            retry_after=wait,
            code="auth_throttled",
        )

    def _remember(self, client: str, record: _Record) -> None:
        self._records[client] = record
        self._records.move_to_end(client)
        while len(self._records) > self.max_clients:
            self._records.popitem(last=False)

    # -- sharing with other replicas ----------------------------------------------------------

    def _in_background(self, work: Any) -> None:
        if len(self._pending) >= _MAX_PENDING:
            work.close()  # Redis is not keeping up: count locally for now
            return
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _share(self, client: str) -> None:
        """Add this failure to the replicas' shared count; adopt the count if it is higher."""
        key = _REDIS_PREFIX + client
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, max(1, int(self.window)))
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:  # local counting still protects
            log.debug("auth guard: sharing a failure with Redis failed: %s", type(exc).__name__)
            return
        record = self._records.get(client)
        if record is not None and int(count) > record.failures:
            record.failures = int(count)
            self._apply(record, self._clock())

    async def _forget_shared(self, client: str) -> None:
        try:
            await self.redis.delete(_REDIS_PREFIX + client)
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("auth guard: clearing a shared count failed: %s", type(exc).__name__)

    async def aclose(self) -> None:
        """Wait for background Redis updates (at shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def install_auth_guard(gateway: Gateway, redis: Any = None) -> AuthGuard:
    """Guard ``gateway``'s authentications (its model endpoints and admin API) with the
    default policy, sharing counts through ``redis`` when given."""
    guard = AuthGuard(redis=redis)
    gateway.auth_guard = guard
    gateway.mount_hooks(on_shutdown=guard.aclose)
    return guard


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(scope: Scope) -> IPAddress | None:
    """The address a request came from (an IPv4-mapped IPv6 one as IPv4); None when unknown."""
    client = scope.get("client")
    if not client:
        return None
    try:
        address = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: IPAddress) -> str:
    """What failures are counted under: the address, or an IPv6 address's /64."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def _client_key(scope: Scope) -> str | None:
    """:func:`_key` of the request's address; IPv4 without parsing (it runs per request)."""
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])
    if ":" not in host and host.count(".") == 3 and host.replace(".", "").isdigit():
        return host
    address = _address(scope)
    return None if address is None else _key(address)


__all__ = ["DEFAULT_EXEMPT", "AuthGuard", "install_auth_guard"]
