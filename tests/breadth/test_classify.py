"""``Client.classify`` and ``aiwire classify``: by a chat model (JSON schema enum, re-asked when
invalid) and by embedding similarity (the local model)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import orjson
import pytest
from tests.breadth.conftest import require_local
from typer.testing import CliRunner

from aiwire import cli, errors
from aiwire.client import AsyncClient, Client
from aiwire.config import RouterConfig, simulator_config
from aiwire.providers.base import FEATURES, Capabilities, Provider, Support, Timeouts
from aiwire.providers.local import MODEL
from aiwire.providers.transport import Headers
from aiwire.router import Deployment, Router
from aiwire.simulator import SimulatorServer
from aiwire.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message

LABELS = ["complaint", "praise", "question"]


class Answers(Provider):
    """Answers chats from a list of texts, recording every request it got."""

    type = "answers"
    capabilities = Capabilities({k: Support.SUPPORTED for k in FEATURES})

    def __init__(self, answers: list[str]) -> None:
        super().__init__(name="answers")
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        self.requests.append(request)
        text = self.answers.pop(0)
        return ChatResponse(
            model=request.model,
            choices=[Choice(message=Message(role="assistant", content=text))],
        )

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError
        yield

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        return errors.ServerError("unused")


def _client(provider: Answers) -> AsyncClient:
    router = Router([Deployment("clf", provider, "m")], RouterConfig(retries=0))
    return AsyncClient(router=router)


async def test_the_chat_model_answers_under_an_enum_schema_and_an_invalid_answer_is_reasked() -> (
    None
):
    provider = Answers(['{"label": "spam"}', '{"label": "complaint"}'])
    async with _client(provider) as client:
        [result] = await client.classify("clf", "My order never arrived!", LABELS)
    assert result.label == "complaint" and result.method == "chat"
    first, second = provider.requests
    assert first.response_format is not None and first.response_format.json_schema is not None
    schema = first.response_format.json_schema.schema_ or {}
    assert schema["properties"]["label"]["enum"] == LABELS
    assert "complaint" in (first.messages[0].text or "")  # the labels are in the prompt
    assert "not valid" in second.messages[-1].text and "spam" in second.messages[-1].text


async def test_a_model_that_never_answers_validly_fails_clearly() -> None:
    provider = Answers(["complaint", '{"label": "other"}', '{"lable": "praise"}'])
    async with _client(provider) as client:
        with pytest.raises(errors.OutputValidationError) as info:
            await client.classify("clf", "hm", LABELS, retries=2)
    assert len(info.value.errors) == 3 and len(provider.requests) == 3


def test_chat_classification_against_the_simulator(simulator: SimulatorServer) -> None:
    texts = ["Where is my refund?", "Great service, thanks!", "Do you ship to Norway?"]
    labels = {"billing": "invoices, refunds, payments", "feedback": "opinions", "shipping": ""}
    with Client(simulator_config(simulator.url)) as client:
        for model in ("sim-gpt", "sim-claude", "sim-gemini"):
            results = client.classify(model, texts, labels)
            assert [r.text for r in results] == texts
            assert all(r.label in labels for r in results), model


async def test_labels_must_be_a_real_choice() -> None:
    async with _client(Answers([])) as client:
        with pytest.raises(errors.BadRequestError, match="at least two"):
            await client.classify("clf", "x", ["only"])
        with pytest.raises(errors.BadRequestError, match="repeat"):
            await client.classify("clf", "x", ["a", "a"])
        with pytest.raises(errors.BadRequestError, match="method"):
            await client.classify("clf", "x", ["a", "b"], method="vibes")  # type: ignore[arg-type]


async def test_classification_by_embedding_similarity_with_the_local_model(
    local_type: None,
) -> None:
    require_local()
    from aiwire.config import Config

    config = Config.from_dict(
        {
            "providers": {"local": {"type": "local"}},
            "models": [{"name": "local-embed", "provider": "local", "model": MODEL}],
        }
    )
    labels = {
        "billing": "a question about an invoice, a bill, a payment or a refund",
        "delivery": "a parcel or order that is late, lost or where it is being shipped",
        "account": "logging in, passwords and account settings",
    }
    texts = {
        "I was charged twice on my last invoice.": "billing",
        "My parcel has not arrived and tracking shows nothing.": "delivery",
        "I cannot log in, my password does not work.": "account",
    }
    async with AsyncClient(config) as client:
        results = await client.classify("local-embed", list(texts), labels, method="embeddings")
        assert {r.text: r.label for r in results} == texts
        for r in results:
            assert r.scores is not None and set(r.scores) == set(labels)
            assert r.score == max(r.scores.values())
        strict = await client.classify(
            "local-embed", ["Bananas are yellow."], labels, method="embeddings", min_score=0.5
        )
    assert strict[0].label is None and strict[0].score is not None and strict[0].score < 0.5


def test_cli_classifies_arguments_and_stdin_lines() -> None:
    runner = CliRunner()
    args = ["classify", "-m", "sim-gpt", "-l", "complaint,praise", "-l", "question", "--simulator"]
    result = runner.invoke(cli.app, [*args, "Refund now!", "Love it", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in rows] == ["Refund now!", "Love it"]
    assert all(r["label"] in LABELS and r["method"] == "chat" for r in rows)
    piped = runner.invoke(cli.app, args, input="first ticket\n\nsecond ticket\n")
    assert piped.exit_code == 0, piped.output
    assert "first ticket" in piped.output and "second ticket" in piped.output


def test_cli_refuses_a_single_label() -> None:
    result = CliRunner().invoke(cli.app, ["classify", "x", "-m", "sim-gpt", "-l", "only"])
    assert result.exit_code != 0 and "at least two labels" in result.output


def test_answers_round_trip_as_json() -> None:
    provider = Answers([orjson.dumps({"label": "praise"}).decode()])
    with Client(router=Router([Deployment("clf", provider, "m")])) as client:
        [result] = client.classify("clf", ["Lovely"], LABELS)
    assert result.model_dump(exclude_none=True) == {
        "text": "Lovely",
        "label": "praise",
        "method": "chat",
    }
