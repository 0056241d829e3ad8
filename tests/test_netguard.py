"""The outbound URL guard: private, loopback, link-local and odd spellings of them are refused
unless allow-listed; names are resolved (by a fake resolver here: no DNS, no network) and every
address must pass."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from aiwire import errors
from aiwire.netguard import (
    AllowList,
    BlockedURLError,
    GuardedResolver,
    check_url,
    check_url_async,
    parse_ipv4,
)

PUBLIC = "93.184.215.14"


def resolver(*addresses: str) -> Any:
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def never_resolve(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} must be decided without DNS")


BLOCKED = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "https://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0/",
    "http://0/",
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://192.0.2.10/",  # documentation
    "http://[::1]/",
    "http://[::]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",  # zone id
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:c0a8:101::]/",  # 6to4 of 192.168.1.1
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0x7f000001/",  # hex
    "http://0x7f.1/",
    "http://0177.0.0.1/",  # octal
    "http://127.1/",
    "http://0xa9.0xfe.0xa9.0xfe/",  # 169.254.169.254 in hex parts
    "http://127.0.0.1./",  # trailing dot
    "http://good.example@127.0.0.1/",  # userinfo trick
    "http://user:pass@good.example@127.0.0.1/",
    "http://１２７.０.０.１/",  # full-width digits (IDNA maps them to ASCII)
    "http://localhost/",
    "http://LOCALHOST:3000/",
    "http://api.localhost/",
    "http://localhost.localdomain/",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_blocked(url: str) -> None:
    with pytest.raises(BlockedURLError) as info:
        check_url(url, resolve=never_resolve)
    exc = info.value
    assert isinstance(exc, errors.PermissionDeniedError)
    assert exc.status == 403 and exc.code == "url_not_allowed" and not exc.retryable
    assert "allow-list" in exc.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http:///nohost",
        "http://127.0.0.1\\@good.example/",  # parsers disagree on the backslash
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://1.2.3.4.5/",
        "http://0x7g.1/",
        "http://256.1.1.1/",
        "http://[::1/",
    ],
)
def test_malformed_or_other_schemes(url: str) -> None:
    with pytest.raises(BlockedURLError):
        check_url(url, resolve=never_resolve)


def test_public_literals_pass_without_dns() -> None:
    checked = check_url("https://8.8.8.8/x", resolve=never_resolve)
    assert checked.host == "8.8.8.8" and checked.port == 443
    assert [str(a) for a in checked.addresses] == ["8.8.8.8"]
    v6 = check_url("http://[2606:4700:4700::1111]:8080/", resolve=never_resolve)
    assert v6.port == 8080 and str(v6.addresses[0]) == "2606:4700:4700::1111"
    assert check_url("http://[::ffff:8.8.8.8]/", resolve=never_resolve).host == "::ffff:8.8.8.8"


def test_names_are_resolved_and_every_address_must_pass() -> None:
    ok = resolver(PUBLIC, "2606:4700::6810:84e5")
    checked = check_url("https://hooks.example.com/in", resolve=ok)
    assert ok.calls == ["hooks.example.com"]
    assert len(checked.addresses) == 2
    with pytest.raises(BlockedURLError, match=r"resolves to 10\.0\.0\.7"):
        check_url("https://hooks.example.com/in", resolve=resolver(PUBLIC, "10.0.0.7"))
    with pytest.raises(BlockedURLError, match="resolves to ::ffff:7f00:1"):
        check_url("https://rebind.example/", resolve=resolver("::ffff:127.0.0.1"))


def test_unresolvable_name_is_a_connection_error() -> None:
    def fail(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(errors.ConnectionError, match=r"Could not resolve nope\.example"):
        check_url("http://nope.example/", resolve=fail)
    with pytest.raises(errors.ConnectionError, match="no address"):
        check_url("http://empty.example/", resolve=resolver())


def test_allow_list_hosts_suffixes_and_cidrs() -> None:
    allow = AllowList.parse(["hooks.internal", "*.corp.example", "10.20.0.0/16", "fd00::/8"])
    assert check_url("http://hooks.internal/", allow, resolve=never_resolve).addresses == ()
    assert (
        check_url("http://HOOKS.internal./", allow, resolve=never_resolve).host == "hooks.internal"
    )
    check_url("http://a.b.corp.example/", allow, resolve=never_resolve)
    check_url("http://10.20.3.4/", allow, resolve=never_resolve)
    check_url("http://[::ffff:10.20.3.4]/", allow, resolve=never_resolve)  # mapped form too
    check_url("http://[fd00::5]/", allow, resolve=never_resolve)
    check_url("http://db.example/", allow, resolve=resolver("10.20.9.9"))
    with pytest.raises(BlockedURLError):
        check_url("http://10.21.0.1/", allow, resolve=never_resolve)
    with pytest.raises(BlockedURLError):
        check_url("http://corp.example/", allow, resolve=resolver("10.0.0.1"))  # not *.corp...
    # Plain strings work as well as a parsed AllowList.
    check_url("http://127.0.0.1:9000/", ["127.0.0.1"], resolve=never_resolve)
    check_url("http://localhost:9000/", ["localhost"], resolve=never_resolve)


@pytest.mark.parametrize("entry", ["http://x", "host:80", "a..b", "10.0.0.0/33"])
def test_allow_list_rejects_malformed_entries(entry: str) -> None:
    with pytest.raises(errors.ConfigError, match="allow-list entry"):
        AllowList.parse([entry])


def test_errors_never_echo_credentials_path_or_query() -> None:
    url = "http://admin:hunter2@169.254.169.254/latest/api/token?secret=s3cr3t"
    with pytest.raises(BlockedURLError) as info:
        check_url(url, resolve=never_resolve)
    for text in (info.value.message, str(info.value), repr(info.value)):
        assert "hunter2" not in text and "s3cr3t" not in text and "latest" not in text
    assert "http://169.254.169.254" in info.value.message


def test_parse_ipv4_spellings() -> None:
    assert str(parse_ipv4("2130706433")) == "127.0.0.1"
    assert str(parse_ipv4("0x7f.0.0.1")) == "127.0.0.1"
    assert str(parse_ipv4("0300.0250.1.1")) == "192.168.1.1"
    assert str(parse_ipv4("10.1")) == "10.0.0.1"
    assert str(parse_ipv4("192.168.257")) == "192.168.1.1"
    assert parse_ipv4("example.com") is None
    with pytest.raises(ValueError):
        parse_ipv4("08.1.1.1")  # 8 is no octal digit


async def test_async_check_uses_the_loops_getaddrinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    asked: list[tuple[str, int]] = []

    async def fake_getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
        asked.append((host, port))
        addr = {"public.example": PUBLIC, "inside.example": "192.168.0.9"}[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    checked = await check_url_async("https://public.example/hook")
    assert str(checked.addresses[0]) == PUBLIC and asked == [("public.example", 443)]
    with pytest.raises(BlockedURLError, match=r"192\.168\.0\.9"):
        await check_url_async("http://inside.example:81/")
    with pytest.raises(BlockedURLError):
        await check_url_async("http://0x7f.1/")  # literals never reach DNS
    assert len(asked) == 2


async def test_async_check_with_custom_resolver() -> None:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return ["fe80::2"]

    with pytest.raises(BlockedURLError, match="link-local"):
        await check_url_async("http://printer.example/", resolve=resolve)


class _Inner:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_guarded_resolver_stops_dns_rebinding() -> None:
    inner = _Inner(PUBLIC)
    guarded = GuardedResolver(["*.internal"], resolver=inner)  # type: ignore[arg-type]
    assert [r["host"] for r in await guarded.resolve("hooks.example.com", 443)] == [PUBLIC]
    inner.addresses = (PUBLIC, "127.0.0.1")  # the name now also points home
    with pytest.raises(BlockedURLError, match=r"127\.0\.0\.1"):
        await guarded.resolve("hooks.example.com", 443)
    inner.addresses = ("10.0.0.3",)
    assert await guarded.resolve("svc.internal", 80)  # allow-listed by name
    await guarded.close()
    assert inner.closed
