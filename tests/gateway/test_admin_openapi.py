"""The admin API's OpenAPI spec and docs page, and mounting another admin router in one line.

The spec is generated from the routes (FastAPI + pydantic models), served without a key at
/admin/openapi.json, documents every route with its errors in OpenAI's shape (validation errors
are 400s, not FastAPI's 422s) and the bearer scheme. The docs page loads nothing from outside
the gateway. A router included with ``gateway.admin.include`` requires an admin caller on every
route and appears in the spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from tests.gateway.conftest import MASTER

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.admin_base import AdminCaller, Context, Input, Output, bad
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer

# -- a router another module would mount (e.g. the flows' review queue) -------------------------

reviews = APIRouter(tags=["reviews"])


class Decision(Input):
    verdict: str


class Decided(Output):
    item: str
    verdict: str
    by: str
    keys: int


@reviews.post("/reviews/{item}", response_model=Decided)
async def decide(item: str, body: Decision, caller: AdminCaller, ctx: Context) -> dict[str, Any]:
    if body.verdict not in ("approve", "reject"):
        raise bad("verdict", "approve or reject")
    return {
        "item": item,
        "verdict": body.verdict,
        "by": caller.name,
        "keys": len(await ctx.keys.list()),
    }


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    parts = build_gateway(
        simulator_config("http://127.0.0.1:9"),
        store_url=f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'aiwire.db'}",
        master_key=Secret(MASTER),
    )
    assert parts.gateway.admin is not None
    parts.gateway.admin.include(reviews)  # the one line
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        yield server.url


def test_the_spec_needs_no_key_and_describes_every_route(url: str) -> None:
    resp = httpx.get(f"{url}/admin/openapi.json")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    spec = resp.json()
    assert spec["openapi"].startswith("3.") and spec["info"]["title"] == "aiwire admin API"
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert operations >= {
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys/{key_id}"),
        ("PATCH", "/admin/keys/{key_id}"),
        ("POST", "/admin/keys/{key_id}/revoke"),
        ("POST", "/admin/keys/{key_id}/rotate"),
        ("GET", "/admin/budgets"),
        ("POST", "/admin/budgets"),
        ("DELETE", "/admin/budgets/{budget_id}"),
        ("GET", "/admin/usage"),
        ("POST", "/admin/reviews/{item}"),
    }
    assert spec["components"]["securitySchemes"]["AdminKey"]["scheme"] == "bearer"
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["security"] == [{"AdminKey": []}], (method, path)
            assert "422" not in op["responses"] and "400" in op["responses"], (method, path)
            assert {"401", "403", "404"} <= set(op["responses"])
    create = spec["paths"]["/admin/keys"]["post"]
    assert "201" in create["responses"]
    body = schemas["CreateKey"]
    assert body["additionalProperties"] is False and body["required"] == ["name"]
    (scopes,) = [t for t in body["properties"]["scopes"]["anyOf"] if t["type"] == "array"]
    assert scopes["items"] == {"type": "string", "const": "admin"}
    usage = spec["paths"]["/admin/usage"]["get"]["responses"]["200"]["content"]
    assert set(usage) == {"application/json", "text/csv"}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_the_docs_page_loads_nothing_from_elsewhere(url: str) -> None:
    page = httpx.get(f"{url}/admin/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    parser = _Refs()
    parser.feed(page.text)
    assert sorted(parser.refs) == ["docs/docs.css", "docs/docs.js", "openapi.json"]
    for ref in parser.refs:  # relative, same origin: each resolves under /admin/ and is served
        resp = httpx.get(f"{url}/admin/{ref}")
        assert resp.status_code == 200, ref
    script = httpx.get(f"{url}/admin/docs/docs.js").text
    assert not re.search(r"https?://", script)  # no CDN, no other host
    assert "innerHTML" not in script  # the spec's text goes in as text
    assert 'fetch("openapi.json")' in script


def test_an_included_router_requires_an_admin_caller(url: str) -> None:
    def decide_(key: str | None, verdict: str = "approve") -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.post(
            f"{url}/admin/reviews/r1", json={"verdict": verdict}, headers=headers, timeout=10
        )

    assert decide_(None).status_code == 401
    created = httpx.post(
        f"{url}/admin/keys", json={"name": "app"}, headers={"authorization": f"Bearer {MASTER}"}
    ).json()
    assert decide_(created["key"]).status_code == 403
    ok = decide_(MASTER)
    assert ok.status_code == 200
    assert ok.json() == {"item": "r1", "verdict": "approve", "by": "master", "keys": 1}
    refused = decide_(MASTER, "maybe")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "verdict"
    extra = httpx.post(
        f"{url}/admin/reviews/r1",
        json={"verdict": "approve", "note": "x"},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert extra.status_code == 400 and "allowed: verdict" in extra.json()["error"]["message"]
    missing = httpx.get(f"{url}/admin/nope", headers={"authorization": f"Bearer {MASTER}"})
    assert "POST /admin/reviews/{item}" in missing.json()["error"]["message"]


def test_errors_keep_openai_shape_for_framework_failures(url: str) -> None:
    master = {"authorization": f"Bearer {MASTER}"}
    cases = {
        ("PUT", "/admin/keys"): (405, "method_not_allowed"),
        ("POST", "/admin/keys"): (400, "invalid_json"),  # no body at all
        ("GET", "/admin/keys/key_nope/rotate"): (405, "method_not_allowed"),
    }
    for (method, path), (status, code) in cases.items():
        resp = httpx.request(method, f"{url}{path}", headers=master)
        assert resp.status_code == status, (method, path, resp.text)
        assert resp.json()["error"]["code"] == code
    allowed = httpx.request("PUT", f"{url}/admin/keys", headers=master)
    assert allowed.headers["allow"] == "GET, POST"
    big = httpx.post(f"{url}/admin/keys", content=b"{" + b" " * 70_000 + b"}", headers=master)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    slash = httpx.get(f"{url}/admin/keys/", headers=master)  # a trailing slash is the same route
    assert slash.status_code == 200 and slash.json()["object"] == "list"
