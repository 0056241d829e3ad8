"""Gemini on Vertex AI: the Gemini routes under Vertex's resource path, Vertex's ``:predict``
for embedding models, and an OAuth token endpoint for service-account credentials.

``/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}``
answers ``generateContent`` and ``streamGenerateContent`` through the Gemini simulator (the
bodies are the same); a Bearer access token is required. ``POST /token`` plays Google's token
endpoint for a service-account JWT grant (point a key file's ``token_uri`` at it): the JWT's
claims are checked, not its signature, and the access token it returns is what the simulated
Vertex routes accept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aiwire.simulator import gemini_api
from aiwire.simulator.embeddings import embed
from aiwire.simulator.engine import count_tokens
from aiwire.simulator.errors import gemini_error
from aiwire.simulator.gate import Admitted, admit, state_of
from aiwire.simulator.wire import BadRequestBody, json_response, new_id, read_json

MODELS_PATH = (
    "/{version}/projects/{project}/locations/{location}/publishers/google/models/{rest:path}"
)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3599


def _headers() -> dict[str, str]:
    return {"x-goog-request-id": new_id("", 16), "server": "ESF"}


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return None


async def models(request: Request) -> Response:
    """Every Vertex publisher-model route."""
    token = _bearer(request)
    if token is None:
        return gemini_error(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
            headers=_headers(),
            grpc_status="UNAUTHENTICATED",
        )
    rest = str(request.path_params["rest"])
    model, _, method = rest.partition(":")
    if method == "predict" and request.method == "POST":
        return await _predict(request, model, token)
    return await gemini_api.gemini_models(request)


async def _predict(request: Request, model: str, token: str) -> Response:
    """Text embeddings: ``{"instances": [{"content": …}], "parameters": {…}}``."""
    headers = _headers()
    try:
        body = await read_json(request)
    except BadRequestBody as exc:
        return gemini_error(400, str(exc), headers=headers)
    instances = body.get("instances")
    texts = [i.get("content") for i in instances] if isinstance(instances, list) else []
    if not texts or not all(isinstance(t, str) and t for t in texts):
        return gemini_error(
            400, "instances: each instance needs a non-empty `content`", headers=headers
        )
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    dims = params.get("outputDimensionality") if params else None
    if dims is None:
        dims = state_of(request).config.embedding_dimensions
    if not isinstance(dims, int) or dims < 1:
        return gemini_error(
            400, "parameters.outputDimensionality must be positive", headers=headers
        )
    tokens = sum(count_tokens(str(t)) for t in texts)
    admitted = await admit(
        request,
        "gemini",
        model,
        api_key=token,
        estimate=tokens,
        actual=tokens,
        headers=headers,
        stream=False,
    )
    if not isinstance(admitted, Admitted):
        return admitted
    predictions = [
        {
            "embeddings": {
                "values": embed(str(t), dims),
                "statistics": {"truncated": False, "token_count": count_tokens(str(t))},
            }
        }
        for t in texts
    ]
    chars = sum(len(str(t)) for t in texts)
    return json_response(
        {"predictions": predictions, "metadata": {"billableCharacterCount": chars}},
        headers=admitted.headers,
    )


async def token(request: Request) -> Response:
    """Google's OAuth 2.0 token endpoint, for the JWT-bearer grant of service accounts."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if form.get("grant_type") != JWT_GRANT:
        return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
    claims = _jwt_claims(form.get("assertion", ""))
    if claims is None:
        return _oauth_error("invalid_grant", "Invalid JWT: not a JSON Web Token.")
    now = time.time()
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now:
        return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
    if not claims.get("scope"):
        return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    issuer = str(claims.get("iss", ""))
    if issuer.startswith("revoked"):
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")
    digest = hashlib.sha256(f"{issuer}:{claims.get('iat')}".encode()).hexdigest()
    return json_response(
        {
            "access_token": f"ya29.sim-{digest[:40]}",
            "expires_in": TOKEN_LIFETIME,
            "token_type": "Bearer",
        }
    )


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400)
