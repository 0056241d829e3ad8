"""Console sessions and CSRF over plain HTTP (no browser): a request without a valid session,
or without the right CSRF token and origin, changes nothing - checked in the store, not only in
the status code. Cookies never authenticate model calls; bearer keys work as before; sessions
are shared by replicas on one store, end at sign-out, on revocation of their key, with a new
master key, and after their idle and absolute lifetimes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.ui.conftest import MASTER, Console, console_gateway, wait_for

from aiwire import errors
from aiwire.secrets import Secret
from aiwire.server.ui.sessions import ConsoleSessions, SessionSettings
from aiwire.store import Database
from aiwire.store.keys import KeyStore


class Browserish:
    """What a browser on the console's page would send (cookie, Origin, Sec-Fetch-Site)."""

    def __init__(self, url: str, key: str = MASTER) -> None:
        self.url = url
        r = httpx.post(
            f"{url}/ui/session",
            headers={
                "authorization": f"Bearer {key}",
                "origin": url,
                "sec-fetch-site": "same-origin",
            },
        )
        assert r.status_code == 201, r.text
        self.cookies = dict(r.cookies)
        self.csrf = str(r.json()["csrf_token"])
        self.set_cookie = r.headers["set-cookie"]

    def headers(self, **extra: str) -> dict[str, str]:
        base = {"origin": self.url, "sec-fetch-site": "same-origin", "x-csrf-token": self.csrf}
        base.update(extra)
        return {k: v for k, v in base.items() if v}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, cookies=self.cookies, timeout=20) as client:
            return client.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console_gateway(tmp_path_factory.mktemp("sessions")) as running:
        yield running


def _keys_named(console: Console, name: str) -> int:
    return len(console.sql("SELECT id FROM api_keys WHERE name = :name", name=name))


FORGERIES = {
    "no csrf token": {"x-csrf-token": ""},
    "wrong csrf token": {"x-csrf-token": "A" * 43},
    "another site's Origin": {"origin": "https://evil.example"},
    "cross-site Sec-Fetch-Site": {"sec-fetch-site": "cross-site"},
    "neither Origin nor Sec-Fetch-Site": {"origin": "", "sec-fetch-site": ""},
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_forged_state_change_changes_nothing(gateway: Console, case: str) -> None:
    user = Browserish(gateway.url)
    other = Browserish(gateway.url)  # a token of another session is no better
    victim = gateway.http.post("/admin/keys", json={"name": "victim"}).json()
    name = f"forged-{case.replace(' ', '-')}"
    headers = user.headers(**FORGERIES[case])

    r = user.request("POST", "/admin/keys", json={"name": name}, headers=headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed", r.text
    r = user.request("POST", f"/admin/keys/{victim['id']}/revoke", headers=headers)
    assert r.status_code == 403
    r = user.request(
        "PATCH", f"/admin/keys/{victim['id']}", json={"name": "renamed"}, headers=headers
    )
    assert r.status_code == 403
    borrowed = user.headers(**{"x-csrf-token": other.csrf})
    r = user.request("POST", "/admin/keys", json={"name": name}, headers=borrowed)
    assert r.status_code == 403

    assert _keys_named(gateway, name) == 0
    assert gateway.sql(f"SELECT name, revoked_at FROM api_keys WHERE id = '{victim['id']}'") == [
        ("victim", None)
    ]
    # The same request, made properly, works: the refusals were about the forgery only.
    ok = user.request("POST", "/admin/keys", json={"name": name}, headers=user.headers())
    assert ok.status_code == 201, ok.text
    assert _keys_named(gateway, name) == 1


def test_forged_review_decisions_batch_cancels_and_sign_outs_change_nothing(
    gateway: Console,
) -> None:
    user = Browserish(gateway.url)
    gateway.send_event("m-forged", "Eve", "Approve me")
    review = wait_for(
        lambda: [r for r in gateway.pending_reviews() if r["record"] == "m-forged"],
        what="the review",
    )[0]
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "slow", "messages": [{"role": "user", "content": "x"}]},
    }
    upload = gateway.http.post(
        "/v1/files",
        files={"file": ("in.jsonl", orjson.dumps(line) + b"\n")},
        data={"purpose": "batch"},
    )
    batch = gateway.http.post(
        "/v1/batches",
        json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
              "completion_window": "24h"},
    ).json()  # fmt: skip
    forged = user.headers(**{"x-csrf-token": ""})

    r = user.request("POST", f"/admin/review/{review['id']}/approve", json={}, headers=forged)
    assert r.status_code == 403
    r = user.request("POST", f"/v1/batches/{batch['id']}/cancel", headers=forged)
    assert r.status_code == 403
    r = user.request("DELETE", "/ui/session", headers=forged)
    assert r.status_code == 403
    r = user.request("POST", "/admin/flows/escalations/replay", json={}, headers=forged)
    assert r.status_code == 403

    assert gateway.sql(f"SELECT status FROM flow_reviews WHERE id = '{review['id']}'") == [
        ("pending",)
    ]
    status = gateway.sql(f"SELECT status, cancelling_at FROM batches WHERE id = '{batch['id']}'")
    assert status[0][0] not in ("cancelling", "cancelled") and status[0][1] is None
    # The session survived the forged sign-out.
    assert user.request("GET", "/admin/keys").status_code == 200
    gateway.http.post(f"/v1/batches/{batch['id']}/cancel")  # leave nothing running


def test_a_request_without_a_valid_session_changes_nothing(gateway: Console) -> None:
    user = Browserish(gateway.url)
    signed_out = Browserish(gateway.url)
    r = signed_out.request("DELETE", "/ui/session", headers=signed_out.headers())
    assert r.status_code == 200 and r.json() == {"signed_out": True}
    for who, cookies in {
        "no cookie": {},
        "an unknown session": {"aiwire_session": "x" * 43},
        "a signed-out session": signed_out.cookies,
    }.items():
        name = f"nosession-{who.replace(' ', '-')}"
        with httpx.Client(base_url=gateway.url, cookies=cookies) as client:
            r = client.post("/admin/keys", json={"name": name}, headers=user.headers())
        # 401, or 403 where the token does not even match the cookie (checked first).
        assert r.status_code in (401, 403), (who, r.text)
        assert _keys_named(gateway, name) == 0, who
    # The signed-out session's row is gone: signing out ended it in the store, not just here.
    digest = hashlib.sha256(signed_out.cookies["aiwire_session"].encode()).hexdigest()
    assert gateway.sql(f"SELECT id FROM console_sessions WHERE id = '{digest}'") == []


def test_the_store_keeps_only_a_hash_of_the_session_id(gateway: Console) -> None:
    user = Browserish(gateway.url)
    session_id = user.cookies["aiwire_session"]
    rows = gateway.sql("SELECT id, key_id, binding FROM console_sessions")
    ids = {r[0] for r in rows}
    assert hashlib.sha256(session_id.encode()).hexdigest() in ids
    assert not any(session_id in str(v) for r in rows for v in r)


def test_a_cookie_never_authenticates_a_model_call(gateway: Console) -> None:
    user = Browserish(gateway.url)
    (before,) = gateway.sql("SELECT count(*) FROM request_log")[0]
    body = {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for path, payload in {
        "/v1/chat/completions": body,
        "/v1/messages": body,
        "/v1/embeddings": {"model": "sim-gpt", "input": "hi"},
        "/v1/images/generations": {"model": "sim-gpt", "prompt": "a cat"},
    }.items():
        r = user.request("POST", path, json=payload, headers=user.headers())
        assert r.status_code == 401, (path, r.text)
    assert user.request("GET", "/v1/models").status_code == 401
    time.sleep(0.7)  # past the log writer's flush interval: a row would be there by now
    assert gateway.sql("SELECT count(*) FROM request_log")[0][0] == before


def test_bearer_requests_need_no_csrf_token(gateway: Console) -> None:
    user = Browserish(gateway.url)
    with httpx.Client(base_url=gateway.url, cookies=user.cookies) as client:
        r = client.post(
            "/admin/keys",
            json={"name": "by-bearer"},
            headers={"authorization": f"Bearer {MASTER}"},  # and a cookie, and no token
        )
    assert r.status_code == 201, r.text


def test_sign_in_needs_an_admin_credential_from_this_origin(gateway: Console) -> None:
    plain = gateway.http.post("/admin/keys", json={"name": "plain-app"}).json()["key"]
    r = httpx.post(
        f"{gateway.url}/ui/session",
        headers={"authorization": f"Bearer {plain}", "origin": gateway.url},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = httpx.post(
        f"{gateway.url}/ui/session",
        headers={"authorization": f"Bearer {MASTER}", "origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = httpx.post(f"{gateway.url}/ui/session", headers={"origin": gateway.url})
    assert r.status_code == 401 and "set-cookie" not in r.headers


def test_the_cookie_is_http_only_strict_and_secure_behind_https(gateway: Console) -> None:
    plain = Browserish(gateway.url).set_cookie
    assert plain.startswith("aiwire_session=")
    parts = {p.strip().split("=")[0].lower() for p in plain.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= parts and "secure" not in parts
    assert "SameSite=Strict" in plain and "Path=/" in plain
    # Behind a TLS-terminating proxy on loopback (trusted by default): __Host- and Secure.
    r = httpx.post(
        f"{gateway.url}/ui/session",
        headers={
            "authorization": f"Bearer {MASTER}",
            "origin": gateway.url,
            "x-forwarded-proto": "https",
        },
    )
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-aiwire_session=") and "; Secure" in cookie
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Path=/" in cookie


def test_revoking_an_admin_key_ends_its_sessions(gateway: Console) -> None:
    admin = gateway.http.post("/admin/keys", json={"name": "ops", "scopes": ["admin"]}).json()
    user = Browserish(gateway.url, admin["key"])
    assert user.request("GET", "/admin/keys").status_code == 200
    assert gateway.http.post(f"/admin/keys/{admin['id']}/revoke").status_code == 200
    # auth_cache_ttl is 0 here: the next request already sees the revocation.
    r = user.request("GET", "/admin/keys")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_session"
    r = user.request("POST", "/admin/keys", json={"name": "after-revoke"}, headers=user.headers())
    assert r.status_code == 401 and _keys_named(gateway, "after-revoke") == 0


def test_replicas_share_sessions_and_a_new_master_key_ends_them(
    gateway: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiwire.config import simulator_config
    from aiwire.server.build import build_gateway
    from aiwire.serving import BackgroundServer

    url = str(gateway.parts.database.url.render_as_string(hide_password=False)).replace(
        "sqlite+aiosqlite", "sqlite"
    )

    monkeypatch.setenv("AIWIRE_FLOWS", str(tmp_path))  # the replicas serve no flows

    def replica(master: str) -> Any:
        parts = build_gateway(
            simulator_config(gateway.sim.url),
            store_url=url,
            master_key=Secret(master),
            auth_ttl=0,
        )
        return BackgroundServer(parts.gateway, lifespan="on")

    user = Browserish(gateway.url)
    with replica(MASTER) as other:
        with httpx.Client(base_url=other.url, cookies=user.cookies) as client:
            assert client.get("/admin/keys").status_code == 200
            r = client.post(
                "/admin/keys",
                json={"name": "made-on-replica"},
                headers=user.headers(origin=other.url),
            )
            assert r.status_code == 201, r.text
            r = client.delete("/ui/session", headers=user.headers(origin=other.url))
            assert r.status_code == 200
        assert user.request("GET", "/admin/keys").status_code == 401  # ended everywhere
    second = Browserish(gateway.url)
    with (
        replica("sk-aiwire-another-master-key-0123456789") as other,
        httpx.Client(base_url=other.url, cookies=second.cookies) as client,
    ):
        r = client.get("/admin/keys")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_session"


async def test_sessions_end_after_the_idle_and_the_absolute_lifetime(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    await db.migrate()
    clock = [datetime(2030, 1, 1, tzinfo=UTC)]
    sessions = ConsoleSessions(
        db,
        KeyStore(db),
        master_key=Secret(MASTER),
        settings=SessionSettings(idle=600, absolute=3600),
        ttl=0,
        now=lambda: clock[0],
    )
    from aiwire.server.auth import Principal

    master = Principal(key_id=None, name="master", is_master=True)

    def scope(session_id: str) -> dict[str, Any]:
        cookie = f"aiwire_session={session_id}".encode()
        return {"path": "/admin/keys", "method": "GET", "headers": [(b"cookie", cookie)]}

    try:
        idle = await sessions.sign_in(master)
        for _ in range(3):  # used every 5 minutes: the idle clock restarts each time
            clock[0] += timedelta(minutes=5)
            assert (await sessions.principal(scope(idle.session_id))) == master
        clock[0] += timedelta(minutes=11)
        with pytest.raises(errors.AuthenticationError):
            await sessions.principal(scope(idle.session_id))

        busy = await sessions.sign_in(master)
        for _ in range(11):  # never idle, but 55 minutes ...
            clock[0] += timedelta(minutes=5)
            assert (await sessions.principal(scope(busy.session_id))) == master
        clock[0] += timedelta(minutes=5)  # ... and then past the absolute hour
        with pytest.raises(errors.AuthenticationError):
            await sessions.principal(scope(busy.session_id))
        # Elsewhere than the console's paths a cookie is not even looked at.
        other = scope(busy.session_id) | {"path": "/v1/chat/completions"}
        assert await sessions.principal(other) is None
    finally:
        await db.aclose()
