"""What the Bedrock and Vertex tests share: an isolated AWS environment, an independent SigV4
check, a throwaway service-account key and a local OAuth token endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiwire.serving import BackgroundServer

AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """No AWS setting from the machine leaks in, and nothing asks the metadata service.
    Returns the (empty) shared credentials and config file paths the test may fill."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    credentials, config = tmp_path / "aws_credentials", tmp_path / "aws_config"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return credentials, config


def sigv4_reference(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
    secret: str,
    amz_date: str,
    region: str,
    service: str,
) -> str:
    """SigV4 written from AWS's description, independent of botocore: the signature a service
    computes for a request as it arrived (``raw_path`` as on the wire, URI-encoded once more)."""
    canonical = "\n".join(
        [
            method,
            quote(raw_path, safe="/~"),
            query,
            "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed),
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> dict[str, str]:
    """``AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`` as a dict."""
    assert value.startswith("AWS4-HMAC-SHA256 ")
    return dict(p.strip().split("=", 1) for p in value[len("AWS4-HMAC-SHA256 ") :].split(","))


# --- Google -----------------------------------------------------------------------------------


@dataclass
class ServiceAccount:
    path: Path
    key: rsa.RSAPrivateKey
    email: str
    project: str

    def verify(self, jwt: str) -> dict[str, Any]:
        """The claims of a JWT this account's key signed (raises if the signature is wrong)."""
        head, body, sig = jwt.split(".")
        self.key.public_key().verify(
            _b64d(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        claims: dict[str, Any] = json.loads(_b64d(body))
        return claims


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def make_service_account(
    directory: Path, token_uri: str, project: str = "sim-project"
) -> ServiceAccount:
    """A service-account key file with a key made for this test run (never a real account)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"aiwire-test@{project}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(info))
    return ServiceAccount(path, key, email, project)


@dataclass
class TokenEndpoint:
    """A local stand-in for ``https://oauth2.googleapis.com/token`` that checks each JWT's
    signature with the service account's public key and counts the tokens it mints."""

    lifetime: int = 3600
    account: ServiceAccount | None = None
    #: Answer every grant as Google does for a deleted key or service account.
    refuse: bool = False
    grants: list[dict[str, Any]] = field(default_factory=list)
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/token"

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if self.refuse:
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return JSONResponse(body, 400)
        assert self.account is not None
        claims = self.account.verify(form["assertion"])
        # google-auth addresses its JWT to Google's endpoint whatever the token_uri
        assert claims["aud"] == "https://oauth2.googleapis.com/token"
        assert claims["iss"] == self.account.email
        assert "cloud-platform" in claims["scope"] and claims["exp"] > time.time()
        self.grants.append(claims)
        digest = hashlib.sha256(form["assertion"].encode()).hexdigest()[:16]
        token = f"ya29.test-{len(self.grants)}-{digest}"
        return JSONResponse(
            {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}
        )

    def __enter__(self) -> TokenEndpoint:
        app = Starlette(routes=[Route("/token", self._token, methods=["POST"])])
        self.server = BackgroundServer(app).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.stop()
