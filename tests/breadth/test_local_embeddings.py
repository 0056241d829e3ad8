"""The ``local`` provider: real sentence embeddings, offline, from the model inside a PyPI wheel
(extra ``aiwire[local]``), served on ``/v1/embeddings`` by the gateway."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tests.breadth.conftest import MASTER, breadth_config, require_local

from aiwire import errors
from aiwire.config import DeploymentConfig, ProviderConfig
from aiwire.providers.base import Timeouts
from aiwire.providers.local import (
    DIMENSIONS,
    MODEL,
    LocalEmbeddingProvider,
    encoder,
    vocab_path,
)
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer
from aiwire.types import EmbeddingRequest

#: Each sentence, then its paraphrase; every other sentence is unrelated to both.
PARAPHRASES = [
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("What time does the store open tomorrow?", "When do you open your shop tomorrow morning?"),
    ("The invoice I received has the wrong amount.", "My bill shows an incorrect total."),
    ("Can I cancel my subscription online?", "Is it possible to end my membership on the website?"),
    (
        "The train to Oslo is delayed by twenty minutes.",
        "Our Oslo train will arrive 20 minutes late.",
    ),
    ("Please send me a copy of the contract.", "Could you email me the agreement document?"),
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
    ("How much does shipping to Germany cost?", "What is the delivery fee for orders to Germany?"),
]


@pytest.fixture(autouse=True)
def _local(local_type: None) -> None:
    require_local()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test (the model must not download)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


async def test_paraphrases_rank_above_unrelated_sentences_offline(no_network: None) -> None:
    encoder.cache_clear()  # load the model here, with the network refused
    provider = LocalEmbeddingProvider(name="local")
    texts = [t for pair in PARAPHRASES for t in pair]
    resp = await provider.embed(EmbeddingRequest(model=MODEL, input=texts), Timeouts())
    vectors = resp.vectors
    assert len(vectors) == len(texts) and all(len(v) == DIMENSIONS for v in vectors)
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-5) for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-4) for v in vectors)
    for i in range(len(PARAPHRASES)):
        a, b = 2 * i, 2 * i + 1
        for x, y in ((a, b), (b, a)):
            paraphrase = cosine(vectors[x], vectors[y])
            unrelated = max(
                cosine(vectors[x], vectors[j]) for j in range(len(texts)) if j not in (a, b)
            )
            assert paraphrase > unrelated, (texts[x], texts[y], paraphrase, unrelated)
    assert resp.usage.prompt_tokens > len(texts)  # real token counts, [CLS]/[SEP] included


async def test_the_same_text_gives_the_same_vector_whatever_its_batch() -> None:
    provider = LocalEmbeddingProvider(name="local", options={"batch_size": 2})
    one = await provider.embed(EmbeddingRequest(model=MODEL, input="Quarterly report"), Timeouts())
    many = await provider.embed(
        EmbeddingRequest(
            model=MODEL, input=["a much longer text than the other one", "Quarterly report", "x"]
        ),
        Timeouts(),
    )
    assert many.vectors[1] == pytest.approx(one.vectors[0], abs=1e-5)


async def test_what_the_local_model_cannot_do_is_refused() -> None:
    provider = LocalEmbeddingProvider(name="local")
    with pytest.raises(errors.BadRequestError, match="serves only"):
        await provider.embed(
            EmbeddingRequest(model="text-embedding-3-small", input="x"), Timeouts()
        )
    with pytest.raises(errors.BadRequestError, match="384"):
        await provider.embed(EmbeddingRequest(model=MODEL, input="x", dimensions=256), Timeouts())


def test_the_shipped_vocabulary_is_checked() -> None:
    assert vocab_path().name == "bert-base-uncased-vocab.txt"
    lines = Path(vocab_path()).read_text("utf-8").splitlines()
    assert len(lines) == 30522 and lines[101] == "[CLS]" and lines[102] == "[SEP]"


@pytest.fixture(scope="module")
def local_gateway(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory, local_type: None
) -> Iterator[str]:
    require_local()
    config = breadth_config(
        simulator.url,
        providers={"local": ProviderConfig(type="local")},
        models=[DeploymentConfig(name="local-embed", provider="local", model=MODEL)],
    )
    db = tmp_path_factory.mktemp("local") / "aiwire.db"
    parts = build_gateway(config, store_url=f"sqlite:///{db}", master_key=Secret(MASTER))
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield server.url


def test_gateway_serves_the_local_model_on_v1_embeddings(local_gateway: str) -> None:
    client = openai.OpenAI(base_url=f"{local_gateway}/v1", api_key=MASTER, max_retries=0)
    texts = [PARAPHRASES[0][0], PARAPHRASES[0][1], PARAPHRASES[6][0]]
    floats = client.embeddings.create(model="local-embed", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="local-embed", input=texts)  # base64, the SDK default
    vectors = [d.embedding for d in floats.data]
    assert floats.model == MODEL and len(vectors[0]) == DIMENSIONS
    assert packed.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    with pytest.raises(openai.BadRequestError, match="embeddings only"):
        client.chat.completions.create(
            model="local-embed", messages=[{"role": "user", "content": "hi"}]
        )
