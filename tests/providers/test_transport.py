"""The default HTTP client (httpx over aiohttp's pool) against real sockets: failures keep
their true type."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.providers.support import T

from aiwire import errors
from aiwire.providers.openai import OpenAIProvider
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
