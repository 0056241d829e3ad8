"""``aiwire models --prices``: catalog prices, limits and deprecations next to each deployment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aiwire import cli
from aiwire.config import SIMULATOR_MODELS

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A terminal wide enough that no cell wraps, so assertions can read whole values."""
    monkeypatch.setattr(cli.console, "width", 160)
    yield


def _write(path: Path, models: list[dict[str, Any]]) -> Path:
    providers = {
        "sim-openai": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"},
        "sim-anthropic": {"type": "anthropic", "base_url": "http://127.0.0.1:9"},
        "sim-gemini": {"type": "gemini", "base_url": "http://127.0.0.1:9"},
    }
    path.write_text(yaml.safe_dump({"providers": providers, "models": models}))
    return path


@pytest.fixture
def sim_config(tmp_path: Path) -> Path:
    """The simulator's deployments (config.SIMULATOR_MODELS) without starting it."""
    models = [{"name": n, "provider": p, "model": m} for n, p, m in SIMULATOR_MODELS]
    return _write(tmp_path / "sim.yaml", models)


@pytest.fixture
def mixed_config(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "mixed.yaml",
        [
            {"name": "old", "provider": "sim-openai", "model": "gpt-3.5-turbo-0125"},
            {"name": "mine", "provider": "sim-openai", "model": "my-finetune"},
            {"name": "fast", "provider": "sim-openai", "model": "gpt-4o-mini-2024-07-18"},
            {"name": "gem", "provider": "sim-gemini", "model": "gemini-2.5-pro"},
        ],
    )


def _json(args: list[str]) -> list[dict[str, Any]]:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_prices_table_for_the_simulator_models(sim_config: Path) -> None:
    result = runner.invoke(cli.app, ["models", "--prices", "-c", str(sim_config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Models and prices" in out and "catalog as of 2026-12-02" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if "sim-" in line}
    # name, upstream model, input, cached, output, context, max out
    assert lines["sim-claude"][1:] == ["claude-sonnet-4-5", "3.00", "0.30", "15.00", "200k", "64k"]
    assert lines["sim-gpt"][1:] == ["gpt-4o-mini", "0.15", "0.075", "0.60", "128k", "16.4k"]
    assert lines["sim-embed"][1:] == ["text-embedding-3-small", "0.02", "-", "-", "8.19k", "-"]
    assert "retired" not in out  # simulator entries never retire


def test_prices_json_has_exact_figures(sim_config: Path) -> None:
    rows = {r["name"]: r for r in _json(["models", "--prices", "--json", "-c", str(sim_config)])}
    assert set(rows) == {n for n, _, _ in SIMULATOR_MODELS}
    gpt = rows["sim-gpt"]
    assert gpt["model"] == "gpt-4o-mini" and gpt["catalog_id"] == "sim-gpt"
    assert (gpt["input_per_1m"], gpt["cached_input_per_1m"], gpt["output_per_1m"]) == (
        0.15,
        0.075,
        0.6,
    )
    assert (gpt["context_window"], gpt["max_output_tokens"]) == (128000, 16384)
    assert gpt["deprecation_date"] is None and gpt["retired"] is False


def test_deprecated_and_unknown_models(mixed_config: Path) -> None:
    result = runner.invoke(cli.app, ["models", "--prices", "-c", str(mixed_config)])
    assert result.exit_code == 0, result.output
    assert "retired 2026-10-23 → gpt-4.1-mini" in result.output
    assert "not in catalog" in result.output
    assert "1.05M" in result.output  # gemini-2.5-pro's window
    rows = {r["name"]: r for r in _json(["models", "--prices", "--json", "-c", str(mixed_config)])}
    assert rows["mine"]["catalog_id"] is None and rows["mine"]["input_per_1m"] is None
    assert rows["fast"]["catalog_id"] == "gpt-4o-mini"
    assert rows["old"]["deprecation_date"] == "2026-10-23" and rows["old"]["retired"] is True
    assert rows["gem"]["context_window"] == 1048576


def test_models_without_prices_is_unchanged(mixed_config: Path) -> None:
    result = runner.invoke(cli.app, ["models", "-c", str(mixed_config)])
    assert result.exit_code == 0, result.output
    assert "upstream model" in result.output and "weight" in result.output
    assert "input" not in result.output
    rows = _json(["models", "--json", "-c", str(mixed_config)])
    assert rows[0] == {
        "name": "old",
        "provider": "sim-openai",
        "type": "openai",
        "model": "gpt-3.5-turbo-0125",
        "weight": 1.0,
        "fallbacks": [],
    }


def test_help_shows_the_prices_example() -> None:
    result = runner.invoke(cli.app, ["models", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "--prices" in result.output
