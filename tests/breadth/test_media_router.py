"""Images and transcriptions through the router (retries, fallbacks, pacing) and the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.breadth.conftest import wav

from aiwire import errors
from aiwire.client import AsyncClient, Client
from aiwire.config import Config, DeploymentConfig, ProviderConfig, RouterConfig, simulator_config
from aiwire.providers.base import FEATURES, Capabilities, Provider, Support, Timeouts
from aiwire.providers.media import (
    ImageData,
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
)
from aiwire.router import Deployment, Router
from aiwire.secrets import Secret
from aiwire.simulator import SimulatorServer
from aiwire.types import ChatChunk, ChatRequest, ChatResponse


class Media(Provider):
    """Answers images and transcriptions from a script of outcomes (an error, or success)."""

    type = "media-fake"
    capabilities = Capabilities({k: Support.SUPPORTED for k in FEATURES})

    def __init__(self, name: str, script: list[Exception | None] | None = None) -> None:
        super().__init__(name=name)
        self.script = list(script or [])
        self.seen: list[str] = []

    def _next(self, model: str) -> None:
        self.seen.append(model)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    async def images(self, request: ImageRequest, timeouts: Timeouts) -> ImageResponse:
        self._next(request.model)
        return ImageResponse(data=[ImageData(b64_json="AAAA")] * request.count, provider=self.name)

    async def transcribe(
        self, request: TranscriptionRequest, timeouts: Timeouts
    ) -> TranscriptionResponse:
        self._next(request.model)
        return TranscriptionResponse(text=f"{len(request.file)} bytes", provider=self.name)

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError
        yield

    def map_error(
        self, status: int, body: bytes, headers: object, model: str | None
    ) -> errors.ProviderError:  # type: ignore[override]
        return errors.ServerError("x")


def _router(*deployments: Deployment, retries: int = 2) -> Router:
    return Router(list(deployments), RouterConfig(retries=retries, backoff_base=0, backoff_max=0))


async def test_images_are_retried_after_a_retryable_error() -> None:
    flaky = Media("flaky", [errors.ServerError("boom", provider="flaky")])
    router = _router(Deployment("pics", flaky, "upstream-image"))
    resp = await router.images(ImageRequest(model="pics", prompt="x", n=3))
    assert len(resp.data) == 3 and flaky.seen == ["upstream-image", "upstream-image"]
    assert resp.deployment == "pics@flaky/upstream-image"


async def test_transcriptions_fall_back_to_the_next_model() -> None:
    down = Media("down", [errors.OverloadedError("busy", provider="down")] * 5)
    spare = Media("spare")
    router = _router(
        Deployment("stt", down, "whisper-1", fallbacks=["stt-spare"]),
        Deployment("stt-spare", spare, "whisper-large"),
        retries=1,
    )
    resp = await router.transcribe(TranscriptionRequest(model="stt", file=b"abc"))
    assert resp.text == "3 bytes" and resp.deployment == "stt-spare@spare/whisper-large"
    assert down.seen == ["whisper-1", "whisper-1"] and spare.seen == ["whisper-large"]


async def test_a_bad_request_is_not_retried() -> None:
    picky = Media("picky", [errors.BadRequestError("no", provider="picky")])
    router = _router(Deployment("pics", picky, "m"))
    with pytest.raises(errors.BadRequestError):
        await router.images(ImageRequest(model="pics", prompt="x"))
    assert picky.seen == ["m"]


async def test_paced_deployments_pace_images_and_transcriptions() -> None:
    """A deployment with rpm/tpm goes through the pacing queue, which estimates tokens from the
    prompt (it used to know only chat and embedding requests)."""
    router = _router(Deployment("pics", Media("p"), "m", rpm=600, tpm=100_000))
    assert (await router.images(ImageRequest(model="pics", prompt="a cat"))).data
    router = _router(Deployment("stt", Media("s"), "m", rpm=600, tpm=100_000))
    assert (await router.transcribe(TranscriptionRequest(model="stt", file=b"x"))).text


async def test_adapters_without_the_operation_refuse_by_name(simulator: SimulatorServer) -> None:
    async with AsyncClient(simulator_config(simulator.url)) as client:
        with pytest.raises(errors.BadRequestError, match="no speech-to-text"):
            await client.transcribe("sim-gemini", wav(0.2))
        with pytest.raises(errors.BadRequestError, match="no image generation"):
            await client.images("sim-claude", "x")


def test_sync_sdk_images_and_transcribe_from_a_path(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    audio = tmp_path / "note.wav"
    audio.write_bytes(wav(1.5))
    with Client(simulator_config(simulator.url)) as client:
        images = client.images("sim-image", "A boat", n=2, size="1536x1024")
        assert len(images.data) == 2 and images.usage is not None
        assert images.deployment == "sim-image@sim-openai/gpt-image-2"
        words = client.transcribe("sim-transcribe", audio)
        assert words.text and words.usage is not None and words.duration == pytest.approx(1.5)
        with pytest.raises(errors.BadRequestError, match="prompt"):
            client.images("sim-image", "")


async def test_azure_deployments_serve_images_and_transcriptions(
    simulator: SimulatorServer,
) -> None:
    config = Config(
        providers={
            "az": ProviderConfig(
                type="azure", base_url=simulator.url, api_key=Secret("az-key", "azure")
            )
        },
        models=[
            DeploymentConfig(name="pics", provider="az", model="gpt-image-2"),
            DeploymentConfig(name="stt", provider="az", model="whisper-1"),
        ],
    )
    async with AsyncClient(config) as client:
        assert (await client.images("pics", "A kite")).data[0].b64_json
        text = await client.transcribe("stt", wav(0.5), response_format="text")
        assert text.text and text.duration == pytest.approx(0.5)
