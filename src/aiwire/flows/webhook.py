"""The webhook source: ``POST /flows/{name}/events`` with an HMAC-SHA256 signature.

The sender computes, with the shared secret::

    signature = hex(HMAC_SHA256(secret, f"{timestamp}.".encode() + raw_body))
    X-Timestamp: <unix seconds>
    X-Signature: sha256=<signature>
    X-Event-Id: <its id for the event>   (optional; else ``event_id_field``, else a body hash)

(``signed_payload: body`` signs the raw body alone, for senders that do not sign a timestamp.)
An event is refused with 401 — and nothing is stored — when the signature is missing or does not
match (compared in constant time; several comma-separated signatures are accepted during a
secret rotation) or when the timestamp is outside the replay window (``tolerance``, default
300 s, either direction). An accepted event is stored with its record in one transaction; the
same event id again is answered 200 ``duplicate`` and stored nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import orjson

from aiwire.flows import paths
from aiwire.flows.context import StepFailure, record_key
from aiwire.flows.definition import WebhookSource
from aiwire.flows.loader import Flow
from aiwire.flows.store import FlowStore
from aiwire.secrets import resolve


class WebhookRefused(Exception):
    """An event the endpoint will not take; ``status`` and ``message`` go to the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(
    secret: str | bytes, body: bytes, timestamp: int, *, signed_payload: str = "timestamp.body"
) -> str:
    """The ``X-Signature`` value a sender puts on ``body`` (for senders, tests and examples)."""
    key = secret.encode() if isinstance(secret, str) else secret
    payload = f"{timestamp}.".encode() + body if signed_payload == "timestamp.body" else body
    return "sha256=" + hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify(
    source: WebhookSource, secret: bytes, headers: dict[str, str], body: bytes, now: float
) -> None:
    """Raise :class:`WebhookRefused` (401) unless the event is signed and fresh."""
    signature = headers.get(source.signature_header.lower())
    if not signature:
        raise WebhookRefused(
            401, f"missing signature: send {source.signature_header}: sha256=<hex>"
        )
    stamp = headers.get(source.timestamp_header.lower(), "").strip()
    if not stamp.isdigit():
        raise WebhookRefused(
            401, f"missing or malformed {source.timestamp_header}: send the Unix time in seconds"
        )
    ts = int(stamp)
    seconds = ts / 1000 if ts > 100_000_000_000 else ts  # milliseconds, as some senders do
    if abs(now - seconds) > source.tolerance:
        raise WebhookRefused(
            401,
            f"stale event: {source.timestamp_header} is outside the {source.tolerance:g} s replay "
            "window (check the sender's clock)",
        )
    payload = f"{stamp}.".encode() + body if source.signed_payload == "timestamp.body" else body
    expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
    for candidate in signature.split(","):
        value = candidate.strip()
        value = value.split("=", 1)[1] if value.lower().startswith("sha256=") else value
        if hmac.compare_digest(value.lower().encode(), expected.encode()):
            return
    raise WebhookRefused(401, "invalid signature")


@dataclass
class Accepted:
    event_id: str
    key: str
    duplicate: bool


async def receive(
    flow: Flow, store: FlowStore, headers: dict[str, str], body: bytes, *, now: float | None = None
) -> Accepted:
    """Verify, parse, de-duplicate and store one event (headers with lower-case names)."""
    source = flow.spec.source
    if not isinstance(source, WebhookSource):
        raise WebhookRefused(404, f"flow {flow.name!r} does not take webhook events")
    if len(body) > source.max_body_kb * 1024:
        raise WebhookRefused(413, f"event body is larger than {source.max_body_kb} KB")
    secret = resolve(source.secret, field=f"{flow.name}: source.secret").reveal().encode()
    verify(source, secret, headers, body, time.time() if now is None else now)
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRefused(400, "the event body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "the event body must be a JSON object")
    event_id = headers.get(source.event_id_header.lower(), "").strip()
    if not event_id and source.event_id_field:
        value = paths.get(data, source.event_id_field)
        event_id = "" if value is paths.MISSING or value is None else str(value)
    if not event_id:
        event_id = "sha256:" + hashlib.sha256(body).hexdigest()
    event_id = event_id[:255]
    try:
        key = record_key(flow, data, default=event_id)
    except StepFailure as exc:
        raise WebhookRefused(422, exc.message) from None
    new = await store.ingest_event(flow.name, event_id, key, data)
    return Accepted(event_id, key, duplicate=not new)
