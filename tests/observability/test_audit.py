"""``aiwire audit verify`` and ``aiwire audit list`` on SQLite and PostgreSQL, and every admin
action of a running gateway in the trail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import orjson
from sqlalchemy import text
from tests.observability.conftest import running
from typer.testing import CliRunner, Result

from aiwire.cli import app
from aiwire.config import simulator_config
from aiwire.simulator import SimulatorServer
from aiwire.store.budgets import BudgetStore
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore

runner = CliRunner()


async def _cli(*args: str) -> Result:
    # The CLI runs its own event loop: give it a thread of its own.
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_verify_names_the_first_edited_row(database: Database, db_url: str) -> None:
    keys = KeyStore(database)
    record, _ = await keys.create("app", actor="alice")
    await keys.update(record.id, actor="alice", changes={"rpm": 60})
    await keys.rotate(record.id, timedelta(hours=1), actor="bob")
    await BudgetStore(database).set("key", record.id, "day", 5.0, actor="bob")
    await keys.revoke(record.id, actor="carol")

    ok = await _cli("audit", "verify", "--store", db_url)
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 row(s)" in ok.output

    listed = await _cli("audit", "list", "--store", db_url, "--json")
    rows = orjson.loads(listed.output)
    assert [r["action"] for r in rows] == [
        "key.revoke",
        "budget.set",
        "key.rotate",
        "key.update",
        "key.create",
    ]
    assert rows[3]["changed"] == ["rpm"] and rows[3]["actor"] == "alice"
    only_keys = orjson.loads(
        (
            await _cli(
                "audit", "list", "--store", db_url, "--json", "--action", "key.", "--limit", "2"
            )
        ).output
    )
    assert [r["action"] for r in only_keys] == ["key.revoke", "key.rotate"]
    table = await _cli("audit", "list", "--store", db_url)
    assert "key.update" in table.output and "carol" in table.output

    # someone edits the second row in the database: the chain breaks there
    second = rows[3]["id"]
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": second}
        )
    broken = await _cli("audit", "verify", "--store", db_url)
    assert broken.exit_code == 1
    out = " ".join(broken.output.split())
    assert f"broken at row {second}" in out and "mallory key.update" in out
    assert "1 row(s) before it are intact" in out


async def test_a_deleted_row_breaks_the_chain_at_the_next(database: Database, db_url: str) -> None:
    keys = KeyStore(database)
    for name in ("a", "b", "c"):
        await keys.create(name, actor="alice")
    async with database.engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM audit_log ORDER BY id"))]
        await conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
    broken = await _cli("audit", "verify", "--store", db_url)
    assert broken.exit_code == 1
    assert f"broken at row {ids[2]}" in " ".join(broken.output.split())


def test_every_admin_action_of_the_gateway_is_audited(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    db = tmp_path / "aiwire.db"
    with running(simulator_config(simulator.url), db) as gw:
        key_id, _ = gw.key(name="audited")
        assert gw.admin.patch(f"/keys/{key_id}", json={"rpm": 100}).status_code == 200
        rotated = gw.admin.post(f"/keys/{key_id}/rotate", json={"grace": "1h"})
        assert rotated.status_code == 201, rotated.text
        new_id = rotated.json()["id"]
        assert gw.admin.post(f"/keys/{new_id}/revoke").status_code == 200
        budget = gw.admin.post(
            "/budgets",
            json={"scope": "team", "scope_id": "sales", "period": "month", "limit_usd": 10},
        )
        assert budget.status_code == 200, budget.text
        assert gw.admin.delete(f"/budgets/{budget.json()['id']}").status_code == 200
    store = f"sqlite:///{db}"
    rows = orjson.loads(runner.invoke(app, ["audit", "list", "--store", store, "--json"]).output)
    assert sorted(r["action"] for r in rows) == sorted(
        ["key.create", "key.update", "key.rotate", "key.revoke", "budget.set", "budget.delete"]
    )
    assert {r["actor"] for r in rows} == {"master"}
    ok = runner.invoke(app, ["audit", "verify", "--store", store])
    assert ok.exit_code == 0 and "intact: 6 row(s)" in ok.output
