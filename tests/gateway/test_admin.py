"""The admin API and ``aiwire keys`` against a running gateway on SQLite.

Keys made through the API work for model calls within their scopes; revocation, rotation and
expiry take effect; only the master key administers; every action is audited as ``master``; and
no secret (virtual keys or the master key) reaches the database or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from tests.gateway.conftest import MASTER
from typer.testing import CliRunner

from aiwire import errors
from aiwire.cli_keys import keys_app
from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.admin import parse_duration
from aiwire.server.auth import Authenticator
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorServer
from aiwire.store.db import Database
from aiwire.store.keys import KeyStore

AUTH_TTL = 0.2
runner = CliRunner()
#: Every virtual-key secret this module sees, for the final no-secret-anywhere scan.
SEEN: list[str] = []


@dataclass
class AdminGateway:
    url: str
    db_file: Path
    store_url: str
    logs: list[str]


class _Capture(logging.Handler):
    """Every log record of the module's run, formatted (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def gw(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdminGateway]:
    db_file = tmp_path_factory.mktemp("admin") / "aiwire.db"
    store_url = f"sqlite:///{db_file}"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0, backoff_base=0.01),
        store_url=store_url,
        master_key=Secret(MASTER),
        auth_ttl=AUTH_TTL,
    )
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with BackgroundServer(parts.gateway, lifespan="on") as server:
            yield AdminGateway(server.url, db_file, store_url, capture.lines)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


# -- helpers ------------------------------------------------------------------------------------


def call(
    gw: AdminGateway, method: str, path: str, body: Any = None, *, key: str | None = MASTER
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    content = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.request(method, gw.url + path, content=content, headers=headers, timeout=10)


def create(gw: AdminGateway, **body: Any) -> dict[str, Any]:
    resp = call(gw, "POST", "/admin/keys", {"name": "app", **body})
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    data: dict[str, Any] = resp.json()
    SEEN.append(data["key"])
    return data


def chat(gw: AdminGateway, secret: str, model: str = "sim-gpt") -> str:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0)
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    return resp.choices[0].message.content or ""


def error(resp: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


# -- parse_duration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("3600", timedelta(hours=1)),
        (" 1.5H ", timedelta(minutes=90)),
        (60, timedelta(minutes=1)),
        (0.5, timedelta(milliseconds=500)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration(text: str | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["30x", "d", "", "-5", "1h30m", -1, True, "99999999w", 1e400])
def test_parse_duration_refuses_with_a_clear_error(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|negative|100 years"):
        parse_duration(bad)


# -- who may call -------------------------------------------------------------------------------


def test_no_key_is_401_and_says_to_send_the_master_key(gw: AdminGateway) -> None:
    resp = call(gw, "GET", "/admin/keys", key=None)
    assert resp.status_code == 401
    body = error(resp)
    assert body["type"] == "authentication_error" and body["code"] == "missing_api_key"
    assert "master key" in body["message"] and "Authorization: Bearer" in body["message"]


def test_wrong_master_key_is_401(gw: AdminGateway) -> None:
    resp = call(gw, "GET", "/admin/keys", key=MASTER + "x")
    assert resp.status_code == 401
    assert "invalid master key" in error(resp)["message"]
    assert MASTER not in resp.text


def test_virtual_key_may_not_administer(gw: AdminGateway) -> None:
    secret = create(gw, name="not-admin")["key"]
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys")]:
        resp = call(gw, method, path, {"name": "x"} if method == "POST" else None, key=secret)
        assert resp.status_code == 403
        body = error(resp)
        assert body["type"] == "permission_error" and body["code"] == "master_key_required"
        assert "needs the master key" in body["message"] and "'not-admin'" in body["message"]


def test_unknown_route_and_method(gw: AdminGateway) -> None:
    assert call(gw, "GET", "/admin/nope").status_code == 404
    resp = call(gw, "DELETE", "/admin/keys")
    assert resp.status_code == 405 and "GET or POST" in error(resp)["message"]
    # Routes are not revealed to callers without the master key.
    assert call(gw, "GET", "/admin/nope", key=None).status_code == 401


# -- create, scopes, list, get ------------------------------------------------------------------


def test_created_key_works_within_its_scope(gw: AdminGateway) -> None:
    data = create(gw, name="app1", models=["sim-gpt"], metadata={"owner": "ana"}, team="t1")
    secret = data["key"]
    assert secret.startswith("aiw-") and len(secret) == 44
    assert data["key_prefix"] == secret[:12] and data["models"] == ["sim-gpt"]
    assert data["team"] == "t1" and data["metadata"] == {"owner": "ana"}
    assert data["id"].startswith("key_") and "key_hash" not in data

    assert "Simulated reply" in chat(gw, secret)
    with pytest.raises(openai.PermissionDeniedError) as info:
        chat(gw, secret, "sim-claude")
    assert "sim-claude" in info.value.message and "Ask an admin" in info.value.message

    listed = call(gw, "GET", "/admin/keys").json()
    assert listed["object"] == "list"
    assert [r for r in listed["data"] if r["id"] == data["id"]] == [
        {k: v for k, v in data.items() if k != "key"}
    ]
    got = call(gw, "GET", f"/admin/keys/{data['id']}")
    assert got.status_code == 200 and got.json()["name"] == "app1"
    for resp in (call(gw, "GET", "/admin/keys"), got):
        assert secret not in resp.text and "key_hash" not in resp.text


def test_endpoint_scope(gw: AdminGateway) -> None:
    secret = create(gw, name="embed-only", endpoints=["/v1/embeddings"])["key"]
    with pytest.raises(openai.PermissionDeniedError, match="/v1/chat/completions"):
        chat(gw, secret)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0)
    assert client.embeddings.create(model="sim-embed", input="hi").data


def test_unknown_id_is_404(gw: AdminGateway) -> None:
    for method, path in [
        ("GET", "/admin/keys/key_nope"),
        ("POST", "/admin/keys/key_nope/revoke"),
        ("POST", "/admin/keys/key_nope/rotate"),
    ]:
        resp = call(gw, method, path)
        assert resp.status_code == 404, path
        body = error(resp)
        assert body["code"] == "unknown_key" and "key_nope" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": 3}, "name"),
        ({"name": "x", "models": "sim-gpt"}, "models"),
        ({"name": "x", "models": ["sim-gpt", ""]}, "models"),
        ({"name": "x", "models": ["sim-gtp"]}, "models"),
        ({"name": "x", "endpoints": ["/v1/nope"]}, "endpoints"),
        ({"name": "x", "expires_in": "30x"}, "expires_in"),
        ({"name": "x", "expires_in": 0}, "expires_in"),
        ({"name": "x", "expires_in": "-1h"}, "expires_in"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_in": "1h", "expires_at": "2030-01-01T00:00:00Z"}, "expires_in"),
        ({"name": "x", "team": 5}, "team"),
        ({"name": "x", "metadata": [1]}, "metadata"),
        ({"name": "x", "model": "sim-gpt"}, "model"),
    ],
)
def test_bad_create_body_is_400_naming_the_field(
    gw: AdminGateway, body: dict[str, Any], field: str
) -> None:
    resp = call(gw, "POST", "/admin/keys", body)
    assert resp.status_code == 400, resp.text
    err = error(resp)
    assert err["param"] == field and f"'{field}'" in err["message"]
    assert err["type"] == "invalid_request_error"


def test_bad_json_and_bad_grace_are_400(gw: AdminGateway) -> None:
    resp = call(gw, "POST", "/admin/keys", b"{not json")
    assert resp.status_code == 400 and error(resp)["code"] == "invalid_json"
    key_id = create(gw, name="grace-check")["id"]
    resp = call(gw, "POST", f"/admin/keys/{key_id}/rotate", {"grace": "soon"})
    assert resp.status_code == 400 and error(resp)["param"] == "grace"
    assert "90m" in error(resp)["message"]  # says what is accepted
    resp = call(gw, "POST", f"/admin/keys/{key_id}/rotate", {"grace": "1h", "old": True})
    assert resp.status_code == 400 and error(resp)["param"] == "old"


def test_expires_at_is_honoured(gw: AdminGateway) -> None:
    data = create(gw, name="dated", expires_at="2099-05-01T12:00:00+02:00")
    assert data["expires_at"] == "2099-05-01T10:00:00+00:00"


# -- revoke, rotate, expire ---------------------------------------------------------------------


def test_revoke_applies_at_once_on_this_replica(gw: AdminGateway) -> None:
    data = create(gw, name="to-revoke")
    chat(gw, data["key"])  # now cached by the authenticator
    resp = call(gw, "POST", f"/admin/keys/{data['id']}/revoke")
    assert resp.status_code == 200 and resp.json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError, match="revoked or expired"):
        chat(gw, data["key"])  # forget() dropped the cache: no TTL wait
    again = call(gw, "POST", f"/admin/keys/{data['id']}/revoke")
    assert again.status_code == 409 and "already revoked" in error(again)["message"]


async def test_revoke_reaches_another_replica_within_the_ttl(gw: AdminGateway) -> None:
    """Another replica's authenticator (own cache, same database) sees the revocation once its
    cached entry is older than the TTL."""
    data = create(gw, name="multi-replica")
    database = Database(gw.store_url)
    try:
        replica = Authenticator(
            master_key=None, lookup=KeyStore(database).find_by_secret, ttl=AUTH_TTL
        )
        assert (await replica.authenticate(data["key"])).key_id == data["id"]
        async with httpx.AsyncClient(base_url=gw.url) as client:
            resp = await client.post(
                f"/admin/keys/{data['id']}/revoke", headers={"authorization": f"Bearer {MASTER}"}
            )
        assert resp.status_code == 200
        await asyncio.sleep(AUTH_TTL + 0.1)
        with pytest.raises(errors.AuthenticationError, match="revoked or expired"):
            await replica.authenticate(data["key"])
    finally:
        await database.aclose()


def test_rotate_with_grace(gw: AdminGateway) -> None:
    old = create(gw, name="rotating", models=["sim-gpt"], expires_in="30d")
    chat(gw, old["key"])
    resp = call(gw, "POST", f"/admin/keys/{old['id']}/rotate", {"grace": "2s"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    new = resp.json()
    SEEN.append(new["key"])
    assert new["key"] != old["key"] and new["id"] != old["id"]
    assert new["rotated_from"] == old["id"]
    assert (new["name"], new["models"], new["expires_at"]) == (
        old["name"],
        old["models"],
        old["expires_at"],
    )
    assert new["old_key_valid_until"]
    assert chat(gw, old["key"]) and chat(gw, new["key"])  # both work during the grace
    # The old key is revoked-at-end-of-grace: rotating it again is a conflict.
    again = call(gw, "POST", f"/admin/keys/{old['id']}/rotate", {"grace": "1h"})
    assert again.status_code == 409 and "newest successor" in error(again)["message"]
    time.sleep(2.2)
    with pytest.raises(openai.AuthenticationError):
        chat(gw, old["key"])
    assert chat(gw, new["key"])
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, new["key"], "sim-claude")  # scopes carried over


def test_rotate_without_grace_stops_the_old_key_at_once(gw: AdminGateway) -> None:
    old = create(gw, name="leaked")
    chat(gw, old["key"])
    resp = call(gw, "POST", f"/admin/keys/{old['id']}/rotate")  # no body: grace 0
    assert resp.status_code == 201
    SEEN.append(resp.json()["key"])
    with pytest.raises(openai.AuthenticationError):
        chat(gw, old["key"])
    assert chat(gw, resp.json()["key"])


def test_expired_key_is_refused(gw: AdminGateway) -> None:
    data = create(gw, name="short-lived", expires_in=2)
    assert chat(gw, data["key"])
    time.sleep(2.1)
    with pytest.raises(openai.AuthenticationError, match="revoked or expired"):
        chat(gw, data["key"])
    rotated = call(gw, "POST", f"/admin/keys/{data['id']}/rotate")
    assert rotated.status_code == 409 and "expired" in error(rotated)["message"]


def test_every_admin_action_is_audited_as_master(gw: AdminGateway) -> None:
    data = create(gw, name="audited")
    new_id = call(gw, "POST", f"/admin/keys/{data['id']}/rotate", {"grace": "1h"}).json()["id"]
    assert call(gw, "POST", f"/admin/keys/{new_id}/revoke").status_code == 200
    with sqlite3.connect(gw.db_file) as db:
        rows = db.execute(
            "SELECT actor, action, target FROM audit_log WHERE target IN (?, ?) ORDER BY id",
            (data["id"], new_id),
        ).fetchall()
    assert rows == [  # a rotation is one row: the successor's creation is part of it
        ("master", "key.create", data["id"]),
        ("master", "key.rotate", data["id"]),
        ("master", "key.revoke", new_id),
    ]


# -- the CLI ------------------------------------------------------------------------------------


def keys_cli(gw: AdminGateway, *args: str, master: str | None = MASTER, width: int = 80) -> Any:
    result = runner.invoke(
        keys_app,
        [*args, "--url", gw.url],
        env={"AIWIRE_MASTER_KEY": master, "AIWIRE_URL": None, "COLUMNS": str(width)},
    )
    assert MASTER not in result.output
    assert "Traceback" not in result.output
    return result


def test_cli_create_prints_the_secret_once(gw: AdminGateway) -> None:
    result = keys_cli(
        gw, "create", "--name", "cli-app", "--models", "sim-gpt, sim-claude", "--expires", "30d"
    )
    assert result.exit_code == 0, result.output
    assert "it cannot be shown again" in result.output
    secrets_ = [line for line in result.output.splitlines() if line.startswith("aiw-")]
    assert len(secrets_) == 1 and len(secrets_[0]) == 44
    SEEN.append(secrets_[0])
    assert result.output.count(secrets_[0]) == 1
    assert "cli-app" in result.output and "sim-claude" in result.output
    assert chat(gw, secrets_[0], "sim-claude")


def test_cli_json_list_revoke_rotate(gw: AdminGateway) -> None:
    created = keys_cli(
        gw, "create", "--name", "cli-json", "--endpoints", "/v1/embeddings", "--json"
    )
    assert created.exit_code == 0, created.output
    data = orjson.loads(created.stdout)
    SEEN.append(data["key"])
    assert data["endpoints"] == ["/v1/embeddings"] and data["models"] == []

    listed = keys_cli(gw, "list", "--json")
    assert listed.exit_code == 0
    records = orjson.loads(listed.stdout)
    assert data["id"] in {r["id"] for r in records}
    assert not any("key" in r for r in records)

    table = keys_cli(gw, "list", width=160)
    assert table.exit_code == 0 and "Virtual keys" in table.output
    row = next(line for line in table.output.splitlines() if data["id"] in line)
    assert "cli-json" in row and f"{data['key_prefix']}…" in row and " all " in row
    assert data["key"] not in table.output
    narrow = keys_cli(gw, "list", width=80)  # one small table per key instead
    assert narrow.exit_code == 0 and data["id"] in narrow.output and "cli-json" in narrow.output

    rotated = keys_cli(gw, "rotate", data["id"], "--grace", "1h")
    assert rotated.exit_code == 0, rotated.output
    new_secret = [ln for ln in rotated.output.splitlines() if ln.startswith("aiw-")]
    assert len(new_secret) == 1 and "cannot be shown again" in rotated.output
    SEEN.append(new_secret[0])
    assert "old key works until" in rotated.output

    new_id = orjson.loads(keys_cli(gw, "list", "--json").stdout)[-1]["id"]
    revoked = keys_cli(gw, "revoke", new_id, "--json")
    assert revoked.exit_code == 0 and orjson.loads(revoked.stdout)["revoked_at"]
    again = keys_cli(gw, "revoke", new_id)
    assert again.exit_code == 1 and "409" in again.output and "already revoked" in again.output


def test_cli_errors_are_one_red_line(gw: AdminGateway) -> None:
    unknown = keys_cli(gw, "revoke", "key_nope")
    assert unknown.exit_code == 1 and "404" in unknown.output and "key_nope" in unknown.output

    wrong = keys_cli(gw, "list", master="sk-wrong-master-key-000")
    assert wrong.exit_code == 1 and "401" in wrong.output and "--master-key" in wrong.output
    assert "sk-wrong-master-key-000" not in wrong.output

    missing = keys_cli(gw, "list", master=None)
    assert missing.exit_code == 1 and "AIWIRE_MASTER_KEY" in missing.output

    bad = keys_cli(gw, "create", "--name", "x", "--expires", "soon")
    assert bad.exit_code == 1 and "--expires" in bad.output and "30d" in bad.output

    server_side = keys_cli(gw, "create", "--name", "x", "--endpoints", "/v1/nope")
    assert server_side.exit_code == 1 and "endpoints" in server_side.output

    typo = keys_cli(gw, "create", "--name", "x", "--models", "sim-gtp")
    assert typo.exit_code == 1 and "'sim-gtp' is not configured" in typo.output
    assert "sim-gpt" in typo.output  # lists what is


def test_cli_connection_refused(gw: AdminGateway) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(
        keys_app, ["list", "--url", f"http://127.0.0.1:{port}", "--master-key", MASTER]
    )
    assert result.exit_code == 1
    assert "cannot reach the gateway" in result.output and str(port) in result.output
    assert "Traceback" not in result.output and MASTER not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_help_has_examples_and_hides_the_master_key() -> None:
    for command in (["--help"], *([c, "--help"] for c in ("create", "list", "revoke", "rotate"))):
        result = runner.invoke(keys_app, command, env={"AIWIRE_MASTER_KEY": MASTER})
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output, command
        assert MASTER not in result.output


# -- no secret anywhere -------------------------------------------------------------------------


def test_no_secret_in_the_database_or_the_logs(
    gw: AdminGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = create(gw, name="scan")
    chat(gw, data["key"])
    rotated = call(gw, "POST", f"/admin/keys/{data['id']}/rotate", {"grace": "1h"}).json()
    SEEN.append(rotated["key"])
    chat(gw, rotated["key"])
    call(gw, "POST", f"/admin/keys/{rotated['id']}/revoke")
    call(gw, "GET", "/admin/keys", key=data["key"])  # a refused admin call
    echoed = call(gw, "POST", "/admin/keys", {"name": "x", "expires_in": data["key"]})
    assert echoed.status_code == 400 and data["key"] not in echoed.text  # scrubbed from the error

    secrets_ = [*SEEN, MASTER]
    assert len(SEEN) >= 10  # the earlier tests ran and fed the list

    with sqlite3.connect(gw.db_file) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"api_keys", "audit_log", "request_log"} <= set(tables)
        cells = 0
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    cells += 1
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    assert not any(s in text for s in secrets_), (table, text[:40])
        assert cells > 100
    for path in gw.db_file.parent.iterdir():  # the file itself, and any -wal / -journal
        raw = path.read_bytes()
        assert not any(s.encode() in raw for s in secrets_), path.name

    log_text = caplog.text + "\n".join(gw.logs)
    assert "admin: created key" in log_text  # the logs were captured at all
    assert not any(s in log_text for s in secrets_)
