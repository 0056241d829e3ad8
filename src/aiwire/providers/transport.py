"""How adapters reach the network: one small interface, two implementations.

:class:`AiohttpTransport` is the default: aiohttp's connection pool costs a fraction of the CPU
per request of httpx's request layer and does not collapse under concurrency (bench/RESULTS.md).
:class:`HttpxTransport` wraps any ``httpx.AsyncClient``, so tests drive adapters through
``httpx.MockTransport`` and users can bring a client configured their way (proxies, mTLS).

Both raise :class:`TransportError` with a ``kind`` saying what failed; adapters turn that into
aiwire's typed errors. Headers are read-only, case-insensitive mappings.
"""

from __future__ import annotations

import contextlib
import errno
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import httpx

Headers = Mapping[str, str]
Kind = Literal["connect", "connect_timeout", "read_timeout", "closed"]


class TransportError(Exception):
    """A request that got no (complete) HTTP answer. ``kind``: ``connect`` (refused, DNS),
    ``connect_timeout``, ``read_timeout`` (no bytes within the read timeout) or ``closed`` (the
    connection broke or the body was cut)."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: Kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class HttpTimeout:
    connect: float
    read: float | None  # None: no limit between reads (the caller enforces its own)


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    content: bytes


class StreamedResponse(ABC):
    """A response whose body is read incrementally."""

    status: int
    headers: Headers

    @abstractmethod
    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; raises :class:`TransportError` if the body is cut."""

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_bytes()])

    async def iter_lines(self) -> AsyncIterator[str]:
        """Body lines without their line ending (``\\n`` or ``\\r\\n``), any length."""
        pending = b""
        async for piece in self.iter_bytes():
            pending += piece
            if b"\n" not in piece:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")


class Transport(ABC):
    @abstractmethod
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a request and read the whole answer."""

    @abstractmethod
    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractAsyncContextManager[StreamedResponse]:
        """Send a request; the answer's body is read inside the ``async with`` block. Leaving the
        block early closes the connection (which cancels the upstream work)."""

    async def aclose(self) -> None:
        return None


# --- aiohttp ------------------------------------------------------------------------------------


def _aiohttp_error(exc: BaseException) -> TransportError:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError("connect_timeout", detail)
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError, asyncio's
        return TransportError("read_timeout", detail)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return TransportError("connect", detail)
    return TransportError("closed", detail)


_AIOHTTP_ERRORS = (aiohttp.ClientError, TimeoutError)


class _AiohttpStreamed(StreamedResponse):
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._resp.content.iter_any():
                yield piece
        except _AIOHTTP_ERRORS as exc:
            raise _aiohttp_error(exc) from None


def closed_before_answering(exc: BaseException) -> bool:
    """Whether ``exc`` says a pooled connection was closed by the server before the request
    reached it: the server hung up (``ServerDisconnectedError``), the write met a reset or a
    broken pipe, or aiohttp found the transport already closing ("Can not write request body",
    raised with no errno and a ``ConnectionResetError`` as its cause). Such a request was never
    processed, so sending it again on a new connection is safe."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return True
        return isinstance(exc.__cause__, ConnectionResetError | BrokenPipeError)
    return False


class AiohttpTransport(Transport):
    """aiohttp's pooled client. The session is created on first use, inside the running loop.

    Proxies follow ``HTTP(S)_PROXY`` / ``NO_PROXY`` like the providers' own SDKs do, but the
    environment is read once, at construction, and the answer cached per host: aiohttp's
    ``trust_env`` would re-read the environment and ``~/.netrc`` on every request (measured at a
    quarter of the gateway's CPU per request, bench/RESULTS.md).
    """

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive: float = 4.0,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._max_connections = max_connections
        # 4 s: idle pooled connections are closed by us before the 5 s idle timeout of
        # uvicorn- and Node-based servers (vLLM, TGI, the simulator) closes them under a request
        # (measured: bench/pacing.py lost 0.2-0.7 % of its requests to that race with 30 s).
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._proxy_cache: dict[str, str | None] = {}
        self._timeouts: dict[HttpTimeout, aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def proxy_for(self, url: str) -> str | None:
        """The proxy to reach ``url`` through (None: connect directly)."""
        try:
            return self._proxy_cache[url]
        except KeyError:
            pass
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy is not None and _bypass(parts.hostname or "", self._proxies.get("no", "")):
            proxy = None
        if len(self._proxy_cache) >= 4096:  # URLs come from config; a bound all the same
            self._proxy_cache.clear()
        self._proxy_cache[url] = proxy
        return proxy

    def _timeout(self, t: HttpTimeout) -> aiohttp.ClientTimeout:
        cached = self._timeouts.get(t)
        if cached is None:
            cached = self._timeouts[t] = aiohttp.ClientTimeout(
                total=None, connect=t.connect, sock_read=t.read
            )
        return cached

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None,
        params: Mapping[str, str] | None,
    ) -> aiohttp.ClientResponse:
        """Send, and read the response's head. A pooled connection the server closed while it
        sat idle (servers such as uvicorn - vLLM's - close idle ones after 5 s) fails before any
        answer arrives: that is sent again, up to twice (after a lull several pooled connections
        can have gone stale at once; each failure discards its connection). Nothing else is retried
        here; the router decides about real failures."""
        session = self._client()
        for attempt in (1, 2, 3):
            try:
                return await session.request(
                    method,
                    url,
                    data=content,
                    headers=headers,
                    params=params,
                    timeout=self._timeout(timeout),
                    allow_redirects=False,
                    proxy=self.proxy_for(url),
                )
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 3 or not closed_before_answering(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            resp = await self._send(method, url, headers, timeout, content, params)
            try:
                return Response(resp.status, resp.headers, await resp.read())
            finally:
                resp.release()
        except _AIOHTTP_ERRORS as exc:
            raise _aiohttp_error(exc) from None

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        try:
            resp = await self._send(method, url, headers, timeout, content, params)
        except _AIOHTTP_ERRORS as exc:
            raise _aiohttp_error(exc) from None
        try:
            yield _AiohttpStreamed(resp)
        finally:
            if resp.content.at_eof():
                resp.release()  # the connection goes back to the pool
            else:
                resp.close()  # abandoned mid-body: drop the connection, cancelling upstream work

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _bypass(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (comma-separated hosts, domain suffixes or ``*``) exempts ``host``."""
    host = host.lower()
    for entry in no_proxy.replace(" ", "").lower().split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.lstrip(".").split(":")[0]
        if host == entry or host.endswith("." + entry):
            return True
    return False


# --- httpx --------------------------------------------------------------------------------------


def _httpx_error(exc: httpx.HTTPError) -> TransportError:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransportError("connect_timeout", detail)
    if isinstance(exc, httpx.TimeoutException):
        return TransportError("read_timeout", detail)
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return TransportError("connect", detail)
    return TransportError("closed", detail)


class _HttpxStreamed(StreamedResponse):
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._resp.aiter_bytes():
                yield piece
        except httpx.HTTPError as exc:
            raise _httpx_error(exc) from None


class HttpxTransport(Transport):
    """Any ``httpx.AsyncClient``: a ``MockTransport`` in tests, or a client set up your way."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool = False) -> None:
        self.client = client
        self._owned = owned

    @staticmethod
    def _timeout(t: HttpTimeout) -> httpx.Timeout:
        return httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            resp = await self.client.request(
                method,
                url,
                content=content,
                headers=dict(headers),
                params=params,
                timeout=self._timeout(timeout),
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise _httpx_error(exc) from None
        return Response(resp.status_code, resp.headers, resp.content)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: HttpTimeout,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        request = self.client.build_request(
            method,
            url,
            content=content,
            headers=dict(headers),
            params=params,
            timeout=self._timeout(timeout),
        )
        try:
            resp = await self.client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise _httpx_error(exc) from None
        try:
            yield _HttpxStreamed(resp)
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()
