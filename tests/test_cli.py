"""The CLI and the shipped examples, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiwire.cli import app
from aiwire.config import Config

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_demo_runs_offline_and_shows_every_part() -> None:
    result = runner.invoke(app, ["demo", "--fast"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # Rich wraps lines at the terminal's width
    for part in (
        "One request format",
        "Streaming",
        "Tool calls",
        "Structured extraction",
        "A 429, retried",
        "A fallback",
        "Embeddings",
        "The gateway",
        "Cost control",
        "Cache and privacy",
        "Batch",
        "Flows",
        "Operations",
        "Usage report",
    ):
        assert part in out
    assert "get_weather" in out and "Oslo" in out and "Paris" in out
    assert "RateLimitError" in out and "after waiting 1.00s: ok" in out
    assert "answered by sim-claude@" in out
    assert "anna.berg@northwind.test" in out
    assert "OpenAI protocol → Claude model: 200" in out
    assert "Anthropic protocol → GPT model: 200" in out
    assert "out of scope (sim-gemini): 403" in out
    assert "a client choosing the upstream: 400" in out
    assert "key limited to 2 requests/minute: 200, 200, 429" in out
    assert "budget exceeded" in out
    assert "x-aiwire-cache miss then hit" in out
    assert "<EMAIL_1>" in out and "anna.berg@northwind.test or" not in out
    # batch: 40 lines for a Claude model through OpenAI's batch format
    assert "completed: 40/40 lines" in out
    # flows: a signed webhook, a forged one refused, review decisions reach the destination
    assert "3 signed refund requests accepted; a forged one: 401" in out
    assert "R-1 (19 EUR) went out at once; R-2, R-3 wait for review" in out
    assert "R-1 (19 EUR, sent by auto)" in out and "R-3 (95 EUR, sent by maria)" in out
    assert "Refund of 240 EUR approved" in out
    assert "aiwire_requests_total" in out
    assert "signed in with an HttpOnly session cookie" in out
    assert "a change without the CSRF token: 403" in out
    assert "hash chain intact: True" in out and "intact False, first bad row 2" in out
    assert "request log holds 49 rows" in out


def test_chat_streams_with_the_simulator() -> None:
    result = runner.invoke(app, ["chat", "hello there", "-m", "sim-gemini", "--simulator"])
    assert result.exit_code == 0, result.output
    assert "Simulated reply to: hello there" in result.output


def test_chat_error_is_one_clear_line_not_a_traceback() -> None:
    result = runner.invoke(app, ["chat", "hi", "-m", "no-such-model", "--simulator"])
    assert result.exit_code == 1
    assert "model 'no-such-model' is not configured" in result.output
    assert "Traceback" not in result.output


def test_models_lists_deployments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "--simulator"])
    assert result.exit_code == 0, result.output
    assert "sim-claude" in result.output and "anthropic" in result.output


def test_bad_config_file_is_reported_with_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("providers:\n  p: {type: openai, api_key: sk-literal-key-here}\n")
    result = runner.invoke(app, ["models", "-c", str(cfg)])
    assert result.exit_code == 1
    assert f"{cfg}:2" in result.output and "literal key" in result.output


def test_capabilities_markdown_matches_docs() -> None:
    result = runner.invoke(app, ["capabilities", "--markdown"])
    assert result.exit_code == 0
    assert result.output == (ROOT / "docs" / "capabilities.md").read_text()


def _commands() -> list[str]:
    """Every command of the CLI, found by walking its groups (so a new one cannot be missed)."""
    import typer.main

    out: list[str] = []

    def walk(cmd: object, path: list[str]) -> None:
        subcommands = getattr(cmd, "commands", None)
        if isinstance(subcommands, dict):
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        else:
            out.append(" ".join(path))

    walk(typer.main.get_command(app), [])
    return sorted(out)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_example_config_is_valid() -> None:
    cfg = Config.from_file(ROOT / "examples" / "aiwire.yaml")
    assert {m.name for m in cfg.models} >= {"fast", "smart", "flash"}


def test_quickstart_example_runs_offline() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "sim-claude:" in result.stdout and "stream:" in result.stdout
    assert "ola@example.no" in result.stdout
    assert "refused: seed (BadRequestError)" in result.stdout
