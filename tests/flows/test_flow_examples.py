"""Each example end to end, offline against the simulator: the destination received the expected,
schema-valid records, exactly once."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from rich.console import Console

EXAMPLES = Path(__file__).parents[2] / "examples"


def load(example: str) -> ModuleType:
    path = EXAMPLES / example / "run.py"
    spec = importlib.util.spec_from_file_location(f"example_{example.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema(example: str, name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / example / "schemas" / name).read_text())


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_lead_followup(tmp_path: Path) -> None:
    result = load("lead-followup").main(tmp_path / "run", quiet())
    activities = {a["lead_id"]: a for a in result["activities"]}
    # L-1003 was rejected by its rep, L-1006 has no email (filtered): nothing for them.
    assert sorted(activities) == ["L-1001", "L-1002", "L-1004", "L-1005"]
    assert result["crm_requests"] == 4  # one request per activity: nothing sent twice
    validator = jsonschema.Draft202012Validator(schema("lead-followup", "crm_activity.json"))
    for activity in result["activities"]:
        body = {k: v for k, v in activity.items() if k != "id"}
        assert list(validator.iter_errors(body)) == []
    draft_schema = jsonschema.Draft202012Validator(schema("lead-followup", "draft.json"))
    assert draft_schema.is_valid(
        {"subject": activities["L-1001"]["subject"], "body": "x", "next_step": "y"}
    )
    # mapping and transforms: lower-cased emails, ISO dates, deals converted to EUR
    assert activities["L-1001"]["to"] == "maria.okafor@brightwater.example"
    assert activities["L-1001"]["lead_created_on"] == "2025-02-03"
    assert activities["L-1001"]["deal_eur"] == 56160.0  # 48.000,00 GBP x 1.17
    assert activities["L-1004"]["deal_eur"] == 9108.0  # 9.900,00 USD x 0.92
    assert activities["L-1002"]["deal_eur"] == 120500.0
    # the reps' decisions
    assert activities["L-1002"]["subject"] == "Fjord Timber x Northwind: ERP integration next steps"
    assert activities["L-1002"]["review"] == {"decision": "edited", "reviewer": "a.moreau"}
    assert activities["L-1001"]["review"] == {"decision": "approved", "reviewer": "j.silva"}
    assert result["states"] == {"done": 4, "filtered": 1, "rejected": 1}
    assert result["stats"]["acceptance_rate"] == 0.8 and result["dead_letters"] == 0
    again = result["runs"][2]
    assert again.counts == {"read": 6, "new": 0, "already_known": 6}


def test_support_triage(tmp_path: Path) -> None:
    result = load("support-triage").main(tmp_path / "run", quiet())
    assert (
        result["accepted"] == 8 and result["duplicate"] == "duplicate" and result["forged"] == 401
    )
    log = {entry["message_id"]: entry for entry in result["log"]}
    assert sorted(log) == [f"m-00{i}" for i in range(1, 9)]  # every message logged once
    assert len(result["log"]) == 8
    for entry in log.values():
        needs_person = entry["sensitive"] or entry["category"] == "refund"
        assert (entry["route"] == "auto") is not needs_person
        assert (entry["message_id"] in result["queued"]) is needs_person
    assert log["m-002"]["category"] == "refund" and log["m-002"]["route"] == "edited"
    assert log["m-007"]["route"] == "rejected" and log["m-007"]["sent_by"] == "agent.kim"
    # the helpdesk timestamp (Berlin, winter) became UTC
    assert log["m-001"]["received_at"] == "2025-03-03T08:15:00+00:00"

    replies = {r["message_id"]: r for r in result["replies"]}
    assert len(replies) == len(result["replies"])  # at most one reply per message
    assert sorted(replies) == sorted(m for m, e in log.items() if e["route"] != "rejected")
    validator = jsonschema.Draft202012Validator(schema("support-triage", "helpdesk_reply.json"))
    for reply in result["replies"]:
        body = {k: v for k, v in reply.items() if k not in ("id", "ticket_id")}
        assert list(validator.iter_errors(body)) == []
    assert replies["m-002"]["body"].startswith("Sorry about the cracked jug, Jonas.")
    assert replies["m-002"]["sent_by"] == "agent.kim"
    assert replies["m-003"]["ticket_id"] == "T-4103"
    auto = [m for m, e in log.items() if e["route"] == "auto"]
    assert auto and all(replies[m]["sent_by"] == "auto" for m in auto)
    human = result["stats"]["human_decisions"]
    assert human == len(result["queued"]) and result["stats"]["rejected"] == 1


def test_meeting_debrief(tmp_path: Path) -> None:
    result = load("meeting-debrief").main(tmp_path / "run", quiet())
    notes = {n["meeting_id"]: n for n in result["notes"]}
    assert sorted(notes) == ["mtg-2025-031", "mtg-2025-032", "mtg-2025-033"]
    validator = jsonschema.Draft202012Validator(schema("meeting-debrief", "crm_note.json"))
    for note in result["notes"]:
        body = {k: v for k, v in note.items() if k not in ("id", "account_id")}
        assert list(validator.iter_errors(body)) == []
    assert notes["mtg-2025-031"]["account_id"] == "ACC-2201"
    assert notes["mtg-2025-031"]["date"] == "2025-03-07"
    assert notes["mtg-2025-031"]["attendees"] == [
        "elena.petrova@harbourline.example",
        "marcus.lee@harbourline.example",
        "ruth.abebe@northwind.example",
    ]
    # the long notes were split and summarised in parts; the short ones went through whole
    assert result["chunk"]["parts"] >= 2
    assert result["summary"].steps["chunk"]["calls"] == result["chunk"]["parts"] + 1  # + reduce
    assert result["states"] == {"done": 3}
    assert result["again"].counts == {"read": 3, "new": 0, "already_known": 3}
    drafts = result["drafts"]
    assert sorted(drafts) == ["mtg-2025-031.eml", "mtg-2025-032.eml", "mtg-2025-033.eml"]
    first = drafts["mtg-2025-031.eml"]
    assert first["From"] == "sam.ortiz@northwind.example" and first["X-Unsent"] == "1"
    assert "marcus.lee@harbourline.example" in first["To"]
    body = first.get_payload(decode=True).decode()
    assert "Action items:" in body


@pytest.mark.parametrize("example", ["lead-followup", "support-triage", "meeting-debrief"])
def test_readme_names_one_command(example: str) -> None:
    readme = (EXAMPLES / example / "README.md").read_text()
    assert f"python examples/{example}/run.py" in readme


@pytest.mark.parametrize("example", ["lead-followup", "support-triage", "meeting-debrief"])
def test_docs_show_the_examples_as_they_are(example: str) -> None:
    docs = (EXAMPLES.parent / "docs" / "flows.md").read_text()
    assert (EXAMPLES / example / "flow.yaml").read_text() in docs
