"""The console in a real browser (headless Debian Chromium through Playwright), against a real
gateway: sign in, create a key and use it, find the request in Logs and in the Overview
numbers, approve and edit review items until the flow's destination has both, cancel a batch,
and every page at 1280x800 and at a phone's width (screenshots in tests/ui/artifacts/).

Every page the tests open is watched (``watched`` fixture): a request to any host but the
gateway is blocked and fails the test, and so does any failed request or script error.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from tests.ui.conftest import ARTIFACTS, MASTER, NARROW, WIDE, Console, Watched, wait_for

PAGES = ("overview", "keys", "models", "logs", "batches", "flows", "review")


def _overview_requests(console: Console) -> int:
    r = console.http.get("/admin/stats/overview")
    assert r.status_code == 200, r.text
    return int(r.json()["today"]["requests"])


def test_sign_in_sets_a_strict_session_cookie_and_sign_out_ends_it(
    watched: Watched, console: Console
) -> None:
    page = watched.page
    page.goto(f"{watched.origin}/ui/")
    page.get_by_label("Master key or admin key").fill("sk-not-the-master-key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="invalid").wait_for()
    assert page.context.cookies() == []

    watched.sign_in()
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "aiwire_session" and cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["secure"] is False  # plain HTTP here; over HTTPS it is __Host- and Secure
    # Script cannot read it (HttpOnly); the session works for the admin API.
    assert page.evaluate("document.cookie") == ""
    with httpx.Client(base_url=console.url, cookies={cookie["name"]: cookie["value"]}) as client:
        assert client.get("/admin/keys").status_code == 200

        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for()
        # Signed out server-side: the old cookie value no longer opens anything.
        r = client.get("/admin/keys")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_session"


def test_a_key_created_in_the_console_serves_a_request_seen_in_logs_and_overview(
    watched: Watched, console: Console
) -> None:
    page = watched.page
    watched.sign_in()
    before = _overview_requests(console)

    watched.open("keys")
    page.get_by_label("Name", exact=True).fill("console-made")
    page.get_by_label("Monthly budget (USD)").fill("5")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert re.fullmatch(r"aiw-[A-Za-z0-9_-]{20,}", secret), secret
    page.get_by_role("button", name="Copy key").wait_for()
    page.locator("tr[data-key-name='console-made']").wait_for()
    key_id = page.locator("tr[data-key-name='console-made']").get_attribute("data-key-id")
    assert key_id
    page.get_by_role("button", name="I have stored it").click()
    assert page.locator("#new-secret").count() == 0  # gone from the page once stored
    row = page.locator("tr[data-key-name='console-made']")
    assert "of $5.00 / month" in row.inner_text()  # its budget
    page.get_by_role("button", name="Edit key console-made").click()
    editor = page.get_by_role("form", name="Edit key console-made")
    editor.get_by_label("Requests / min").fill("600")
    editor.get_by_label("Expires").select_option("30d")
    editor.get_by_role("button", name="Save changes").click()
    page.get_by_role("status").filter(has_text="Saved console-made").wait_for()
    key = console.http.get(f"/admin/keys/{key_id}").json()
    assert key["rpm"] == 600 and key["expires_at"] is not None

    resp = console.chat(secret)
    assert resp.status_code == 200, resp.text
    request_id = resp.headers["x-request-id"]
    wait_for(lambda: _overview_requests(console) == before + 1, what="the request in the log")

    watched.open("logs")
    page.get_by_label("Key").select_option(key_id)
    page.get_by_role("button", name="Apply").click()
    row = page.locator(f"tr[data-request-id='{request_id}']")
    row.wait_for()
    assert "console-made" in row.inner_text() and "sim-gpt" in row.inner_text()
    assert page.locator("tr[data-request-id]").count() == 1  # the filter holds
    page.get_by_role("button", name=f"Details of request {request_id}").click()
    detail = page.get_by_role("complementary", name="Request detail")
    detail.get_by_text("sim-gpt@sim-openai/gpt-4o-mini").wait_for()
    assert "Not stored" in detail.inner_text()  # content logging is off by default

    watched.open("overview")
    shown = page.locator("[data-stat='today-requests'] .value")
    shown.wait_for()
    assert shown.inner_text().replace(",", "") == str(before + 1)


def test_approve_and_edit_review_items_and_the_destination_receives_both(
    watched: Watched, console: Console
) -> None:
    page = watched.page
    console.send_event("m-approve", "Ana", "Where is my parcel?")
    console.send_event("m-edit", "Bo", "The lid of my blender is cracked")
    wait_for(
        lambda: {"m-approve", "m-edit"} <= {r["record"] for r in console.pending_reviews()},
        what="both messages in the review queue",
    )
    watched.sign_in()
    watched.open("review")
    page.get_by_role("complementary", name="Keyboard shortcuts").wait_for()

    page.locator("button[data-record='m-approve']").click()
    page.get_by_role("heading", name=re.compile("record m-approve")).wait_for()
    page.keyboard.press("a")  # the shortcut shown on the page
    page.get_by_role("status").filter(has_text="Approved m-approve").wait_for()

    page.locator("button[data-record='m-edit']").click()
    page.get_by_role("heading", name=re.compile("record m-edit")).wait_for()
    edited = "Sorry about the lid, Bo: a new one is on its way today."
    page.get_by_label("draft.reply (editable)").fill(edited)
    page.get_by_role("button", name="Save edits (e)").click()
    page.get_by_role("status").filter(has_text="Edited and approved m-edit").wait_for()

    def both() -> dict[str, Any] | None:
        got = {d["message_id"]: d for d in console.delivered()}
        return got if {"m-approve", "m-edit"} <= set(got) else None

    delivered = wait_for(both, what="the outbox to receive both replies")
    assert delivered["m-approve"]["decision"] == "approved"
    assert delivered["m-edit"] == {"message_id": "m-edit", "reply": edited, "decision": "edited"}
    # The acceptance rate on the page counts both decisions.
    page.locator("[data-acceptance='replies']").wait_for()
    assert "100" in page.locator("[data-acceptance='replies']").inner_text()


def test_cancel_a_batch_from_the_console(watched: Watched, console: Console) -> None:
    page = watched.page
    lines = [
        {
            "custom_id": f"slow-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "slow", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(3)
    ]
    upload = console.http.post(
        "/v1/files",
        files={"file": ("in.jsonl", b"".join(orjson.dumps(x) + b"\n" for x in lines))},
        data={"purpose": "batch"},
    )
    assert upload.status_code == 200, upload.text
    created = console.http.post(
        "/v1/batches",
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    wait_for(
        lambda: console.http.get(f"/v1/batches/{batch_id}").json()["status"] == "in_progress",
        what="the batch to start",
    )

    watched.sign_in()
    watched.open("batches")
    page.get_by_role("button", name=f"Cancel batch {batch_id}").click()  # confirm() accepted
    row = page.locator(f"tr[data-batch-id='{batch_id}']")
    wait_for(
        lambda: row.get_attribute("data-status") in ("cancelling", "cancelled"),
        what="the row to show the cancellation",
    )
    status = console.http.get(f"/v1/batches/{batch_id}").json()["status"]
    assert status in ("cancelling", "cancelled")


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280x800", "390x844"])
def test_every_page_renders_labelled_and_fits_the_screen(
    watched: Watched, console: Console, viewport: dict[str, int]
) -> None:
    page = watched.page
    page.set_viewport_size(viewport)
    # Something to show on each page: a request, a dead letter, a review waiting.
    assert console.chat(MASTER).status_code == 200
    console.send_event(f"esc-{viewport['width']}", "Cy", "Escalate this", flow="escalations")
    console.send_event(f"m-wait-{viewport['width']}", "Di", "Can I change my address?")
    wait_for(
        lambda: console.http.get("/admin/flows/escalations/dead-letters").json()["data"],
        what="a dead letter",
    )
    watched.sign_in()
    ARTIFACTS.mkdir(exist_ok=True)
    for name in PAGES:
        watched.open(name)
        if name == "flows":
            page.get_by_role("button", name="Open escalations").click()
            page.get_by_role("button", name=re.compile("^Replay record ")).first.wait_for()
            page.get_by_role("button", name=re.compile("^Steps of run ")).first.click()
            page.get_by_text("Average time per record, by step").wait_for()
        if name == "review":
            page.locator("button[data-record]").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(
            path=str(ARTIFACTS / f"{name}-{viewport['width']}x{viewport['height']}.png"),
            full_page=True,
        )
        problems = page.evaluate(
            """() => {
                const named = (e) => (e.labels && e.labels.length) || e.getAttribute('aria-label')
                    || e.getAttribute('aria-labelledby');
                const controls = [...document.querySelectorAll('input, select, textarea')]
                    .filter((e) => e.type !== 'hidden' && !named(e)).map((e) => e.outerHTML);
                const buttons = [...document.querySelectorAll('button, a[href]')]
                    .filter((e) => !(e.textContent.trim() || e.getAttribute('aria-label')))
                    .map((e) => e.outerHTML);
                const landmarks = ['header', 'nav', 'main']
                    .filter((t) => !document.querySelector(t));
                const overflow = document.documentElement.scrollWidth - window.innerWidth;
                return {controls, buttons, landmarks, overflow};
            }"""
        )
        assert problems["controls"] == [], f"{name}: unlabelled controls"
        assert problems["buttons"] == [], f"{name}: buttons without a name"
        assert problems["landmarks"] == [], f"{name}: missing landmarks"
        assert problems["overflow"] <= 1, f"{name}: wider than the screen at {viewport}"
