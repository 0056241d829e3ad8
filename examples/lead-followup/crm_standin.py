"""A stand-in for the CRM, on loopback: it stores the activities it receives.

It behaves like the real API would in the ways that matter to the flow: it wants the bearer
token, it refuses (422) an activity that does not match ``schemas/crm_activity.json``, and it
honours ``Idempotency-Key`` (a repeated key stores nothing new and gets the first answer).

    POST /api/leads/{lead_id}/activities   -> 201 {"id": "act_..."}
    GET  /api/activities                   -> every stored activity
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiwire.serving import BackgroundServer

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "crm_activity.json").read_text())


class StandInCRM:
    def __init__(self, token: str) -> None:
        self.token = token
        self.activities: list[dict[str, Any]] = []
        self.requests = 0
        self._answers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/leads/{lead_id}/activities", self._post, methods=["POST"]),
                Route("/api/activities", self._list),
            ]
        )
        self.server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> StandInCRM:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    async def _post(self, request: Request) -> JSONResponse:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "not JSON"}, status_code=400)
        errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(body), key=str)
        if errors:
            return JSONResponse({"error": [e.message for e in errors]}, status_code=422)
        if body["lead_id"] != request.path_params["lead_id"]:
            return JSONResponse({"error": "lead_id does not match the URL"}, status_code=422)
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self._answers:
                return JSONResponse(self._answers[key], status_code=201)
            answer = {"id": f"act_{len(self.activities) + 1:04d}"}
            self.activities.append({**answer, **body})
            if key:
                self._answers[key] = answer
        return JSONResponse(answer, status_code=201)

    async def _list(self, request: Request) -> JSONResponse:
        return JSONResponse({"data": self.activities})


if (
    __name__ == "__main__"
):  # python examples/lead-followup/crm_standin.py [PORT]: serve until Ctrl-C
    import os
    import sys
    import time

    standin = StandInCRM(os.environ.get("CRM_TOKEN", "demo-token"))
    standin.server.port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    with standin:
        print(f"stand-in on {standin.url} (token from $CRM_TOKEN); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
