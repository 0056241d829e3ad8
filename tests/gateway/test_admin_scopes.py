"""Admin-scoped keys: a key created with ``scopes: ["admin"]`` may call the admin API (every
route), an ordinary key may not (403 saying so, on every route), the master key always may; only
the master key hands out admin rights; scopes survive option changes and rotation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.gateway.conftest import MASTER

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer


@dataclass
class Running:
    url: str
    db_file: Path

    def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = MASTER
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(
            method, f"{self.url}/admin{path}", json=body, headers=headers, timeout=10
        )

    def create(self, *, key: str = MASTER, **body: Any) -> dict[str, Any]:
        resp = self.call("POST", "/keys", {"name": "k", **body}, key=key)
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data


@pytest.fixture(scope="module")
def gw(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    db_file = tmp_path_factory.mktemp("scopes") / "aiwire.db"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0),
        store_url=f"sqlite:///{db_file}",
        master_key=Secret(MASTER),
        auth_ttl=0.2,
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield Running(server.url, db_file)


@pytest.fixture(scope="module")
def admin(gw: Running) -> dict[str, Any]:
    return gw.create(name="console", scopes=["admin"])


def every_route(gw: Running) -> list[tuple[str, str]]:
    """Each operation of the spec, with placeholder ids."""
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        concrete = (
            path.removeprefix("/admin").replace("{key_id}", "key_x").replace("{budget_id}", "bud_x")
        )
        routes += [(method.upper(), concrete) for method in operations]
    assert len(routes) >= 10
    return routes


def test_the_scope_is_shown_on_its_own(admin: dict[str, Any]) -> None:
    assert admin["scopes"] == ["admin"]
    assert "scopes" not in admin["options"]
    assert admin["key"].startswith("aiw-")


def test_an_admin_scoped_key_may_call_every_route(gw: Running, admin: dict[str, Any]) -> None:
    for method, path in every_route(gw):
        resp = gw.call(method, path, {} if method in ("POST", "PATCH") else None, key=admin["key"])
        # Placeholders give 404 (unknown ids) or 400 (empty bodies); never 401/403.
        assert resp.status_code not in (401, 403), (method, path, resp.text)
    made = gw.create(key=admin["key"], name="made-by-console", models=["sim-gpt"])
    assert made["scopes"] == []
    listed = gw.call("GET", "/keys", key=admin["key"]).json()["data"]
    assert made["id"] in {k["id"] for k in listed}


def test_an_ordinary_key_is_refused_on_every_route(gw: Running) -> None:
    plain = gw.create(name="app")
    for method, path in every_route(gw):
        resp = gw.call(method, path, {}, key=plain["key"])
        assert resp.status_code == 403, (method, path)
        error = resp.json()["error"]
        assert error["code"] == "master_key_required" and "'app'" in error["message"]
        assert 'scopes ["admin"]' in error["message"]  # says what would work
    unknown = gw.call("GET", "/nope", key=plain["key"])  # routes are not revealed to it
    assert unknown.status_code == 403


def test_only_the_master_key_hands_out_admin_rights(gw: Running, admin: dict[str, Any]) -> None:
    console = admin["key"]
    refused = gw.call("POST", "/keys", {"name": "x", "scopes": ["admin"]}, key=console)
    assert (
        refused.status_code == 403 and "only the master key" in refused.json()["error"]["message"]
    )
    plain = gw.create(key=console, name="plain")
    grant = gw.call("PATCH", f"/keys/{plain['id']}", {"scopes": ["admin"]}, key=console)
    assert grant.status_code == 403
    rotate = gw.call("POST", f"/keys/{admin['id']}/rotate", key=console)
    assert rotate.status_code == 403
    # The master key may do all three.
    granted = gw.call("PATCH", f"/keys/{plain['id']}", {"scopes": ["admin"]})
    assert granted.status_code == 200 and granted.json()["scopes"] == ["admin"]
    assert gw.call("GET", "/keys", key=plain["key"]).status_code == 200
    # An admin-scoped key may take the scope away (that hands out nothing).
    dropped = gw.call("PATCH", f"/keys/{plain['id']}", {"scopes": []}, key=console)
    assert dropped.status_code == 200 and dropped.json()["scopes"] == []
    assert gw.call("GET", "/keys", key=plain["key"]).status_code == 403  # at once (forget())


def test_scopes_survive_option_changes_and_rotation(gw: Running) -> None:
    key = gw.create(name="console-2", scopes=["admin"], options={"cache": False})
    changed = gw.call("PATCH", f"/keys/{key['id']}", {"options": {"log_content": True}})
    assert changed.status_code == 200
    assert changed.json()["options"] == {"log_content": True}
    assert changed.json()["scopes"] == ["admin"]
    rotated = gw.call("POST", f"/keys/{key['id']}/rotate", {"grace": 0})
    assert rotated.status_code == 201 and rotated.json()["scopes"] == ["admin"]
    assert gw.call("GET", "/keys", key=rotated.json()["key"]).status_code == 200
    assert gw.call("GET", "/keys", key=key["key"]).status_code == 401  # the old one: gone
    sneaky = gw.call("PATCH", f"/keys/{key['id']}", {"options": {"scopes": ["admin"]}})
    assert sneaky.status_code == 400 and sneaky.json()["error"]["param"] == "options"


def test_null_lists_mean_none(gw: Running) -> None:
    key = gw.create(name="nulls", models=None, endpoints=None, scopes=None)
    assert (key["models"], key["endpoints"], key["scopes"]) == ([], [], [])


@pytest.mark.parametrize("scopes", [["root"], "admin", [1]])
def test_unknown_scopes_are_400(gw: Running, scopes: Any) -> None:
    resp = gw.call("POST", "/keys", {"name": "x", "scopes": scopes})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "scopes"


def test_revoking_an_admin_key_ends_its_access(gw: Running) -> None:
    key = gw.create(name="temp-console", scopes=["admin"])
    assert gw.call("GET", "/keys", key=key["key"]).status_code == 200
    assert gw.call("POST", f"/keys/{key['id']}/revoke").status_code == 200
    assert gw.call("GET", "/keys", key=key["key"]).status_code == 401


def test_admin_keys_are_audited_under_their_own_id(gw: Running, admin: dict[str, Any]) -> None:
    made = gw.create(key=admin["key"], name="audited-by-console")
    budget = {"scope": "key", "scope_id": made["id"], "limit_usd": 5}
    set_ = gw.call("POST", "/budgets", budget, key=admin["key"])
    assert set_.status_code == 200
    with sqlite3.connect(gw.db_file) as db:
        rows = db.execute(
            "SELECT actor, action FROM audit_log WHERE target IN (?, ?) ORDER BY id",
            (made["id"], set_.json()["id"]),
        ).fetchall()
    assert rows == [(admin["id"], "key.create"), (admin["id"], "budget.set")]
