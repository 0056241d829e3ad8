"""A stand-in for the CRM's notes API, on loopback: it stores the notes it receives.

Like the real API it wants the bearer token, refuses (422) a note that does not match
``schemas/crm_note.json`` and honours ``Idempotency-Key``.

    POST /api/accounts/{account_id}/notes   -> 201 {"id": "note_..."}
    GET  /api/notes                         -> every stored note
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

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "crm_note.json").read_text())


class StandInNotesCRM:
    def __init__(self, token: str) -> None:
        self.token = token
        self.notes: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/accounts/{account_id}/notes", self._post, methods=["POST"]),
                Route("/api/notes", self._list),
            ]
        )
        self.server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> StandInNotesCRM:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

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
            answer = {"id": f"note_{len(self.notes) + 1:04d}"}
            self.notes.append({**answer, "account_id": request.path_params["account_id"], **body})
            if key:
                self._answers[key] = answer
        return JSONResponse(answer, status_code=201)

    async def _list(self, request: Request) -> JSONResponse:
        return JSONResponse({"data": self.notes})


if (
    __name__ == "__main__"
):  # python examples/meeting-debrief/crm_notes_standin.py [PORT]: serve until Ctrl-C
    import os
    import sys
    import time

    standin = StandInNotesCRM(os.environ.get("CRM_TOKEN", "demo-token"))
    standin.server.port = int(sys.argv[1]) if len(sys.argv) > 1 else 8767
    with standin:
        print(f"stand-in on {standin.url} (token from $CRM_TOKEN); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
