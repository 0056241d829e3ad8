"""A stand-in for the helpdesk, on loopback: it receives the replies the flow sends.

Like the real API it wants its bearer token, refuses (422) a reply that does not match
``schemas/helpdesk_reply.json`` and honours ``Idempotency-Key``.

    POST /api/tickets/{ticket_id}/replies   -> 201 {"id": "rep_..."}
    GET  /api/replies                       -> every stored reply

It also plays the helpdesk's other half: :meth:`event` builds the signed webhook request it
would send for a new message (HMAC-SHA256 over ``<timestamp>.<body>``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiwire.flows.webhook import sign
from aiwire.serving import BackgroundServer

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "helpdesk_reply.json").read_text())


class StandInHelpdesk:
    def __init__(self, token: str, webhook_secret: str) -> None:
        self.token = token
        self.webhook_secret = webhook_secret
        self.replies: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/tickets/{ticket_id}/replies", self._post, methods=["POST"]),
                Route("/api/replies", self._list),
            ]
        )
        self.server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> StandInHelpdesk:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def event(self, message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the webhook announcing ``message``."""
        body = json.dumps({k: v for k, v in message.items() if k != "event_id"}).encode()
        ts = int(time.time())
        return body, {
            "content-type": "application/json",
            "x-helpdesk-event": message["event_id"],
            "x-timestamp": str(ts),
            "x-signature": sign(self.webhook_secret, body, ts),
        }

    async def _post(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "not JSON"}, status_code=400)
        errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(body), key=str)
        if errors:
            return JSONResponse({"error": [e.message for e in errors]}, status_code=422)
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self._answers:
                return JSONResponse(self._answers[key], status_code=201)
            answer = {"id": f"rep_{len(self.replies) + 1:04d}"}
            self.replies.append({**answer, "ticket_id": request.path_params["ticket_id"], **body})
            if key:
                self._answers[key] = answer
        return JSONResponse(answer, status_code=201)

    async def _list(self, request: Request) -> JSONResponse:
        return JSONResponse({"data": self.replies})


if __name__ == "__main__":  # python examples/support-triage/helpdesk_standin.py [PORT]
    import os
    import sys
    import time

    standin = StandInHelpdesk(
        os.environ.get("HELPDESK_TOKEN", "demo-token"),
        os.environ.get("HELPDESK_WEBHOOK_SECRET", "demo-secret"),
    )
    standin.server.port = int(sys.argv[1]) if len(sys.argv) > 1 else 8766
    with standin:
        print(f"stand-in helpdesk on {standin.url}; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
