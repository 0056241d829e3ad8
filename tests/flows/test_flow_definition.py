"""The flow file: validation with file, line and field; ids, branch targets, secrets, schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.flows.flow_support import Lead, write_flow

from aiwire.flows.loader import FlowError, flow_from_dict, load_flow

EXAMPLES = Path(__file__).parents[2] / "examples"


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(FlowError) as info:
        load_flow(write_flow(tmp_path, text))
    return info.value.message


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
name: demo
source:
  kind: csv
steps:
  - kind: transform
    fields:
      email: [trim, lowr]
      created: {date: {from: "%d/%m/%Y", to_tz: UTC}}
  - kind: mapp
sinks:
  - {kind: jsonl, path: out.jsonl}
""",
    )
    where = str(tmp_path / "flow.yaml")
    assert f"{where}:3: source.path: Field required" in message
    assert f"{where}:7: steps[0].fields.email: unknown transform 'lowr'" in message
    assert (
        f"{where}:8: steps[0].fields.created: date: to_tz needs an input format with a time"
        in message
    )
    assert f"{where}:9: steps[1]: Input tag 'mapp'" in message


def test_semantic_problems_have_lines_too(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
name: demo
source: {kind: csv, path: x.csv}
secrets: {TOKEN: env:TOKEN}
steps:
  - kind: branch
    cases:
      - when: "score > 1"
        goto: nowhere
  - {kind: prompt, id: ask, template: "key {{ secrets.TOKEN }}"}
  - {kind: model, model: m, schema: {type: objekt}}
sinks:
  - kind: http
    url: "http://127.0.0.1/x"
    headers: {Authorization: "Bearer {{ secrets.OTHER }}"}
""",
    )
    lines = message.splitlines()[1:]
    assert any(":8: steps[0].cases[0].goto: goto 'nowhere' is not a step id" in x for x in lines)
    assert any(":9: steps[1].template: secrets may appear only in headers" in x for x in lines)
    assert any(":10: steps[2].schema: not a valid JSON schema" in x for x in lines)
    assert any(
        ":14: sinks[0].headers.Authorization: secret 'OTHER' is not declared" in x for x in lines
    )


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("secrets: {TOKEN: sk-literal-123}", "secrets: a literal secret in a flow file is refused"),
        ('schedule: "61 * * * *"', "schedule: minute: '61' is outside 0-59"),
        ("timezone: Mars/Olympus", "timezone: unknown time zone"),
        ("name: Bad Name", "name: a flow name is lower-case"),
    ],
)
def test_top_level_fields_are_checked(tmp_path: Path, fragment: str, expected: str) -> None:
    base = {"name": "name: demo"}
    key = fragment.split(":")[0]
    lines = [fragment if key == "name" else base["name"], "source: {kind: csv, path: x.csv}"]
    if key != "name":
        lines.append(fragment)
    lines.append("sinks: [{kind: jsonl, path: o.jsonl}]")
    assert expected in error_of(tmp_path, "\n".join(lines) + "\n")


def test_goto_must_point_forward_and_ids_are_unique(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
name: demo
source: {kind: csv, path: x.csv}
steps:
  - {kind: prompt, id: p, template: "hi"}
  - kind: branch
    cases: [{when: "true", goto: p}]
  - {kind: prompt, id: p, template: "again"}
sinks: [{kind: jsonl, path: o.jsonl}]
""",
    )
    assert "steps[1].cases[0].goto: goto 'p' must name a later step" in message
    assert "steps[2].id: id 'p' is used twice" in message


def test_unsafe_expressions_and_bad_templates_fail_at_load(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
name: demo
source: {kind: csv, path: x.csv}
steps:
  - {kind: filter, keep: "__import__('os').system('true')"}
  - {kind: filter, keep: "x.__class__"}
  - {kind: prompt, template: "{{ unclosed"}
sinks: [{kind: jsonl, path: o.jsonl}]
""",
    )
    assert "steps[0].keep: invalid expression" in message  # method 'system' / '__import__'
    assert "method 'system' is not allowed" in message
    assert (
        "steps[1].keep: invalid expression" in message and "'__class__' is not allowed" in message
    )
    assert "steps[2].template: template syntax error" in message


def test_database_url_with_a_password_is_refused(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
name: demo
source: {kind: sql, url: "postgresql://u:hunter2@db/x", query: "select 1"}
sinks: [{kind: jsonl, path: o.jsonl}]
""",
    )
    assert "source.url: a database URL with a password in a flow file is refused" in message
    assert "hunter2" not in message


def test_schemas_from_file_and_pydantic_model(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "answer.json").write_text('{"type": "object", "required": ["a"]}')
    flow = load_flow(
        write_flow(
            tmp_path,
            """\
name: demo
source: {kind: csv, path: x.csv}
steps:
  - {kind: model, id: a, model: m, schema: "file:schemas/answer.json"}
  - {kind: model, id: b, model: m, schema: "tests.flows.flow_support:Lead"}
  - {kind: classify, id: c, model: m, input: text, labels: [x, y]}
sinks: [{kind: jsonl, path: o.jsonl}]
""",
        )
    )
    assert flow.schemas["a"] == {"type": "object", "required": ["a"]}
    assert flow.schemas["b"] is Lead
    assert flow.schemas["c"]["properties"]["label"]["enum"] == ["x", "y"]
    assert flow.steps()[0][0] == "a"


def test_step_ids_default_to_kind_numbered_when_repeated() -> None:
    flow = flow_from_dict(
        {
            "name": "demo",
            "source": {"kind": "csv", "path": "x.csv"},
            "steps": [
                {"kind": "prompt", "template": "a"},
                {"kind": "prompt", "template": "b"},
                {"kind": "prompt", "id": "prompt_3", "template": "c"},
                {"kind": "prompt", "template": "d"},
            ],
            "sinks": [{"kind": "jsonl", "path": "o.jsonl"}, {"kind": "jsonl", "path": "p.jsonl"}],
        }
    )
    assert [sid for sid, _ in flow.steps()] == ["prompt", "prompt_2", "prompt_3", "prompt_4"]
    assert flow.spec.sink_ids() == ["jsonl", "jsonl_2"]


@pytest.mark.parametrize("example", ["lead-followup", "support-triage", "meeting-debrief"])
def test_the_examples_are_valid(example: str) -> None:
    flow = load_flow(EXAMPLES / example / "flow.yaml")
    assert flow.name == example
