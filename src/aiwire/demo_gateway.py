"""The gateway half of ``aiwire demo``: the same simulator models behind ``aiwire serve``'s app,
reached over plain HTTP the way applications reach it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from aiwire.config import simulator_config
from aiwire.demo_common import short, step
from aiwire.demo_work import Admin, audit_step, batch_step, flow_step, operations_step, write_flow
from aiwire.guardrails import PIIPolicy
from aiwire.guardrails.gateway import GuardrailsConfig
from aiwire.secrets import Secret
from aiwire.server.build import build_gateway
from aiwire.serving import BackgroundServer

ASK = [{"role": "user", "content": "Hi!"}]


class _Http:
    """A tiny client for the tour: the gateway's URL, the master key, one connection pool."""

    def __init__(self, url: str, master: str, http: httpx.Client) -> None:
        self.url, self.master, self.http = url, master, http

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(
            method,
            f"{self.url}/admin{path}",
            json=body,
            headers={"authorization": f"Bearer {self.master}"},
        )
        r.raise_for_status()
        return r.json()

    def chat(self, key: str, model: str = "sim-gpt", **body: Any) -> httpx.Response:
        return self.http.post(
            f"{self.url}/v1/chat/completions",
            json={"model": model, "messages": ASK, **body},
            headers={"authorization": f"Bearer {key}"},
        )


def gateway_tour(console: Console, sim_url: str) -> None:
    master = "sk-aiwire-demo-" + uuid.uuid4().hex
    config = simulator_config(sim_url)
    # Personal data for sim-claude is masked before it leaves (restore off here, so the answer
    # shows what the provider saw; with restore on, the app gets the real values back).
    config.guardrails = GuardrailsConfig(
        models={"sim-claude": PIIPolicy(action="mask", kinds=["email", "phone"], restore=False)}
    )
    with tempfile.TemporaryDirectory() as tmp, _flows_from(write_flow(Path(tmp) / "flows")):
        store = f"{tmp}/aiwire.db"
        parts = build_gateway(config, store_url=f"sqlite:///{store}", master_key=Secret(master))
        with BackgroundServer(parts.gateway, lifespan="on") as gw, httpx.Client() as client:
            http = _Http(gw.url, master, client)
            _keys_and_protocols(console, http)
            _cost_control(console, http)
            _cache_and_pii(console, http)
            admin = Admin(gw.url, master, client)
            batch_step(console, admin, 11)
            flow_step(console, admin, Path(tmp) / "flows", 12)
            operations_step(console, admin, 13)
            _usage(console, http)
        audit_step(console, Path(store))
        with sqlite3.connect(store) as db:
            n, tokens, cost = db.execute(
                "select count(*), coalesce(sum(input_tokens + output_tokens), 0), "
                "coalesce(sum(cost_usd), 0) from request_log"
            ).fetchone()
        console.print(
            f"  after shutdown the request log holds {n} rows, {tokens} tokens, "
            f"${cost:.6f} — written in batches off the hot path, prompts not stored"
        )


def _keys_and_protocols(console: Console, http: _Http) -> None:
    step(console, 8, "The gateway", "provider keys stay on the server; apps get scoped aiw- keys")
    created = http.admin("POST", "/keys", {"name": "demo-app", "models": ["sim-gpt", "sim-claude"]})
    key = created["key"]
    console.print(
        f"  admin created key {created['key_prefix']}… for [bold]demo-app[/], "
        "scoped to sim-gpt and sim-claude (the secret is shown once)"
    )
    r = http.chat(key, "sim-claude")
    console.print(
        f"  OpenAI protocol → Claude model: {r.status_code}, "
        f"{short(r.json()['choices'][0]['message']['content'], 50)}"
    )
    r = http.http.post(
        f"{http.url}/v1/messages",
        json={"model": "sim-gpt", "max_tokens": 100, "messages": ASK},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )
    console.print(
        f"  Anthropic protocol → GPT model: {r.status_code}, "
        f"{short(r.json()['content'][0]['text'], 50)}"
    )
    r = http.chat(key, "sim-gemini")
    console.print(
        f"  out of scope (sim-gemini): {r.status_code} {short(r.json()['error']['message'], 60)}"
    )
    r = http.chat(key, base_url="http://169.254.169.254/")
    console.print(f"  a client choosing the upstream: {r.status_code} (refused, never used)")


def _cost_control(console: Console, http: _Http) -> None:
    step(
        console,
        9,
        "Cost control",
        "per-key rate limits and budgets, priced from the model catalog",
    )
    limited = http.admin("POST", "/keys", {"name": "batch-job", "rpm": 2})["key"]
    codes = []
    for _ in range(3):
        r = http.chat(limited, max_tokens=20)
        codes.append(r.status_code)
    console.print(
        f"  key limited to 2 requests/minute: {', '.join(map(str, codes))} — the third gets "
        f"retry-after {r.headers.get('retry-after')}s and x-ratelimit-* headers"
    )
    spender = http.admin("POST", "/keys", {"name": "intern"})
    http.admin(
        "POST",
        "/budgets",
        {"scope": "key", "scope_id": spender["id"], "period": "day", "limit_usd": 0.00005},
    )
    results = [http.chat(spender["key"], max_tokens=50) for _ in range(6)]
    ok = sum(r.status_code == 200 for r in results)
    refused = next((r for r in results if r.status_code == 429), None)
    detail = short(refused.json()["error"]["message"], 90) if refused is not None else "-"
    console.print(f"  a $0.00005/day budget: {ok} requests fit, then 429 budget_exceeded:")
    console.print(f"  [dim]{detail}[/]")


def _cache_and_pii(console: Console, http: _Http) -> None:
    step(console, 10, "Cache and privacy", "repeated questions are free; personal data is masked")
    key = http.admin("POST", "/keys", {"name": "support-bot"})["key"]
    first = http.chat(key, temperature=0, max_tokens=30)
    second = http.chat(key, temperature=0, max_tokens=30)
    console.print(
        f"  the same deterministic request twice: x-aiwire-cache {first.headers['x-aiwire-cache']}"
        f" then {second.headers['x-aiwire-cache']} (same bytes: "
        f"{first.content == second.content}; the hit costs $0)"
    )
    r = http.http.post(
        f"{http.url}/v1/chat/completions",
        json={
            "model": "sim-claude",
            "messages": [
                {"role": "user", "content": "Email anna.berg@northwind.test or +44 20 7946 0958"}
            ],
            "max_tokens": 30,
        },
        headers={"authorization": f"Bearer {key}"},
    )
    console.print(
        f"  what the provider saw: {short(r.json()['choices'][0]['message']['content'], 70)}"
    )


def _usage(console: Console, http: _Http) -> None:
    step(console, 14, "Usage report", "aiwire usage --by key (also GET /admin/usage, CSV/JSON)")
    report = http.admin("GET", "/usage?by=key&since=1d")
    table = Table(show_header=True, header_style="bold")
    for col in ("key", "requests", "errors", "cache hits", "tokens", "cost"):
        table.add_column(col, justify="left" if col == "key" else "right")
    for row in report["data"]:
        name = row.get("key_name") or row.get("key") or "master"
        tokens = row.get("input_tokens", 0) + row.get("output_tokens", 0)
        table.add_row(
            str(name),
            str(row.get("requests", 0)),
            str(row.get("errors", 0)),
            str(row.get("cache_hits", 0)),
            str(tokens),
            f"${row.get('cost_usd', 0.0):.6f}",
        )
    console.print(table)


@contextlib.contextmanager
def _flows_from(folder: Path) -> Iterator[None]:
    """``AIWIRE_FLOWS`` pointed at ``folder`` while the demo's gateway starts, then restored."""
    saved = os.environ.get("AIWIRE_FLOWS")
    os.environ["AIWIRE_FLOWS"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AIWIRE_FLOWS", None)
        else:
            os.environ["AIWIRE_FLOWS"] = saved
