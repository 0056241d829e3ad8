"""A client that goes away cancels its upstream request (streamed or not)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aiwire.config import Config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer

MASTER = "sk-aiwire-disconnect-test-0123456789"
CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
)


class EndlessUpstream:
    """An OpenAI-ish upstream that streams forever (or never answers) and records when the
    gateway hangs up on it."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        body = await reader.readexactly(length)
        try:
            if b'"stream":true' in body.replace(b" ", b""):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    await writer.drain()
                    await asyncio.sleep(0.02)
            else:  # never answer; notice when the gateway gives up on us
                while await reader.read(1024):
                    pass
                raise ConnectionResetError
        except (ConnectionError, OSError):
            self.closed.set()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[str, EndlessUpstream]]:
    upstream = EndlessUpstream()
    config = Config.from_dict(
        {
            "providers": {
                "up": {"type": "openai", "base_url": f"http://127.0.0.1:{upstream.port}/v1"}
            },
            "models": [{"name": "endless", "provider": "up", "model": "m"}],
            "router": {"retries": 0},
        }
    )
    parts = build_gateway(
        config, store_url=f"sqlite:///{tmp_path}/db.sqlite", master_key=Secret(MASTER)
    )
    with BackgroundServer(parts.gateway, lifespan="on") as gw:
        yield gw.url, upstream


def test_stream_client_disconnect_cancels_upstream(setup: tuple[str, EndlessUpstream]) -> None:
    url, upstream = setup
    body = {"model": "endless", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {MASTER}"},
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # got a chunk; now go away
    assert upstream.closed.wait(5), "the upstream stream was not cancelled"


def test_non_stream_client_disconnect_cancels_upstream(setup: tuple[str, EndlessUpstream]) -> None:
    url, upstream = setup
    body = {"model": "endless", "messages": [{"role": "user", "content": "go"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{url}/v1/chat/completions",
            json=body,
            timeout=httpx.Timeout(5, read=0.5),
            headers={"authorization": f"Bearer {MASTER}"},
        )
    assert upstream.closed.wait(5), "the upstream request was not cancelled"
