"""Canary rollouts: the config, the split (random and sticky), failing open, per-variant metrics
and ``aiwire models --rollout``."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.breadth.conftest import registered
from typer.testing import CliRunner

from aiwire import cli, errors
from aiwire.config import Config
from aiwire.providers.base import FEATURES, Capabilities, Provider, Support, Timeouts
from aiwire.providers.transport import Headers
from aiwire.rollouts import Rollout, bucket, caller
from aiwire.rollouts.metrics import RolloutMetrics, from_usage, variants_of
from aiwire.router import Router
from aiwire.store import Database, RequestLog
from aiwire.store.usage import usage_report
from aiwire.store.writer import RequestLogRow
from aiwire.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message


class Echo(Provider):
    """Answers every chat at once with its own name (type ``rollout-echo``)."""

    type = "rollout-echo"
    capabilities = Capabilities({k: Support.SUPPORTED for k in FEATURES})

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        if self.options.get("fail"):
            raise errors.ServerError("down", provider=self.name)
        message = Message(role="assistant", content=self.name)
        return ChatResponse(model=request.model, choices=[Choice(message=message)])

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError
        yield

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        return errors.ServerError("unused")


@pytest.fixture(autouse=True)
def _echo_type() -> Iterator[None]:
    with registered(Echo):
        yield


def config(
    split: dict[str, float] | None = None, sticky: str | None = None, **extra: Any
) -> dict[str, Any]:
    old: dict[str, Any] = {
        "name": "support",
        "provider": "old",
        "model": "model-a",
        "variant": "old",
        "rollout": split or {"new": 10, "old": 90},
    }
    if sticky:
        old["sticky"] = sticky
    return {
        "providers": {
            "old": {"type": "rollout-echo"},
            "new": {"type": "rollout-echo", "options": extra.get("new_options", {})},
        },
        "models": [
            {"name": "support", "provider": "new", "model": "model-b", "variant": "new"},
            old,
        ],
        "router": {"retries": 0, "cooldown_failures": 1},
    }


def ask(user: str | None = None) -> ChatRequest:
    return ChatRequest(model="support", messages=[Message(role="user", content="hi")], user=user)


async def served(router: Router, requests: list[ChatRequest]) -> Counter[str]:
    answers = await asyncio.gather(*(router.chat(r) for r in requests))
    return Counter(a.text for a in answers)


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: c["models"][0].pop("variant"), "needs every deployment labelled"),
        (lambda c: c["models"][0].update(variant="canary"), "this one has 'canary'"),
        (lambda c: c["models"][1].update(rollout={"new": 10, "old": 80}), "add up to 90"),
        (lambda c: c["models"][1].update(rollout={"new": 10, "old": 80, "x": 10}), "variant 'x'"),
        (lambda c: c["models"][0].update(rollout={"new": 50, "old": 50}), "differs"),
        (lambda c: c["models"][1].pop("rollout"), "no entry of 'support' has a rollout"),
    ],
)
def test_inconsistent_rollouts_are_refused_naming_the_entry(change: Any, fragment: str) -> None:
    data = config()
    change(data)
    with pytest.raises(errors.ConfigError, match=fragment):
        Config.from_dict(data)


def test_the_rollout_reaches_the_router() -> None:
    router = Router.from_config(Config.from_dict(config(sticky="key")))
    rollout = router.rollouts["support"]
    assert dict(rollout.split) == {"new": 10, "old": 90} and rollout.sticky == "key"
    assert sorted(d.variant or "" for d in router.deployments("support")) == ["new", "old"]


# --- the split ----------------------------------------------------------------------------------


async def test_a_10_90_rollout_sends_10_percent_of_5000_requests_to_the_canary() -> None:
    router = Router.from_config(Config.from_dict(config()))
    router._rng = random.Random(20261202)  # reproducible; any seed stays well within +-2 %
    counts = await served(router, [ask() for _ in range(5000)])
    assert set(counts) == {"new", "old"}
    assert abs(counts["new"] / 5000 - 0.10) <= 0.02, counts


async def test_sticky_by_user_keeps_each_user_on_one_variant_and_splits_users() -> None:
    router = Router.from_config(Config.from_dict(config(sticky="user")))
    for user in ("ann", "bob", "cid"):
        assert len(await served(router, [ask(user) for _ in range(30)])) == 1
    counts = await served(router, [ask(f"user-{i}") for i in range(5000)])
    assert abs(counts["new"] / 5000 - 0.10) <= 0.02, counts


async def test_sticky_by_key_uses_the_caller_the_gateway_sets() -> None:
    router = Router.from_config(Config.from_dict(config(sticky="key")))
    seen: dict[str, set[str]] = {}
    for key in (f"key-{i}" for i in range(40)):
        with caller(key):
            seen[key] = set(await served(router, [ask() for _ in range(10)]))
    assert all(len(v) == 1 for v in seen.values())
    expected = {k: "new" if bucket("support", k) < 10 else "old" for k in seen}
    assert {k: next(iter(v)) for k, v in seen.items()} == expected


def test_raising_the_canary_share_keeps_the_callers_it_had() -> None:
    small = Rollout("m", {"new": 10, "old": 90}, "user")
    large = Rollout("m", {"new": 25, "old": 75}, "user")
    users = [f"u{i}" for i in range(2000)]
    before = {u for u in users if small.choose(u) == "new"}
    after = {u for u in users if large.choose(u) == "new"}
    assert before and before < after


async def test_a_broken_canary_fails_open_to_the_other_variant() -> None:
    data = config({"new": 50, "old": 50}, new_options={"fail": True})
    data["router"]["retries"] = 1
    router = Router.from_config(Config.from_dict(data))
    router._rng = random.Random(3)
    counts = await served(router, [ask() for _ in range(40)])
    # The first canary failure opens its circuit (cooldown_failures: 1); its retry and every
    # later request of the canary's half are served by the old variant.
    assert counts == Counter({"old": 40})


# --- metrics ------------------------------------------------------------------------------------


def test_live_metrics_per_variant_with_review_acceptance() -> None:
    router = Router.from_config(Config.from_dict(config()))
    metrics = RolloutMetrics(router)
    ids = {v: d for d, (_, v) in variants_of(router).items()}
    for i in range(90):
        metrics.observe(
            RequestLogRow(
                request_id=f"o{i}",
                model="support",
                endpoint="/v1/chat/completions",
                status=200,
                deployment=ids["old"],
                latency_ms=100.0 + i,
                cost_usd=0.001,
            )
        )
    for i in range(10):
        metrics.record(ids["new"], latency_ms=50.0 + i, ok=i != 0, cost_usd=0.002)
    metrics.review(ids["new"], accepted=True)
    metrics.review(ids["new"], accepted=False)
    metrics.review(ids["old"], accepted=True)
    metrics.review("elsewhere@x/y", accepted=True)  # not in a rollout: ignored
    report = {s.variant: s for s in metrics.report()}
    new, old = report["new"], report["old"]
    assert (new.requests, new.errors, new.observed_share) == (10, 1, 10.0)
    assert new.error_rate == pytest.approx(0.1) and old.error_rate == 0
    assert new.p50_latency_ms == 54.0 and old.p95_latency_ms == 185.0
    assert new.cost_per_request == pytest.approx(0.002) and old.cost_usd == pytest.approx(0.09)
    assert new.acceptance == 0.5 and old.acceptance == 1.0


async def _seed_log(store_url: str, ids: dict[str, str]) -> None:
    database = Database(store_url)
    await database.migrate()
    now = datetime.now(UTC) - timedelta(minutes=5)
    rows = []
    for i in range(100):
        variant = "new" if i % 10 == 0 else "old"
        rows.append(
            RequestLog(
                request_id=f"r{i}",
                ts=now,
                endpoint="/v1/chat/completions",
                model="support",
                provider=variant,
                deployment=ids[variant],
                status=500 if (variant == "new" and i == 0) else 200,
                input_tokens=10,
                output_tokens=5,
                cached_tokens=0,
                latency_ms=80.0 if variant == "new" else 120.0,
                retries=0,
                fallback=False,
                stream=False,
                cost_usd=0.003 if variant == "new" else 0.001,
                cache_hit=False,
            )
        )
    async with database.session() as session:
        session.add_all(rows)
    await database.aclose()


def test_models_rollout_shows_each_variant_from_the_request_log(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'aiwire.db'}"
    data = {**config(), "server": {"store": store}}
    path = tmp_path / "aiwire.yaml"
    path.write_text(yaml.safe_dump(data))
    router = Router.from_config(Config.from_dict(data))
    ids = {v: d for d, (_, v) in variants_of(router).items()}
    asyncio.run(_seed_log(store, ids))

    runner = CliRunner()
    result = runner.invoke(cli.app, ["models", "--rollout", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in json.loads(result.output)}
    assert rows["new"]["split"] == 10 and rows["new"]["requests"] == 10
    assert rows["new"]["observed_share"] == 10.0 and rows["new"]["error_rate"] == 0.1
    assert rows["new"]["p50_latency_ms"] == 80.0 and rows["old"]["p95_latency_ms"] == 120.0
    assert rows["old"]["cost_usd"] == pytest.approx(0.09)
    assert rows["new"]["deployments"] == [ids["new"]]

    table = runner.invoke(cli.app, ["models", "--rollout", "-c", str(path)])
    assert table.exit_code == 0, table.output
    assert "Rollout of support" in table.output and "Promote" in table.output
    lines = [line.split() for line in table.output.splitlines() if line.strip()]
    new_line = next(cols for cols in lines if cols[0] == "new")
    assert new_line[1:6] == ["10%", "10.0%", "10", "10.0%", "80"]


def test_models_rollout_without_a_log_shows_the_split(tmp_path: Path) -> None:
    path = tmp_path / "aiwire.yaml"
    path.write_text(yaml.safe_dump({**config(), "server": {"store": f"sqlite:///{tmp_path}/x.db"}}))
    result = CliRunner().invoke(cli.app, ["models", "--rollout", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "no request log yet" in result.output and "90%" in result.output


async def test_from_usage_weights_latency_of_a_variant_with_two_deployments(
    tmp_path: Path,
) -> None:
    data = config()
    data["models"].append(
        {"name": "support", "provider": "old", "model": "model-c", "variant": "old"}
    )
    router = Router.from_config(Config.from_dict(data))
    variants = variants_of(router)
    store = f"sqlite:///{tmp_path / 'log.db'}"
    database = Database(store)
    await database.migrate()
    old_ids = sorted(d for d, (_, v) in variants.items() if v == "old")
    async with database.session() as session:
        for i in range(4):
            session.add(
                RequestLog(
                    request_id=f"w{i}",
                    ts=datetime.now(UTC),
                    endpoint="/v1/chat/completions",
                    model="support",
                    deployment=old_ids[0] if i < 3 else old_ids[1],
                    status=200,
                    input_tokens=1,
                    output_tokens=1,
                    cached_tokens=0,
                    latency_ms=100.0 if i < 3 else 200.0,
                    retries=0,
                    fallback=False,
                    stream=False,
                    cost_usd=0.0,
                    cache_hit=False,
                )
            )
    rows = await usage_report(database, ["model", "deployment"], datetime.now(UTC) - timedelta(1))
    await database.aclose()
    stats = {s.variant: s for s in from_usage(router.rollouts, variants, rows)}
    assert stats["old"].requests == 4 and len(stats["old"].deployments) == 2
    assert stats["old"].p50_latency_ms == pytest.approx(125.0)  # (3*100 + 200) / 4
    assert stats["new"].requests == 0 and stats["new"].observed_share == 0.0
