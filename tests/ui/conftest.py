"""The console's test bench: a real gateway (uvicorn in a thread, SQLite in tmp) in front of its
own simulator, with a review flow whose destination is a JSONL file, and - for the browser
tests - one headless Debian Chromium per session driven by Playwright, every page of it
watched so that no request leaves the gateway and none fails.

Chromium is ``/usr/bin/chromium`` (``apt-get install -y chromium``); Playwright never downloads a
browser here. Without Chromium (or the ``playwright`` package) the browser tests skip, or fail
when ``AIWIRE_REQUIRE_SERVICES=1`` (as tests/conftest.py's ``require_service`` does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from tests.conftest import require_service

from aiwire.config import DeploymentConfig, simulator_config
from aiwire.flows.webhook import sign
from aiwire.secrets import Secret
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer
from aiwire.simulator import SimulatorConfig, SimulatorServer

MASTER = "sk-aiwire-master-console-0123456789"
WEBHOOK_SECRET = "console-test-webhook-secret"
CHROMIUM = os.environ.get("AIWIRE_CHROMIUM", "/usr/bin/chromium")
#: What the machine notes require of a headless Chromium here (the network is closed).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}

FLOW = """\
version: 1
name: replies
description: Draft a reply to each message; a person approves, edits or rejects it.
source: {kind: webhook, secret: env:CONSOLE_TEST_WEBHOOK_SECRET}
key: message_id
on_error: {retries: 0, action: dead_letter}
steps:
  - kind: prompt
    template: "Reply to {{ customer }}: {{ text }}"
  - kind: model
    id: draft
    model: sim-gpt
    schema:
      type: object
      properties: {reply: {type: string}, tone: {type: string}}
      required: [reply, tone]
  - kind: review
    queue: replies
    show: [customer, text, draft.reply, draft.tone]
    editable: [draft.reply]
    instructions: Approve the reply, fix it, or reject it with a reason.
sinks:
  - kind: jsonl
    id: outbox
    path: out/outbox.jsonl
    record:
      message_id: "{{ message_id }}"
      reply: "{{ draft.reply }}"
      decision: "{{ _review.decision }}"
"""

#: A flow whose model always fails: its records land in the dead-letter queue.
BROKEN_FLOW = """\
version: 1
name: escalations
description: Summarise escalations; its model is down, so records go to the dead-letter queue.
source: {kind: webhook, secret: env:CONSOLE_TEST_WEBHOOK_SECRET}
key: message_id
on_error: {retries: 0, action: dead_letter}
steps:
  - kind: prompt
    template: "Summarise: {{ text }}"
  - kind: model
    model: broken
sinks:
  - kind: jsonl
    path: out/escalations.jsonl
    record: {message_id: "{{ message_id }}"}
"""


@dataclass
class Console:
    """A running gateway with the console, and helpers to drive it from the test's side."""

    url: str
    parts: GatewayParts
    flow_dir: Path
    sim: SimulatorServer
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30
        )

    @property
    def outbox(self) -> Path:
        return self.flow_dir / "out" / "outbox.jsonl"

    def delivered(self) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        return [orjson.loads(line) for line in self.outbox.read_bytes().splitlines() if line]

    def send_event(self, message_id: str, customer: str, text: str, flow: str = "replies") -> None:
        body = orjson.dumps({"message_id": message_id, "customer": customer, "text": text})
        ts = int(time.time())
        r = httpx.post(
            f"{self.url}/flows/{flow}/events",
            content=body,
            headers={
                "content-type": "application/json",
                "x-timestamp": str(ts),
                "x-signature": sign(WEBHOOK_SECRET, body, ts),
                "x-event-id": f"evt-{message_id}",
            },
            timeout=10,
        )
        assert r.status_code in (200, 202), r.text

    def pending_reviews(self) -> list[dict[str, Any]]:
        r = self.http.get("/admin/review", params={"status": "pending", "flow": "replies"})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def chat(self, key: str, model: str = "sim-gpt") -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": "Say hello"}],
                "max_tokens": 8,
            },
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
        )

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the gateway's store, on its own connection."""
        import asyncio

        from sqlalchemy import text

        from aiwire.store import Database

        async def run() -> list[tuple[Any, ...]]:
            db = Database(self.parts.database.url)
            try:
                async with db.engine.connect() as conn:
                    rows = (await conn.execute(text(query), params)).all()
                    return [tuple(r) for r in rows]
            finally:
                await db.aclose()

        # On a thread of its own: Playwright's sync API keeps an event loop in this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def console_gateway(tmp: Path, **build: Any) -> Iterator[Console]:
    """A gateway on SQLite under ``tmp`` with the ``replies`` flow, over its own simulator
    (``slow`` hangs: a batch of it stays in progress until cancelled)."""
    flow_dir = tmp / "flows"
    flow_dir.mkdir(parents=True, exist_ok=True)
    (flow_dir / "replies.yaml").write_text(FLOW)
    (flow_dir / "escalations.yaml").write_text(BROKEN_FLOW)
    sim_config = SimulatorConfig(
        tokens_per_second=0,
        faults={"slow-model": "hang", "broken-model": "500"},
        hang_seconds=20,
    )
    # Read while the gateway is built (flow files, batch worker settings) ...
    build_env = {"AIWIRE_FLOWS": str(flow_dir), "AIWIRE_BATCH_POLL_INTERVAL": "0.2"}
    # ... and while it runs (the flows' webhook secret is resolved on first use).
    run_env = {"CONSOLE_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET}
    with SimulatorServer(sim_config) as sim, _environ(run_env):
        config = simulator_config(sim.url)
        config.models += [
            DeploymentConfig(name="slow", provider="sim-openai", model="slow-model"),
            DeploymentConfig(name="broken", provider="sim-openai", model="broken-model"),
        ]
        config.router.retries = 0
        with _environ(build_env):
            parts = build_gateway(
                config,
                store_url=f"sqlite:///{tmp / 'aiwire.db'}",
                master_key=Secret(MASTER),
                auth_ttl=0,
                **build,
            )
        server = BackgroundServer(parts.gateway, lifespan="on").start()
        try:
            yield Console(server.url, parts, flow_dir, sim)
        finally:
            # The simulator first: its end releases the hung `slow` calls, so the gateway's
            # batch worker stops at once instead of waiting out the hang.
            sim.stop()
            server.stop()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console_gateway(tmp_path_factory.mktemp("console")) as running:
        yield running


# -- the browser --------------------------------------------------------------------------------


def _require_browser() -> None:
    hint = "apt-get install -y chromium (Debian's Chromium at /usr/bin/chromium)"
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        require_service(f"Chromium ({CHROMIUM} is missing)", hint)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_service("Playwright for Python", "pip install -e '.[test]' (then " + hint + ")")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests (they are one module, so one per session;
    module scope ends Playwright's event loop before other modules' asyncio tests run).
    Playwright starts it with a new, empty user data dir of its own and removes it after."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Watched:
    """A browser page whose every request is checked: only the gateway's origin is allowed
    (anything else is aborted and recorded), and failed requests are recorded."""

    page: Any
    origin: str
    elsewhere: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def sign_in(self, key: str = MASTER) -> None:
        self.page.goto(f"{self.origin}/ui/")
        self.page.get_by_label("Master key or admin key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("navigation", name="Console sections").wait_for()

    def open(self, name: str) -> None:
        self.page.goto(f"{self.origin}/ui/#/{name}")
        self.page.locator("main h1").first.wait_for()


@pytest.fixture
def watched(browser: Any, console: Console) -> Iterator[Watched]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(console.url))
    context = browser.new_context(viewport=WIDE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = Watched(page, origin)

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(origin + "/") or url == origin:
            route.continue_()
        else:
            watch.elsewhere.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    page.on("requestfailed", lambda r: watch.failed.append(f"{r.method} {r.url}: {r.failure}"))
    page.on("pageerror", lambda e: watch.errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    yield watch
    context.close()
    assert watch.elsewhere == [], f"the console tried to reach other hosts: {watch.elsewhere}"
    assert watch.errors == [], f"script errors on the page: {watch.errors}"
    # A fetch cut short by the test navigating away is not a failure of the console.
    real = [f for f in watch.failed if "ERR_ABORTED" not in f]
    assert real == [], f"requests failed: {real}"
