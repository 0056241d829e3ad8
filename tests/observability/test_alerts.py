"""Alert rules, end to end into a local webhook receiver, and at their exact thresholds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from tests.observability.conftest import MASTER, running, webhook_receiver

from aiwire import errors
from aiwire.config import Config, DeploymentConfig, simulator_config
from aiwire.observability.alerts import Alerts, AlertsConfig
from aiwire.observability.directory import KeyDirectory, KeyInfo
from aiwire.observability.rules import install_rules
from aiwire.router import AttemptEvent, Router
from aiwire.simulator import SimulatorConfig, SimulatorServer
from aiwire.store.writer import RequestLogRow
from aiwire.types import Usage

GPT = "sim-gpt@sim-openai/gpt-4o-mini"
CLAUDE = "sim-claude@sim-anthropic/claude-sonnet-4-5"


def _with_fault_header(config: Config, providers: tuple[str, ...], fault: str) -> Config:
    """Every request to ``providers`` carries the simulator's fault header."""
    changed = {
        name: p.model_copy(update={"headers": {**p.headers, "x-aiwire-sim-fault": fault}})
        if name in providers
        else p
        for name, p in config.providers.items()
    }
    return config.model_copy(update={"providers": changed})


async def _burst(url: str, model: str, n: int) -> list[int]:
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {MASTER}"}
    async with httpx.AsyncClient(timeout=20) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
                for _ in range(n)
            )
        )
    return [a.status_code for a in answers]


def test_a_provider_401_fires_one_credential_alert_per_deployment(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    with webhook_receiver() as hook:
        base = simulator_config(simulator.url, retries=1, backoff_base=0.01)
        config = _with_fault_header(base, ("sim-openai", "sim-anthropic"), "401")
        config = config.model_copy(update={"alerts": hook.alerts(dedupe_seconds=60)})
        with running(config, tmp_path / "aiwire.db") as gw:
            statuses = asyncio.run(_burst(gw.url, "sim-gpt", 12))
            statuses += asyncio.run(_burst(gw.url, "sim-claude", 12))
            assert 200 not in statuses
            assert set(asyncio.run(_burst(gw.url, "sim-gemini", 3))) == {200}
            alerts = hook.wait_for("provider_credential", 2)
            time.sleep(0.3)  # anything more would have arrived by now
            alerts = hook.kinds("provider_credential")
    assert sorted(a["key"] for a in alerts) == [CLAUDE, GPT]
    by_dep = {a["key"]: a for a in alerts}
    gpt = by_dep[GPT]
    assert gpt["details"]["provider"] == "sim-openai" and gpt["details"]["status"] == 401
    assert "sim-openai" in gpt["text"] and GPT in gpt["text"]
    assert "providers.sim-openai.api_key" in gpt["text"]
    assert by_dep[CLAUDE]["details"]["provider"] == "sim-anthropic"
    assert "sim-key" not in str(alerts)  # the provider key's value is never in an alert


def test_a_deployment_failing_past_the_threshold_fires_one_error_rate_alert(
    tmp_path: Path,
) -> None:
    with (
        SimulatorServer(SimulatorConfig(faults={"broken-model": "503"})) as sim,
        webhook_receiver() as hook,
    ):
        base = simulator_config(sim.url, retries=0, cooldown_failures=50)
        models = [
            *base.models,
            DeploymentConfig(name="broken", provider="sim-openai", model="broken-model"),
        ]
        config = base.model_copy(
            update={
                "models": models,
                "alerts": hook.alerts(
                    rules={
                        "error_rate": {"threshold": 0.5, "min_attempts": 3, "window_seconds": 60}
                    },
                ),
            }
        )
        with running(Config.model_validate(config.model_dump()), tmp_path / "aiwire.db") as gw:
            assert asyncio.run(_burst(gw.url, "broken", 2)) == [503, 503]
            time.sleep(0.3)
            assert hook.kinds("deployment_error_rate") == []  # 2 attempts: below min_attempts
            for _ in range(4):
                asyncio.run(_burst(gw.url, "broken", 1))
            alerts = hook.wait_for("deployment_error_rate", 1)
            time.sleep(0.3)
            alerts = hook.kinds("deployment_error_rate")
    assert len(alerts) == 1
    assert alerts[0]["key"] == "broken@sim-openai/broken-model"
    assert alerts[0]["details"]["attempts"] == 3 and alerts[0]["details"]["rate"] == 1.0


class FlatPricing:
    IN, OUT = 1e-6, 2e-6

    def cost(self, model: str, usage: Usage) -> float | None:
        return usage.prompt_tokens * self.IN + usage.completion_tokens * self.OUT

    def max_cost(self, model: str, input_tokens: int, max_output: int) -> float | None:
        return input_tokens * self.IN + max_output * self.OUT

    def max_output(self, model: str) -> int | None:
        return 100


def test_a_budget_alerts_once_when_spend_passes_its_soft_limit(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    with webhook_receiver() as hook:
        config = simulator_config(simulator.url).model_copy(
            update={"alerts": hook.alerts(hook={"format": "json"})}
        )
        with running(config, tmp_path / "aiwire.db", pricing=FlatPricing()) as gw:
            _, probe = gw.key(name="probe")
            usage = gw.chat(probe).json()["usage"]
            one = (
                usage["prompt_tokens"] * FlatPricing.IN
                + usage["completion_tokens"] * FlatPricing.OUT
            )
            key_id, key = gw.key(name="spender")
            r = gw.admin.post(
                "/budgets",
                json={
                    "scope": "key",
                    "scope_id": key_id,
                    "period": "day",
                    "limit_usd": 1.0,
                    "soft_usd": 2.5 * one,
                },
            )
            assert r.status_code == 200, r.text
            for expected in (0, 0, 1, 1, 1):  # spend: 1x, 2x (under 2.5x), then 3x and more
                assert gw.chat(key).status_code == 200
                if expected:
                    hook.wait_for("budget_soft_limit", 1)
                else:
                    time.sleep(0.2)
                assert len(hook.kinds("budget_soft_limit")) == expected
    (alert,) = hook.kinds("budget_soft_limit")
    assert alert["details"]["budget"]["scope_id"] == key_id
    assert alert["details"]["spent_usd"] >= 2.5 * one


# -- the rules at their thresholds, on a fake clock -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rules(clock: Clock, **rules: Any) -> tuple[Alerts, list[Any]]:
    alerts = Alerts(AlertsConfig(rules=rules, dedupe_seconds=3600))
    router = Router([])
    observers: list[Any] = []
    directory = KeyDirectory(None)
    directory.add(KeyInfo("key_1", "billing-app"))
    install_rules(alerts, router, observers, directory, clock=clock)
    return alerts, [router, observers]


def _event(dep: str, error: errors.ProviderError | None) -> AttemptEvent:
    return AttemptEvent("m", dep, 1, error, 0.0, False)


async def test_error_rate_fires_exactly_at_its_threshold_and_forgets_old_attempts() -> None:
    clock = Clock()
    alerts, (router, _) = _rules(
        clock, error_rate={"threshold": 0.5, "min_attempts": 4, "window_seconds": 60}
    )
    fail = errors.ServerError("boom", provider="p")

    def emit(error: errors.ProviderError | None) -> None:
        for fn in router.on_attempt:
            fn(_event("d", error))

    for error in (None, None, None, None, fail, fail, fail):  # 3 of 7 failed: below 50 %
        emit(error)
    emit(errors.BadRequestError("your fault", provider="p"))  # says nothing about "d"
    emit(errors.RateLimitError("our own pacing queue"))  # no provider: not counted
    await asyncio.sleep(0)
    assert alerts.fired == []
    emit(fail)  # 4 of 8: the threshold
    await asyncio.sleep(0)
    assert [a["kind"] for a in alerts.fired] == ["deployment_error_rate"]
    assert alerts.fired[0]["details"]["failures"] == 4

    # A minute later the old attempts are gone: 3 failures of 3 is below min_attempts (4)
    clock.now += 61
    alerts.config.dedupe_seconds = 0
    for _ in range(3):
        emit(fail)
    await asyncio.sleep(0)
    assert len(alerts.fired) == 1


async def test_only_a_providers_own_401_or_403_is_a_credential_alert() -> None:
    clock = Clock()
    alerts, (router, _) = _rules(clock)
    for error in (
        errors.AuthenticationError("no key", code="missing_api_key"),  # our own auth, not upstream
        errors.ServerError("boom", provider="p"),
    ):
        for fn in router.on_attempt:
            fn(_event("d", error))
    await asyncio.sleep(0)
    assert alerts.fired == []
    for error in (
        errors.PermissionDeniedError("denied", provider="p", status=403),
        errors.PermissionDeniedError("denied", provider="p", status=403),
    ):
        for fn in router.on_attempt:
            fn(_event("d", error))
    await asyncio.sleep(0)
    assert [a["kind"] for a in alerts.fired] == ["provider_credential"]
    assert alerts.fired[0]["details"]["status"] == 403


async def test_spend_anomaly_fires_at_n_times_the_trailing_average() -> None:
    clock = Clock()
    alerts, (_, observers) = _rules(
        clock,
        spend_anomaly={"factor": 3, "bucket_seconds": 60, "trailing_buckets": 3, "min_usd": 1.0},
        error_rate={"enabled": False},
    )

    def spend(usd: float) -> None:
        row = RequestLogRow("r", "m", "/v1/chat/completions", 200, key_id="key_1", cost_usd=usd)
        for fn in observers:
            fn(row)

    for _ in range(3):  # three buckets of $1
        spend(1.0)
        clock.now += 60
    spend(2.0)
    spend(0.9)  # $2.90 against an average of $1: under 3x
    await asyncio.sleep(0)
    assert alerts.fired == []
    spend(0.1)  # $3.00: 3x
    await asyncio.sleep(0)
    scopes = sorted(a["key"] for a in alerts.fired)
    assert scopes == ["all", "key:key_1"]
    per_key = next(a for a in alerts.fired if a["key"] == "key:key_1")
    assert "billing-app" in per_key["text"] and per_key["details"]["trailing_average_usd"] == 1.0
