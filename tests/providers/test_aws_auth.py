"""SigV4 signing against AWS's published test-suite vectors and an independent implementation;
the standard credential chain (environment, files, profiles, credential_process refresh)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.providers.cloud import isolate_aws, parse_authorization, sigv4_reference
from tests.providers.support import T, Upstream, read_fixture

from aiwire import errors
from aiwire.providers import aws_auth
from aiwire.providers.aws_auth import AwsCredentials, sign
from aiwire.providers.bedrock import BedrockProvider
from aiwire.serving import BackgroundServer
from aiwire.types import ChatRequest

# The AWS SigV4 test suite's credentials and clock (docs.aws.amazon.com, "Signature Version 4
# test suite"): not a real account.
SUITE = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


@pytest.mark.parametrize(
    ("method", "url", "signature"),
    [
        (  # get-vanilla
            "GET",
            "https://example.amazonaws.com/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (  # post-vanilla
            "POST",
            "https://example.amazonaws.com/",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (  # get-vanilla-query-order-key-case: the query is sorted before signing
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (  # get-utf8: the path is percent-encoded for the canonical request
            "GET",
            "https://example.amazonaws.com/ሴ",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
    ],
    ids=["get-vanilla", "post-vanilla", "get-vanilla-query-order-key-case", "get-utf8"],
)
def test_aws_signature_v4_test_suite_vectors(method: str, url: str, signature: str) -> None:
    added = sign(method, url, {}, b"", SUITE, "us-east-1", "service", when=SUITE_TIME)
    assert added == {
        "x-amz-date": "20150830T123600Z",
        "authorization": f"AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}",
    }


def test_the_reference_implementation_agrees_with_the_suite() -> None:
    """The independent SigV4 used below is itself right: it reproduces get-vanilla."""
    assert (
        sigv4_reference(
            method="GET",
            raw_path="/",
            query="",
            headers={"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
            signed=["host", "x-amz-date"],
            body=b"",
            secret=SUITE.secret_key,
            amz_date="20150830T123600Z",
            region="us-east-1",
            service="service",
        )
        == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_session_token_is_sent_and_signed_but_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    creds = AwsCredentials("ASIAEXAMPLE", "secret/key", "FwoGZXIvYXdzEXAMPLE//token==")
    added = sign(
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        {"content-type": "application/json"},
        b"{}",
        creds,
        "us-east-1",
        "bedrock",
    )
    assert added["x-amz-security-token"] == creds.token
    auth = parse_authorization(added["authorization"])
    assert auth["SignedHeaders"] == "content-type;host;x-amz-date;x-amz-security-token"
    assert auth["Credential"].endswith("/us-east-1/bedrock/aws4_request")
    assert creds.token not in caplog.text and creds.secret_key not in caplog.text
    assert "secret/key" not in repr(creds) and "token" not in repr(creds).lower().split("(")[1]


# --- the signature as the service sees it, over real HTTP ---------------------------------------


class Capture:
    """A server that records each request as it arrived (path bytes, headers, body)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.server = BackgroundServer(
            Starlette(routes=[Route("/{rest:path}", self.handle, methods=["POST"])])
        )

    async def handle(self, request: Request) -> Response:
        self.seen.append(
            {
                "raw_path": request.scope["raw_path"].decode("ascii"),
                "path": request.url.path,
                "query": request.scope["query_string"].decode(),
                "headers": {k.decode().lower(): v.decode() for k, v in request.scope["headers"]},
                "body": await request.body(),
            }
        )
        return JSONResponse(orjson.loads(read_fixture("bedrock", "converse_text.json")))


@pytest.fixture
def capture() -> Any:
    cap = Capture()
    with cap.server:
        yield cap


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ],
)
async def test_the_service_can_verify_what_arrives_on_the_wire(
    capture: Capture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    transport: str,
    model: str,
) -> None:
    """Each transport may re-encode the path; the signature must cover the bytes it sends."""
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    http = httpx.AsyncClient() if transport == "httpx" else None
    p = BedrockProvider(
        name="b",
        base_url=capture.server.url,
        options={"region": "eu-central-1"},
        headers={"x-team": "data   science"},  # SigV4 collapses the inner spaces
        http=http,
    )
    try:
        resp = await p.chat(
            ChatRequest(model=model, messages=[{"role": "user", "content": "Hi"}]), T
        )
    finally:
        await p.aclose()
        if http is not None:
            await http.aclose()
    assert resp.text
    (seen,) = capture.seen
    assert seen["path"] == f"/model/{model}/converse"  # the service reads the model id back
    auth = parse_authorization(seen["headers"]["authorization"])
    signed = auth["SignedHeaders"].split(";")
    assert {"host", "x-amz-date", "content-type", "x-team"} <= set(signed)
    assert auth["Credential"].startswith("AKIAIOSFODNN7EXAMPLE/")
    assert auth["Credential"].endswith("/eu-central-1/bedrock/aws4_request")
    expected = sigv4_reference(
        method="POST",
        raw_path=seen["raw_path"],
        query=seen["query"],
        headers=seen["headers"],
        signed=signed,
        body=seen["body"],
        secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        amz_date=seen["headers"]["x-amz-date"],
        region="eu-central-1",
        service="bedrock",
    )
    assert auth["Signature"] == expected


# --- the credential chain -------------------------------------------------------------------


def bedrock(up: Upstream, **options: Any) -> BedrockProvider:
    return BedrockProvider(
        name="b",
        options=options,
        http=httpx.AsyncClient(transport=httpx.MockTransport(up)),
    )


def hi() -> ChatRequest:
    return ChatRequest(model="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": "Hi"}])


async def test_environment_credentials_and_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    up = Upstream(body=read_fixture("bedrock", "converse_text.json"))
    await bedrock(up).chat(hi(), T)
    sent = up.posts[0]
    assert str(sent.url) == (
        "https://bedrock-runtime.ap-southeast-2.amazonaws.com/model/amazon.nova-lite-v1:0/converse"
    )
    assert sent.headers["x-amz-security-token"] == "env-session-token"
    assert "Credential=AKIAENVIRONMENT00001/" in sent.headers["authorization"]
    assert "/ap-southeast-2/bedrock/aws4_request" in sent.headers["authorization"]


async def test_profile_from_shared_files_with_its_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials, config = isolate_aws(monkeypatch, tmp_path)
    credentials.write_text(
        "[default]\naws_access_key_id = AKIADEFAULT000000001\naws_secret_access_key = d\n"
        "[ci]\naws_access_key_id = AKIACIPROFILE0000001\naws_secret_access_key = c\n"
    )
    config.write_text("[default]\nregion = us-west-2\n[profile ci]\nregion = eu-west-3\n")
    up = Upstream(body=read_fixture("bedrock", "converse_text.json"))
    await bedrock(up, profile="ci").chat(hi(), T)
    monkeypatch.setenv("AWS_PROFILE", "ci")
    await bedrock(up).chat(hi(), T)
    await bedrock(up, profile="default", region="us-east-1").chat(hi(), T)
    hosts = [r.url.host for r in up.posts]
    keys = [r.headers["authorization"].split("Credential=")[1][:20] for r in up.posts]
    assert hosts == [
        "bedrock-runtime.eu-west-3.amazonaws.com",
        "bedrock-runtime.eu-west-3.amazonaws.com",
        "bedrock-runtime.us-east-1.amazonaws.com",  # options.region wins over the profile's
    ]
    assert keys == ["AKIACIPROFILE0000001", "AKIACIPROFILE0000001", "AKIADEFAULT000000001"]


async def test_expiring_credentials_are_refreshed_before_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """credential_process credentials that expire within botocore's refresh window are
    fetched again for the next request (off the event loop)."""
    _, config = isolate_aws(monkeypatch, tmp_path)
    counter = tmp_path / "count"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'ASIAPROCESS{n:09d}',\n"
        "  'SecretAccessKey': f's{n}', 'SessionToken': f't{n}',\n"
        "  'Expiration': soon.isoformat()}))\n"
    )
    config.write_text(
        f"[default]\nregion = us-east-1\ncredential_process = {sys.executable} {script}\n"
    )
    up = Upstream(body=read_fixture("bedrock", "converse_text.json"))
    p = bedrock(up)
    await p.chat(hi(), T)
    await p.chat(hi(), T)
    tokens = [r.headers["x-amz-security-token"] for r in up.posts]
    assert tokens[0] != tokens[1] and int(counter.read_text()) >= 2


async def test_no_credentials_is_an_authentication_error_naming_the_fixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    up = Upstream()
    with pytest.raises(errors.AuthenticationError, match="AWS_ACCESS_KEY_ID") as info:
        await bedrock(up, region="us-east-1").chat(hi(), T)
    assert info.value.retryable is False and not up.requests


async def test_unknown_profile_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)
    with pytest.raises(errors.AuthenticationError, match="nope"):
        await bedrock(Upstream(), profile="nope", region="us-east-1").chat(hi(), T)


async def test_no_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    with pytest.raises(errors.ConfigError, match="AWS_REGION"):
        await bedrock(Upstream()).chat(hi(), T)


def test_missing_botocore_names_the_extra_and_api_keys_still_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    aws_auth.botocore.cache_clear()
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # makes the import fail
    try:
        with pytest.raises(errors.ConfigError, match=r"aiwire\[bedrock\]"):
            BedrockProvider(name="b", options={"region": "us-east-1"})
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-abc")
        p = BedrockProvider(name="b", options={"region": "us-east-1"})
        assert p._chain is None
    finally:
        aws_auth.botocore.cache_clear()


async def test_bedrock_api_key_is_a_bearer_token_and_needs_no_signature(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl")
    up = Upstream(body=read_fixture("bedrock", "converse_text.json"))
    await bedrock(up, region="us-west-2").chat(hi(), T)
    sent = up.posts[0]
    assert sent.headers["authorization"] == "Bearer ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"
    assert "x-amz-date" not in sent.headers
    assert json.loads(sent.content)["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]
