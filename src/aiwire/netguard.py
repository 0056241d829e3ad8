"""The outbound URL guard: aiwire fetches a URL on a user's behalf (an image URL in a prompt, a
webhook, a flow sink) only if it leads to the public internet, unless an administrator
allow-listed the destination. Without it, anyone who can send a request could make the gateway
read its cloud metadata service (``169.254.169.254``), an admin port on ``127.0.0.1`` or a
database on the private network (server-side request forgery, SSRF).

:func:`check_url` refuses http(s) URLs whose host is, or resolves to, a loopback, private
(RFC 1918, ``fc00::/7``), shared (``100.64/10``), link-local (``169.254/16``, ``fe80::/10``),
unspecified, multicast, reserved or documentation address. It sees through the usual
disguises:

- every IPv4 spelling an OS or browser accepts: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
  ``127.1`` (parsed as the URL standard does: a host whose last label is a number is IPv4);
- IPv6 forms embedding IPv4: mapped ``::ffff:127.0.0.1``, NAT64 ``64:ff9b::7f00:1``, 6to4
  ``2002:7f00:1::``;
- ``localhost`` and ``*.localhost`` names (never resolved: RFC 6761 reserves them);
- userinfo (``http://good.example@127.0.0.1/`` goes to 127.0.0.1), a backslash in the
  authority (parsers disagree about it: refused), full-width digits (IDNA-normalised first);
- names: every address the name resolves to must pass (:func:`check_url_async` resolves with
  the event loop's ``getaddrinfo``).

A name can resolve differently a moment later (DNS rebinding), so a client that fetches after
the check should resolve through :class:`GuardedResolver` (aiohttp), which applies the same
rule to the addresses it connects to.

The allow-list holds host names (``hooks.internal.example``), ``*.suffix`` patterns, IP
addresses and CIDR blocks (``10.20.0.0/16``). Errors never echo the URL's userinfo, path or
query (they may hold tokens): only its scheme and host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from aiwire import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: host, port → the addresses the name resolves to.
Resolver = Callable[[str, int], Sequence[str]]
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SCHEMES = ("http", "https")


class BlockedURLError(errors.PermissionDeniedError):
    """A URL aiwire was asked to fetch leads somewhere it may not go (403, ``url_not_allowed``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="url_not_allowed", retryable=False)


# --- the allow-list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowList:
    """Destinations an administrator trusts although they are not public."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """``hooks.internal``, ``*.internal``, ``10.0.0.5``, ``10.0.0.0/8``, ``fd00::/8``;
        ConfigError naming a malformed entry."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not all(p for p in entry.split(".")):
                raise errors.ConfigError(
                    f"URL allow-list entry {raw!r} is neither a host name, '*.domain', an IP "
                    "address nor a CIDR block"
                )
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(
            a in net for a in candidates for net in self.networks if a.version == net.version
        )


AllowSpec = AllowList | Iterable[str]


def _allow(spec: AllowSpec) -> AllowList:
    return spec if isinstance(spec, AllowList) else AllowList.parse(spec)


# --- addresses --------------------------------------------------------------------------------


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and routes to (mapped, NAT64, 6to4)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination (``"loopback"``, ``"private"``...), or None."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return classify(inner)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives here)" if ip.version == 4 else "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private or special-use"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-public"
    return None


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as IPv4 the way the URL standard (and ``inet_aton``) reads it: 1-4 parts, each
    decimal, ``0x`` hex or ``0``-prefixed octal, the last filling the remaining bytes. None if
    the host does not end in a number (a name); ValueError if it does but is no address."""
    parts = host.split(".")
    if not _is_number(parts[-1]):
        return None
    if len(parts) > 4:
        raise ValueError("too many parts")
    numbers = [_number(p) for p in parts]
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        raise ValueError("part out of range")
    value = last
    for i, n in enumerate(numbers):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _is_number(label: str) -> bool:
    if label[:2] in ("0x", "0X"):
        return all(c in "0123456789abcdefABCDEF" for c in label[2:])
    return label.isascii() and label.isdigit()


def _number(label: str) -> int:
    if not label:
        raise ValueError("empty part")
    if label[:2] in ("0x", "0X"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label[0] == "0":
        return int(label, 8)
    return int(label, 10)


# --- URLs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedURL:
    """A URL that passed: its host (normalised) and port, and the addresses it was checked
    against (empty when the host name itself is allow-listed)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    ip: IPAddress | None

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}"


def _refuse(target: _Target | None, why: str) -> BlockedURLError:
    where = f"Refused to fetch {target.shown}: " if target else "Refused to fetch this URL: "
    return BlockedURLError(where + why)


def _hint(host: str, ip: IPAddress | None = None) -> str:
    also = f" or a CIDR block containing {ip}" if ip is not None and str(ip) != host else ""
    return (
        "aiwire does not fetch loopback, private or link-local destinations on a user's "
        f"behalf. If this destination is intended, add '{host}'{also} to the URL allow-list."
    )


def _target(url: str) -> _Target:
    """Parse and normalise; refuse what is not a plain http(s) URL with a host."""
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise _refuse(None, "it contains whitespace, control characters or a backslash.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(None, f"it is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise _refuse(None, "only http and https URLs are fetched.")
    host = (parts.hostname or "").split("%", 1)[0]  # an IPv6 zone id names no other host
    if not host:
        raise _refuse(None, "it has no host.")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refuse(None, "its host is not a valid international domain name.") from None
    host = host.lower().rstrip(".")
    if port is None:
        port = 443 if scheme == "https" else 80
    probe = _Target(url, scheme, host, port, None)
    if ":" in host:
        try:
            return _Target(url, scheme, host, port, ipaddress.IPv6Address(host))
        except ValueError:
            raise _refuse(probe, "its host is not a valid IPv6 address.") from None
    try:
        ip4 = parse_ipv4(host) if host else None
    except ValueError:
        raise _refuse(probe, "its host looks like an IPv4 address but is not one.") from None
    if ip4 is not None:
        return _Target(url, scheme, str(ip4), port, ip4)
    return probe


def _precheck(url: str, allow: AllowList) -> tuple[_Target, CheckedURL | None]:
    """Everything decidable without DNS: a verdict, or the name that must be resolved."""
    target = _target(url)
    host = target.host
    if target.ip is not None:
        _check_address(target, target.ip, allow)
        return target, CheckedURL(url, target.scheme, host, target.port, (target.ip,))
    if allow.allows_host(host):
        return target, CheckedURL(url, target.scheme, host, target.port, ())
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise _refuse(target, f"'{host}' always means this machine. {_hint(host)}")
    return target, None


def _check_address(target: _Target, ip: IPAddress, allow: AllowList) -> None:
    why = classify(ip)
    if why is None or allow.allows_ip(ip):
        return
    what = f"{'an' if why[0] in 'aeiou' else 'a'} {why} address"
    if target.ip is not None:
        message = f"{ip} is {what}. {_hint(target.host, ip)}"
    else:
        message = f"{target.host} resolves to {ip}, {what}. {_hint(target.host, ip)}"
    raise _refuse(target, message)


def _finish(target: _Target, addresses: Sequence[str], allow: AllowList) -> CheckedURL:
    ips: list[IPAddress] = []
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        _check_address(target, ip, allow)
        if ip not in ips:
            ips.append(ip)
    if not ips:
        raise errors.ConnectionError(f"{target.host} has no address to fetch from.")
    return CheckedURL(target.url, target.scheme, target.host, target.port, tuple(ips))


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _unresolvable(target: _Target, exc: OSError) -> errors.ConnectionError:
    reason = exc.strerror or type(exc).__name__
    return errors.ConnectionError(f"Could not resolve {target.host}: {reason}.")


def check_url(url: str, allow: AllowSpec = (), *, resolve: Resolver | None = None) -> CheckedURL:
    """Refuse (:class:`BlockedURLError`) a URL that is not a public http(s) destination nor
    allow-listed; resolve a host name (blocking: use :func:`check_url_async` on an event
    loop) and check every address. ``ConnectionError`` if the name does not resolve."""
    policy = _allow(allow)
    target, verdict = _precheck(url, policy)
    if verdict is not None:
        return verdict
    try:
        addresses = (resolve or _system_resolve)(target.host, target.port)
    except OSError as exc:
        raise _unresolvable(target, exc) from None
    return _finish(target, addresses, policy)


async def check_url_async(
    url: str, allow: AllowSpec = (), *, resolve: AsyncResolver | None = None
) -> CheckedURL:
    """:func:`check_url` resolving with the running loop's ``getaddrinfo`` (or ``resolve``)."""
    policy = _allow(allow)
    target, verdict = _precheck(url, policy)
    if verdict is not None:
        return verdict
    try:
        if resolve is not None:
            addresses = await resolve(target.host, target.port)
        else:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
    except OSError as exc:
        raise _unresolvable(target, exc) from None
    return _finish(target, addresses, policy)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses to hand out blocked addresses, so a name that passed
    :func:`check_url_async` cannot be re-pointed at ``127.0.0.1`` before the connection is
    made. Use with ``aiohttp.TCPConnector(resolver=GuardedResolver(allow))``. (aiohttp does
    not resolve IP literals; :func:`check_url_async` covers those.)"""

    def __init__(self, allow: AllowSpec = (), resolver: AbstractResolver | None = None) -> None:
        self._allow = _allow(allow)
        self._inner = resolver if resolver is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        results = await self._inner.resolve(host, port, family)
        if self._allow.allows_host(name):
            return results
        target = _Target(f"http://{name}", "http", name, port, None)
        for r in results:
            _check_address(target, ipaddress.ip_address(r["host"].split("%", 1)[0]), self._allow)
        return results

    async def close(self) -> None:
        await self._inner.close()


__all__ = [
    "AllowList",
    "BlockedURLError",
    "CheckedURL",
    "GuardedResolver",
    "check_url",
    "check_url_async",
    "classify",
    "embedded_ipv4",
    "parse_ipv4",
]
