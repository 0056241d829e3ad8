"""The SSRF guard where aiwire fetches a URL on someone's behalf: the images the Gemini adapter
downloads to send inline, and alert webhooks. A refused destination is never connected to (a
listener on loopback counts connections); allow-listed ones are; a name re-pointed at loopback
after the check (DNS rebinding) is refused at connect time."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError
from tests.providers.support import T

from aiwire import errors, netguard
from aiwire.observability.alerts import Alerts, AlertsConfig, Webhook
from aiwire.providers import url_fetch
from aiwire.providers.gemini import GeminiProvider
from aiwire.providers.transport import HttpTimeout
from aiwire.secrets import Secret
from aiwire.serving import BackgroundServer
from aiwire.types import ChatRequest

IMAGE_PARAM = "messages[0].content[0].image_url"


class Listener:
    """A TCP port on loopback that counts the connections made to it (and closes them)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class RebindingResolver(AbstractResolver):
    """Every name resolves to 127.0.0.1, as an attacker's DNS would after the check."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with Listener() as server:
        yield server


def gemini(**options: Any) -> GeminiProvider:
    # No transport given: the adapter's own, as in the gateway (images through the guard).
    return GeminiProvider(
        name="gem", api_key=Secret("AIzaSy-test"), base_url="http://127.0.0.1:9", options=options
    )


def image_chat(url: str) -> ChatRequest:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    return ChatRequest(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])


# -- Gemini's image downloads -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f.1", "2130706433", "[::1]"],
)
async def test_gemini_refuses_images_on_loopback(host: str, listener: Listener) -> None:
    provider = gemini()
    try:
        with pytest.raises(errors.BadRequestError) as info:
            await provider.chat(image_chat(f"https://{host}:{listener.port}/cat.png?sig=s3cret"), T)
    finally:
        await provider.aclose()
    exc = info.value
    assert exc.code == "url_not_allowed" and exc.param == IMAGE_PARAM and exc.status == 400
    assert "providers.gem.options.fetch_allow" in exc.message
    assert "s3cret" not in exc.message  # the query (a signed URL's token) is never shown
    assert listener.connections == 0


async def test_gemini_refuses_cloud_metadata() -> None:
    provider = gemini()
    try:
        with pytest.raises(errors.BadRequestError, match="link-local") as info:
            await provider.chat(image_chat("https://169.254.169.254/latest/meta-data/"), T)
    finally:
        await provider.aclose()
    assert info.value.code == "url_not_allowed"


async def test_an_allow_listed_destination_is_fetched(listener: Listener) -> None:
    provider = gemini(fetch_allow=["127.0.0.1"])
    try:
        with pytest.raises(errors.BadRequestError) as info:
            await provider.chat(image_chat(f"https://127.0.0.1:{listener.port}/cat.png"), T)
    finally:
        await provider.aclose()
    # It connected (and failed: the listener speaks no TLS), so the guard let it through.
    assert info.value.code == "image_fetch_failed"
    assert listener.connections >= 1  # (the transport retries a connection closed at once)


async def test_a_name_rebound_to_loopback_is_refused_at_connect(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Rebinding(url_fetch.GuardedTransport):
        def __init__(self, allow: netguard.AllowList) -> None:
            super().__init__(allow, resolver=RebindingResolver())

    monkeypatch.setattr(url_fetch, "GuardedTransport", Rebinding)
    provider = gemini()
    try:
        # The check cannot resolve images.example (no DNS here); the connection's own
        # resolution says 127.0.0.1, which the guard refuses before connecting.
        url = f"https://images.example:{listener.port}/cat.png"
        with pytest.raises(
            errors.BadRequestError, match=r"images\.example resolves to 127\.0\.0\.1"
        ):
            await provider.chat(image_chat(url), T)
    finally:
        await provider.aclose()
    assert listener.connections == 0


async def test_the_guarded_transport_alone(listener: Listener) -> None:
    transport = url_fetch.GuardedTransport(netguard.AllowList(), resolver=RebindingResolver())
    timeout = HttpTimeout(connect=2, read=2)
    try:
        with pytest.raises(netguard.BlockedURLError):
            await transport.request(
                "GET", f"http://rebound.example:{listener.port}/", headers={}, timeout=timeout
            )
    finally:
        await transport.aclose()
    assert listener.connections == 0


def test_a_malformed_allow_list_names_the_option() -> None:
    with pytest.raises(errors.ConfigError, match=r"providers\.gem\.options\.fetch_allow"):
        url_fetch.allow_list({"fetch_allow": "127.0.0.1"}, "gem")
    with pytest.raises(errors.ConfigError, match="allow-list entry"):
        url_fetch.allow_list({"fetch_allow": ["http://x/y"]}, "gem")


# -- alert webhooks -----------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on loopback; ``/moved`` redirects to ``/elsewhere``."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        moved = scope["path"] == "/moved"
        headers = [(b"location", b"/elsewhere")] if moved else []
        await send(
            {"type": "http.response.start", "status": 307 if moved else 204, "headers": headers}
        )
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def receiver() -> Any:
    app = Receiver()
    with BackgroundServer(app) as server:
        yield server.url, app


async def fire(config: AlertsConfig) -> None:
    alerts = Alerts(config, retries=1)
    assert await alerts.fire("credential", "prov:dep", "provider answered 401", {})
    await alerts.aclose()


async def test_webhooks_to_private_addresses_are_refused(
    receiver: tuple[str, Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    url, app = receiver
    app.paths.clear()
    caplog.set_level(logging.ERROR, "aiwire.alerts")
    await fire(AlertsConfig(webhooks=[Webhook(url=f"{url}/hook?token=s3cret")]))
    assert app.paths == []
    assert "not sent to webhook at 127.0.0.1" in caplog.text and "loopback" in caplog.text
    assert "s3cret" not in caplog.text


async def test_allow_listed_webhooks_are_delivered_without_following_redirects(
    receiver: tuple[str, Receiver],
) -> None:
    url, app = receiver
    app.paths.clear()
    allowed = AlertsConfig(
        webhooks=[Webhook(url=f"{url}/hook"), Webhook(url=f"{url}/moved")],
        allow_hosts=["127.0.0.0/8"],
    )
    await fire(allowed)
    assert sorted(app.paths) == ["/hook", "/moved"]  # not /elsewhere


def test_a_malformed_webhook_allow_list_is_refused_at_load() -> None:
    with pytest.raises(ValidationError, match="allow-list entry"):
        AlertsConfig(allow_hosts=["http://hooks.example/path"])
