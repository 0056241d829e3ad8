"""The offline-work half of ``aiwire demo``: a batch through the OpenAI Batch API, a flow with
human review, and what operators see (metrics, the audit trail), on the demo's gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from aiwire.demo_common import short, step
from aiwire.flows.webhook import sign

FLOW = "refund-replies"
WEBHOOK_SECRET = "demo-webhook-secret-not-a-secret"

#: Refund requests answered by a model; small amounts go out at once, the rest wait for a person.
FLOW_YAML = """\
version: 1
name: refund-replies
description: Drafted replies to refund requests; a person approves those over 50 EUR.
source: {kind: webhook, secret: "file:SECRET_FILE"}
key: request_id
steps:
  - kind: prompt
    template: "{{ customer }} asks for a refund of {{ amount }} EUR: {{ text }}"
  - kind: model
    id: draft
    model: sim-gpt
    system: You answer refund requests for an online shop, briefly and kindly.
    schema:
      type: object
      properties: {reply: {type: string, minLength: 30}}
      required: [reply]
  - kind: branch
    cases: [{when: "amount <= 50", goto: send}]
    default: next
  - kind: review
    queue: refunds
    show: [customer, amount, text, draft.reply]
    editable: [draft.reply]
  - kind: transform
    id: send
    fields:
      sent_by: {expr: "_review.reviewer if _review else 'auto'"}
sinks:
  - kind: jsonl
    path: out/replies.jsonl
    record:
      request_id: "{{ request_id }}"
      amount: "{{ amount }}"
      reply: "{{ draft.reply }}"
      sent_by: "{{ sent_by }}"
"""

REQUESTS = [
    {"request_id": "R-1", "customer": "Ana", "amount": 19, "text": "The mug arrived broken."},
    {"request_id": "R-2", "customer": "Ben", "amount": 240, "text": "I returned the chair."},
    {"request_id": "R-3", "customer": "Chen", "amount": 95, "text": "Charged twice in May."},
]


class Admin:
    """What the tour's later steps need of the gateway: its URL, the master key, a client."""

    def __init__(self, url: str, master: str, http: httpx.Client) -> None:
        self.url, self.master, self.http = url, master, http

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.master}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, f"{self.url}{path}", headers=self.auth, **kwargs)
        r.raise_for_status()
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r


def write_flow(folder: Path) -> Path:
    """The demo's flow file (and its webhook secret) in ``folder``: what ``AIWIRE_FLOWS`` names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "webhook-secret.txt").write_text(WEBHOOK_SECRET)
    secret = (folder / "webhook-secret.txt").resolve()
    (folder / f"{FLOW}.yaml").write_text(FLOW_YAML.replace("SECRET_FILE", str(secret)))
    return folder


def batch_step(console: Console, gw: Admin, n: int) -> None:
    step(console, n, "Batch", "the OpenAI Batch API for any model: upload, create, poll, download")
    lines = [
        {
            "custom_id": f"ticket-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "sim-claude",
                "messages": [{"role": "user", "content": f"Classify ticket {i}"}],
                "max_tokens": 12,
            },
        }
        for i in range(1, 41)
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    file = gw.call(
        "POST", "/v1/files", files={"file": ("tickets.jsonl", data)}, data={"purpose": "batch"}
    )
    batch = gw.call(
        "POST",
        "/v1/batches",
        json={
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    console.print(
        f"  {len(lines)} lines for a Claude model, sent in OpenAI's batch format: "
        f"estimated ${batch['estimate_usd']:.6f} before it starts"
    )
    with Progress(
        TextColumn("  [dim]batch[/]"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("lines", total=len(lines))
        batch = _until(
            lambda: gw.call("GET", f"/v1/batches/{batch['id']}"),
            lambda b: b["status"] in ("completed", "failed", "expired", "cancelled"),
            lambda b: bar.update(task, completed=b["request_counts"]["completed"]),
        )
        bar.update(task, completed=batch["request_counts"]["completed"])
    output = gw.call("GET", f"/v1/files/{batch['output_file_id']}/content").text.splitlines()
    first = json.loads(output[0])
    reply = first["response"]["body"]["choices"][0]["message"]["content"]
    counts = batch["request_counts"]
    console.print(
        f"  {batch['status']}: {counts['completed']}/{counts['total']} lines, "
        f"${batch['cost_usd']:.6f} spent; {first['custom_id']} → {short(reply, 44)}"
    )
    console.print(
        "  [dim]a killed worker resumes without repeating a line; "
        "aiwire batch run file.jsonl does the same locally with a progress bar[/]"
    )


def flow_step(console: Console, gw: Admin, folder: Path, n: int) -> None:
    step(console, n, "Flows", "webhook → prompt → model → review where it matters → destination")
    for event in REQUESTS:
        body = json.dumps(event).encode()
        ts = int(time.time())
        r = gw.http.post(
            f"{gw.url}/flows/{FLOW}/events",
            content=body,
            headers={
                "content-type": "application/json",
                "x-timestamp": str(ts),
                "x-signature": sign(WEBHOOK_SECRET, body, ts),
                "x-event-id": str(event["request_id"]),
            },
        )
        r.raise_for_status()
    forged = gw.http.post(
        f"{gw.url}/flows/{FLOW}/events",
        content=b'{"request_id": "R-9", "amount": 1}',
        headers={"x-timestamp": str(int(time.time())), "x-signature": "sha256=00"},
    )
    console.print(
        f"  {len(REQUESTS)} signed refund requests accepted; a forged one: {forged.status_code}"
    )
    pending = _until(
        lambda: gw.call("GET", f"/admin/review?flow={FLOW}"),
        lambda page: page["total"] >= 2,
    )["data"]
    by_record = {item["record"]: item["id"] for item in pending}
    console.print(
        f"  R-1 (19 EUR) went out at once; {', '.join(sorted(by_record))} wait for review"
    )
    gw.call("POST", f"/admin/review/{by_record['R-3']}/approve", json={"reviewer": "maria"})
    gw.call(
        "POST",
        f"/admin/review/{by_record['R-2']}/edit",
        json={
            "reviewer": "maria",
            "edits": {"draft.reply": "Refund of 240 EUR approved; it reaches you within 5 days."},
        },
    )
    sink = folder / "out" / "replies.jsonl"
    delivered = _until(
        lambda: [json.loads(x) for x in sink.read_text().splitlines()] if sink.exists() else [],
        lambda rows: len(rows) >= 3,
    )
    for row in sorted(delivered, key=lambda r: str(r["request_id"])):
        console.print(
            f"  → {row['request_id']} ({row['amount']} EUR, sent by {row['sent_by']}): "
            f"{short(str(row['reply']), 52)}"
        )
    stats = gw.call("GET", f"/admin/review/stats?flow={FLOW}")["data"].get(FLOW, {})
    if stats.get("acceptance_rate") is not None:
        console.print(
            f"  reviewers accepted {stats['acceptance_rate']:.0%} of the drafts, "
            f"{stats['approved_as_is_rate']:.0%} unchanged (aiwire review stats)"
        )


def operations_step(console: Console, gw: Admin, n: int) -> None:
    step(console, n, "Operations", "metrics, the web console, a tamper-evident audit trail")
    text = gw.call("GET", "/metrics").text
    wanted = ("aiwire_requests_total", "aiwire_cost_usd_total", "aiwire_cache_hits_total")
    found = [m for m in wanted if any(line.startswith(m) for line in text.splitlines())]
    series = sum(1 for line in text.splitlines() if line.startswith("aiwire_"))
    console.print(
        f"  GET /metrics: {series} aiwire series, including {', '.join(found) or 'none'} "
        "(labels: model, deployment, provider, key name, status — never secrets)"
    )
    same_origin = {"origin": gw.url, "sec-fetch-site": "same-origin"}
    with httpx.Client(base_url=gw.url) as browser:  # its own cookie jar, as a browser has
        page = browser.get("/ui/")
        signed_in = browser.post("/ui/session", headers={**gw.auth, **same_origin})
        signed_in.raise_for_status()
        today = browser.get("/admin/stats/overview").json()["today"]
        forged = browser.post("/admin/keys", json={"name": "x"}, headers=same_origin)
        console.print(
            f"  web console at {gw.url}/ui/ ({page.status_code}): signed in with an HttpOnly "
            f"session cookie; its Overview reads {today['requests']} requests, "
            f"${today['cost_usd']:.4f} today; a change without the CSRF token: "
            f"{forged.status_code}"
        )


def _until(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    seen: Callable[[Any], None] | None = None,
    timeout: float = 30.0,
) -> Any:
    """Poll ``fetch`` until ``done`` holds (TimeoutError naming what never happened)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if seen is not None:
            seen(value)
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {timeout:.0f}s in vain; last seen: {value!r}")
        time.sleep(0.05)


def audit_step(console: Console, store: Path) -> None:
    """After shutdown: the audit trail verifies, and an edited row is caught."""
    import asyncio
    import sqlite3

    from aiwire.observability.audit_trail import verify_chain

    url = f"sqlite:///{store}"
    intact = asyncio.run(verify_chain(url))
    with sqlite3.connect(store) as db:  # what someone covering their tracks would do
        db.execute("update audit_log set actor = 'nobody' where id = 2")
    edited = asyncio.run(verify_chain(url))
    where = edited.bad.get("id") if edited.bad else "?"
    console.print(
        f"  audit trail: {intact.rows} admin actions, hash chain intact: {intact.ok}; "
        f"after editing one row by hand: intact {edited.ok}, first bad row {where} "
        "(aiwire audit verify)"
    )
