"""``aiwire flow`` and ``aiwire review``: every command works on the store, has an example in its
help, and reports problems as one readable line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.flows.flow_support import read_jsonl, write_flow
from typer.testing import CliRunner

from aiwire.cli import app

FLOW = """\
name: cli-demo
source: {kind: jsonl, path: in.jsonl}
key: id
vars: {suffix: "!"}
steps:
  - {kind: transform, fields: {when: {date: {from: "%d/%m/%Y"}}}}
  - {kind: transform, id: greet, fields: {greeting: {expr: "'Hello ' + name + vars.suffix"}}}
  - {kind: review, editable: [greeting]}
sinks: [{kind: jsonl, path: out.jsonl, fields: [id, greeting, when]}]
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIWIRE_CONFIG", raising=False)
    monkeypatch.setenv("AIWIRE_STORE", f"sqlite:///{tmp_path}/state.db")
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result

    return invoke


def data(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "command",
    [
        ["flow", "run"], ["flow", "replay"], ["flow", "dlq"], ["flow", "runs"], ["flow", "check"],
        ["flow", "status"], ["flow", "serve"], ["review", "list"], ["review", "show"],
        ["review", "approve"], ["review", "edit"], ["review", "reject"], ["review", "stats"],
    ],
)  # fmt: skip
def test_every_command_has_an_example(cli: Any, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output


def test_check_points_at_file_line_and_field(cli: Any, tmp_path: Path) -> None:
    path = write_flow(tmp_path, "name: x\nsource:\n  kind: csv\nsinks: [{kind: jsonl, path: o}]\n")
    result = cli("flow", "check", str(path))
    assert result.exit_code == 1
    assert f"{path}:3: source.path: Field required" in result.output
    good = write_flow(tmp_path, FLOW, "good.yaml")
    ok = cli("flow", "check", str(good))
    assert ok.exit_code == 0 and "ok cli-demo: 3 steps, 1 sinks" in ok.output


def test_run_review_and_inspect(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        '{"id": "a", "name": "Ada", "when": "01/02/2024"}\n'
        '{"id": "b", "name": "Bo", "when": "02/02/2024"}\n'
        '{"id": "c", "name": "Cy", "when": "03/02/2024"}\n'
        '{"id": "d", "name": "Di", "when": "2024-02-04"}\n'
    )
    path = write_flow(tmp_path, FLOW)
    first = data(cli("flow", "run", str(path), "--var", 'suffix="?"', "--json"))
    assert first["counts"] == {
        "read": 4,
        "new": 4,
        "already_known": 0,
        "waiting_review": 3,
        "dead": 1,
    }
    assert first["status"] == "partial"

    listed = data(cli("review", "list", "--flow", "cli-demo", "--json"))
    assert listed["total"] == 3
    ids = {r["record"]: r["id"] for r in listed["data"]}
    shown = cli("review", "show", ids["a"])
    assert shown.exit_code == 0 and "Hello Ada?" in shown.output and '"name": "Ada"' in shown.output

    approved = data(
        cli(
            "review",
            "approve",
            ids["a"],
            "--reviewer",
            "ana",
            "--run",
            "--var",
            'suffix="?"',
            "--json",
        )
    )
    assert approved["status"] == "approved" and approved["record_state"] == "done"
    edited = cli("review", "edit", ids["b"], "--set", "greeting=Dear Bo", "--reviewer", "ben")
    assert edited.exit_code == 0 and "edited by ben" in edited.output
    refused = cli("review", "edit", ids["c"], "--set", "name=Zed")
    assert refused.exit_code == 1 and "'name' is not editable" in refused.output
    assert cli("review", "reject", ids["c"], "--reason", "duplicate lead").exit_code == 0
    again = cli("review", "approve", ids["c"])
    assert again.exit_code == 1 and "already rejected" in again.output

    second = data(cli("flow", "run", "cli-demo", "--json"))  # by name: the registered path
    assert second["counts"].get("done") == 1  # b, after its edit
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"id": "a", "greeting": "Hello Ada?", "when": "2024-02-01"},
        {"id": "b", "greeting": "Dear Bo", "when": "2024-02-02"},
    ]

    stats = data(cli("review", "stats", "--json"))["cli-demo"]
    assert (stats["approved"], stats["edited"], stats["rejected"]) == (1, 1, 1)
    table = cli("review", "stats")
    assert table.exit_code == 0 and "67%" in table.output

    dlq = data(cli("flow", "dlq", "cli-demo", "--json"))
    assert (
        len(dlq) == 1 and dlq[0]["record"] == "d" and "does not match %d/%m/%Y" in dlq[0]["error"]
    )
    replay = data(cli("flow", "replay", "cli-demo", "--dlq", "--json"))
    assert replay["counts"] == {"dead": 1}  # the input is still bad: back in the queue
    (again_dead,) = data(cli("flow", "dlq", "cli-demo", "--json"))
    assert again_dead["id"] != dlq[0]["id"]
    history = data(cli("flow", "dlq", "cli-demo", "--all", "--json"))
    assert {d["status"] for d in history} == {"open", "replayed"}
    assert cli("flow", "replay", "cli-demo").exit_code == 1  # says what to replay

    runs = data(cli("flow", "runs", "cli-demo", "--json"))
    assert [r["trigger"] for r in runs][-1] == "manual" and len(runs) >= 3
    one = cli("flow", "runs", "cli-demo", "--run", runs[-1]["id"])
    assert one.exit_code == 0 and "greet" in one.output and "avg ms" in one.output
    status = data(cli("flow", "status", "cli-demo", "--json"))
    assert status["records"] == {"done": 2, "rejected": 1, "dead": 1}
    assert status["dead_letters_open"] == 1

    discarded = cli("flow", "dlq", "cli-demo", "--discard", again_dead["id"])
    assert discarded.exit_code == 0
    assert data(cli("flow", "dlq", "cli-demo", "--json")) == []


def test_unknown_flow_and_bad_var(cli: Any, tmp_path: Path) -> None:
    missing = cli("flow", "run", "nope")
    assert missing.exit_code == 1 and "no flow named 'nope'" in missing.output
    path = write_flow(tmp_path, FLOW)
    bad = cli("flow", "run", str(path), "--var", "other=1")
    assert bad.exit_code == 1 and "--var other: not declared under vars:" in bad.output
