"""``aiwire batch`` as a user runs it: run (and resume), CSV templates, estimate, and the
gateway commands (submit, list, status, cancel)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tests.batch.conftest import MASTER, Running, chat_lines, jsonl, read_jsonl
from typer.testing import CliRunner

from aiwire.cli import app
from aiwire.simulator import SimulatorServer

runner = CliRunner()


@pytest.fixture
def config(simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIWIRE_TEST_SIM_KEY", "sim-key")
    path = tmp_path / "aiwire.yaml"
    path.write_text(
        f"""
providers:
  claude: {{type: anthropic, base_url: "{simulator.url}", api_key: env:AIWIRE_TEST_SIM_KEY}}
  gpt: {{type: openai, base_url: "{simulator.url}/v1", api_key: env:AIWIRE_TEST_SIM_KEY}}
models:
  - {{name: sim-claude, provider: claude, model: claude-sonnet-4-5}}
  - {{name: sim-gpt, provider: gpt, model: gpt-4o-mini}}
router: {{retries: 0}}
"""
    )
    return path


def _admitted(simulator: SimulatorServer, model: str = "claude-sonnet-4-5") -> int:
    return simulator.app.sim.limiter.counts[(model, "admitted")]


def test_run_writes_the_answers_and_running_it_again_sends_nothing(
    config: Path, tmp_path: Path, simulator: SimulatorServer
) -> None:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(jsonl(chat_lines(12)))
    before = _admitted(simulator)
    args = ["batch", "run", str(source), "-o", str(output), "-c", str(config), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = orjson.loads(first.stdout)
    assert report["resumed"] is False and report["errors"] is None
    assert report["batch"]["status"] == "completed"
    assert report["state"] == str(tmp_path / "out.jsonl.state.db")
    answers = read_jsonl(output.read_bytes())
    assert sorted(a["custom_id"] for a in answers) == sorted(f"req-{i}" for i in range(12))
    assert _admitted(simulator) - before == 12
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.stdout)["resumed"] is True
    assert _admitted(simulator) - before == 12  # nothing sent twice
    assert read_jsonl(output.read_bytes()) == answers
    # another model is another run (in the same state file)
    other = runner.invoke(app, [*args, "--model", "sim-gpt"])
    assert orjson.loads(other.stdout)["resumed"] is False
    assert _admitted(simulator, "gpt-4o-mini") >= 12


def test_run_reports_failed_lines_in_the_errors_file(config: Path, tmp_path: Path) -> None:
    items = chat_lines(3, "sim-gpt")
    items[2]["body"]["temperature"] = 2.5  # refused upstream
    source, output = tmp_path / "in.jsonl", tmp_path / "answers.jsonl"
    source.write_bytes(jsonl(items))
    result = runner.invoke(app, ["batch", "run", str(source), "-o", str(output), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 succeeded, 1 failed" in result.stdout
    assert "Failed lines: " in result.stdout
    (failed,) = read_jsonl((tmp_path / "answers.errors.jsonl").read_bytes())
    assert failed["custom_id"] == "req-2" and failed["response"]["status_code"] == 400
    assert len(read_jsonl(output.read_bytes())) == 2


def test_run_refuses_an_invalid_file_listing_its_lines_and_sends_nothing(
    config: Path, tmp_path: Path, simulator: SimulatorServer
) -> None:
    items = chat_lines(2)
    items[1]["custom_id"] = "req-0"
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(items) + b"{oops\n")
    before = _admitted(simulator)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", "run", str(source), "-o", str(out), "-c", str(config)])
    assert result.exit_code == 1
    assert "line 2: custom_id 'req-0' is used more than once" in result.stderr
    assert "line 3: this line is not valid JSON" in result.stderr
    assert "2 invalid line(s) in the input" in result.stderr
    assert _admitted(simulator) == before and not out.exists()


def test_run_takes_csv_with_a_prompt_template(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "tickets.csv"
    source.write_text("id,text\nT1,printer on fire\nT2,cannot log in\n")
    output = tmp_path / "labels.jsonl"
    args = ["batch", "run", str(source), "-o", str(output), "-c", str(config), "-m", "sim-gpt"]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1 and "give --template" in missing.stderr
    result = runner.invoke(app, [*args, "-t", "Label this ticket: {text}", "--max-tokens", "40"])
    assert result.exit_code == 0, result.output
    answers = {a["custom_id"]: a for a in read_jsonl(output.read_bytes())}
    assert set(answers) == {"T1", "T2"}
    text = answers["T1"]["response"]["body"]["choices"][0]["message"]["content"]
    assert text.startswith("Simulated reply to: Label this ticket: printer on fire")
    bad = runner.invoke(app, [*args, "-t", "Label: {body}"])
    assert bad.exit_code == 1 and "its columns: id, text" in bad.stderr


def test_estimate_counts_and_prices_before_sending(
    config: Path, tmp_path: Path, simulator: SimulatorServer
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(chat_lines(10, "sim-gpt", max_tokens=50)))
    before = _admitted(simulator, "gpt-4o-mini")
    result = runner.invoke(app, ["batch", "estimate", str(source), "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["lines"] == 10 and data["input_tokens_exact"] is True
    assert data["max_output_tokens"] == 500 and data["input_tokens"] > 10 * 5
    # gpt-4o-mini: $0.15 in and $0.60 out per million tokens
    assert data["input_usd"] == pytest.approx(data["input_tokens"] * 0.15e-6)
    assert data["max_usd"] == pytest.approx(data["input_usd"] + 500 * 0.6e-6)
    assert data["native_max_usd"] == pytest.approx(data["max_usd"] / 2)
    assert _admitted(simulator, "gpt-4o-mini") == before
    table = runner.invoke(app, ["batch", "estimate", str(source), "-c", str(config)])
    assert "input tokens (exact)" in table.stdout and "native mode (50 %)" in table.stdout


def test_submit_list_status_and_cancel_against_a_gateway(gw: Running, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(chat_lines(3)))
    common = ["--url", gw.url, "--key", MASTER]
    submitted = runner.invoke(app, ["batch", "submit", str(source), *common, "--json"])
    assert submitted.exit_code == 0, submitted.output
    batch_id = orjson.loads(submitted.stdout)["id"]
    gw.wait(batch_id, ("completed",))
    status = runner.invoke(app, ["batch", "status", batch_id, *common])
    assert status.exit_code == 0, status.output
    assert f"{batch_id}: completed, 3/3 done, 0 failed" in status.stdout
    listed = runner.invoke(app, ["batch", "list", *common, "--json"])
    assert batch_id in [b["id"] for b in orjson.loads(listed.stdout)]
    cancel = runner.invoke(app, ["batch", "cancel", batch_id, *common])
    assert cancel.exit_code == 1
    assert "400: Cannot cancel a batch with status 'completed'" in cancel.stderr
    nokey = runner.invoke(app, ["batch", "list", "--url", gw.url], env={"AIWIRE_API_KEY": ""})
    assert nokey.exit_code == 1 and "no key" in nokey.stderr
    invalid = tmp_path / "bad.jsonl"
    invalid.write_bytes(b"{}\n")
    failed = runner.invoke(app, ["batch", "submit", str(invalid), *common])
    assert failed.exit_code == 1 and "missing_custom_id" in failed.stderr


@pytest.mark.parametrize("command", [["batch", "run"], ["batch", "estimate"], ["worker"]])
def test_every_command_explains_itself_with_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Example: aiwire" in result.stdout
