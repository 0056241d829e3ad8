"""The transports against real sockets: failures keep their true type, streams end cleanly."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.providers.support import T

from aiwire import errors
from aiwire.providers.openai import OpenAIProvider
from aiwire.providers.transport import (
    AiohttpTransport,
    HttpTimeout,
    HttpxTransport,
    StreamedResponse,
    Transport,
    closed_before_answering,
)
from aiwire.types import ChatRequest

REQ = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_a_connection_error_not_a_timeout() -> None:
    p = OpenAIProvider(base_url=f"http://127.0.0.1:{closed_port()}/v1")
    try:
        with pytest.raises(errors.ConnectionError) as info:
            await p.chat(REQ, T)
    finally:
        await p.aclose()
    assert not isinstance(info.value, errors.TimeoutError)
    assert "timed out" not in str(info.value) and info.value.retryable


async def test_server_closing_before_answering_is_a_connection_error() -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(errors.ConnectionError) as info:
            await p.chat(REQ, T)
    finally:
        await p.aclose()
        server.close()
    assert not isinstance(info.value, errors.TimeoutError)


async def test_silent_server_is_a_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(errors.TimeoutError):
            await p.chat(REQ, type(T)(total=0.3))
    finally:
        await p.aclose()
        server.close()


# --- the transport interface itself ------------------------------------------------------------


class Pieces(StreamedResponse):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces, self.status, self.headers = pieces, 200, {}

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p


async def test_lines_split_across_pieces_crlf_and_very_long_lines() -> None:
    long = "x" * 300_000  # far beyond aiohttp's default readline limit
    body = f"data: a\r\n\r\ndata: {long}\n\nlast".encode()
    pieces = [body[i : i + 7] for i in range(0, 42, 7)] + [body[42:]]
    lines = [line async for line in Pieces(pieces).iter_lines()]
    assert lines == ["data: a", "", f"data: {long}", "", "last"]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_leaving_a_stream_early_closes_the_upstream_connection(transport: str) -> None:
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            while True:
                writer.write(b"9\r\ndata: x\n\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            closed.set()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t: Transport = (
        AiohttpTransport()
        if transport == "aiohttp"
        else HttpxTransport(httpx.AsyncClient(), owned=True)
    )
    try:
        async with t.stream(
            "POST",
            f"http://127.0.0.1:{port}/",
            headers={},
            timeout=HttpTimeout(2, 2),
            content=b"{}",
        ) as resp:
            async for line in resp.iter_lines():
                if line:
                    break  # the client went away after the first event
        await asyncio.wait_for(closed.wait(), 3)  # ...and the upstream noticed
    finally:
        await t.aclose()
        server.close()


def test_proxies_come_from_the_environment_read_once_with_no_proxy_honoured() -> None:
    t = AiohttpTransport(
        proxies={
            "https": "http://proxy.corp:3128",
            "http": "http://proxy.corp:3128",
            "no": "localhost, .internal.corp,10.0.0.5",
        }
    )
    assert t.proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.corp:3128"
    assert t.proxy_for("http://localhost:11434/v1/chat/completions") is None
    assert t.proxy_for("http://llm.internal.corp/v1/x") is None
    assert t.proxy_for("http://10.0.0.5:8000/v1/x") is None
    assert t.proxy_for("http://internal.corp.example.com/v1/x") == "http://proxy.corp:3128"
    assert (
        AiohttpTransport(proxies={"https": "http://p:1", "no": "*"}).proxy_for(
            "https://api.anthropic.com/v1/messages"
        )
        is None
    )
    assert AiohttpTransport(proxies={}).proxy_for("https://api.openai.com/v1/x") is None


def test_the_environment_proxy_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:8080")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    t = AiohttpTransport()
    assert t.proxy_for("https://api.openai.com/v1/x") == "http://proxy.example:8080"
    assert t.proxy_for("https://127.0.0.1:9/v1/x") is None


async def test_a_pooled_connection_the_server_closed_is_retried_once() -> None:
    """uvicorn-style servers (vLLM) close keep-alive connections idle for 5 s; a request sent on
    such a connection just as it closes gets no answer and must go out again on a new one."""
    served = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # a second request on this connection:
        writer.close()  # the idle timeout fired as it arrived - no answer

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t = AiohttpTransport(proxies={})
    try:
        timeout = HttpTimeout(connect=2, read=2)
        url = f"http://127.0.0.1:{port}/x"
        first = await t.request("POST", url, headers={}, timeout=timeout, content=b"{}")
        second = await t.request("POST", url, headers={}, timeout=timeout, content=b"{}")
        assert (first.status, second.status, served) == (200, 200, 2)
    finally:
        await t.aclose()
        server.close()


def test_which_failures_mean_the_server_closed_an_idle_connection_first() -> None:
    import errno

    import aiohttp

    # aiohttp finding the pooled transport closing as it writes (seen under pacing, when the
    # upstream's 5 s keep-alive timeout fired between two paced requests): no errno, a reset
    # as its cause.
    closing = aiohttp.ClientOSError(None, "Can not write request body for http://x/v1")
    closing.__cause__ = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    assert closed_before_answering(closing)
    assert closed_before_answering(aiohttp.ServerDisconnectedError())
    assert closed_before_answering(aiohttp.ClientOSError(errno.EPIPE, "broken pipe"))
    # A refused or unreachable connection is a real failure: the router decides about it.
    assert not closed_before_answering(aiohttp.ClientOSError(errno.ECONNREFUSED, "refused"))
    other = aiohttp.ClientOSError(None, "Can not write request body for http://x/v1")
    other.__cause__ = OSError("disk on fire")
    assert not closed_before_answering(other)
