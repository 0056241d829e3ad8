"""The response cache through the gateway: hits replay the same bytes, cost nothing, are logged.

(The cache's own contract - keys, eligibility, entries, each backend - is tested in tests/cache.)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
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


class Gw:
    def __init__(self, url: str, db: Path) -> None:
        self.url, self.db = url, db

    def key(self, **body: Any) -> str:
        r = httpx.post(
            f"{self.url}/admin/keys",
            json={"name": "cache-test", **body},
            headers={"authorization": f"Bearer {MASTER}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def chat(
        self,
        key: str = MASTER,
        path: str = "/v1/chat/completions",
        headers: Any = None,
        **body: Any,
    ) -> httpx.Response:
        payload = {
            "model": "sim-claude" if path == "/v1/messages" else "sim-gpt",
            "messages": [{"role": "user", "content": "Name three rivers"}],
            "max_tokens": 40,
            **body,
        }
        return httpx.post(
            f"{self.url}{path}",
            json=payload,
            headers={
                "authorization": f"Bearer {key}",
                "anthropic-version": "2023-06-01",
                **(headers or {}),
            },
            timeout=10,
        )

    def row(self, request_id: str) -> tuple[Any, ...] | None:
        for _ in range(50):
            with sqlite3.connect(self.db) as con:
                row: tuple[Any, ...] | None = con.execute(
                    "select cache_hit, cost_usd, input_tokens, status from request_log "
                    "where request_id = ?",
                    (request_id,),
                ).fetchone()
            if row is not None:
                return row
            time.sleep(0.1)
        return None


@pytest.fixture(scope="module")
def gw(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    db = tmp_path_factory.mktemp("cache") / "aiwire.db"
    parts = build_gateway(
        simulator_config(simulator.url, retries=0),
        store_url=f"sqlite:///{db}",
        master_key=Secret(MASTER),
        auth_ttl=0,
    )
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield Gw(server.url, db)


def test_a_deterministic_request_is_answered_from_the_cache_the_second_time(gw: Gw) -> None:
    key = gw.key()
    first = gw.chat(key, temperature=0)
    second = gw.chat(key, temperature=0)
    assert first.headers["x-aiwire-cache"] == "miss"
    assert second.headers["x-aiwire-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    miss_row = gw.row(first.headers["x-request-id"])
    hit_row = gw.row(second.headers["x-request-id"])
    assert miss_row is not None and hit_row is not None
    assert miss_row[0] == 0 and miss_row[1] > 0  # the original was billed
    assert hit_row[0] == 1 and hit_row[1] == 0  # the hit: logged as such, cost nothing
    assert hit_row[2] == miss_row[2]  # with the original's token counts


def test_only_deterministic_requests_by_default_and_the_header_decides(gw: Gw) -> None:
    key = gw.key()
    assert "x-aiwire-cache" not in gw.chat(key, temperature=1).headers
    forced = [gw.chat(key, temperature=1, headers={"x-aiwire-cache": "force"}) for _ in range(2)]
    assert [r.headers["x-aiwire-cache"] for r in forced] == ["miss", "hit"]
    assert forced[0].content == forced[1].content
    seeded = [gw.chat(key, temperature=1, seed=7) for _ in range(2)]
    assert [r.headers["x-aiwire-cache"] for r in seeded] == ["miss", "hit"]
    no_store = gw.chat(key, temperature=0, headers={"x-aiwire-cache": "no-store"}, max_tokens=41)
    assert "x-aiwire-cache" not in no_store.headers
    assert gw.chat(key, temperature=0, max_tokens=41).headers["x-aiwire-cache"] == "miss"
    refresh = gw.chat(key, temperature=0, max_tokens=41, headers={"x-aiwire-cache": "no-cache"})
    assert refresh.headers["x-aiwire-cache"] == "miss"  # looked up nothing, stored anew
    bad = gw.chat(key, temperature=0, headers={"x-aiwire-cache": "nostore"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cache_directive"


def test_a_stream_is_replayed_as_the_same_stream(gw: Gw) -> None:
    key = gw.key()
    body = {"temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    first, second = gw.chat(key, **body), gw.chat(key, **body)
    assert second.headers["x-aiwire-cache"] == "hit"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.content == first.content and second.content.endswith(b"data: [DONE]\n\n")
    anth = [gw.chat(key, "/v1/messages", temperature=0, stream=True) for _ in range(2)]
    assert anth[1].headers["x-aiwire-cache"] == "hit" and anth[1].content == anth[0].content
    assert b"event: message_stop" in anth[1].content


def test_entries_stay_within_their_key_and_a_key_can_opt_out(gw: Gw) -> None:
    a, b = gw.key(), gw.key()
    assert gw.chat(a, temperature=0, max_tokens=33).headers["x-aiwire-cache"] == "miss"
    assert gw.chat(b, temperature=0, max_tokens=33).headers["x-aiwire-cache"] == "miss"
    out = gw.key(options={"cache": False})
    assert all("x-aiwire-cache" not in gw.chat(out, temperature=0).headers for _ in range(2))
