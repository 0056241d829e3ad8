"""schemathesis against the admin API's own OpenAPI spec, on a running gateway (SQLite).

Every operation gets generated requests - valid ones and invalid ones, boundary values - sent
with the master key; each answer must be no 5xx, have a documented status and content type, and
match the documented schema (errors included: OpenAI's shape). Bounded: ``MAX_EXAMPLES`` per
operation, so the whole module stays well under a minute or two.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aiwire.config import simulator_config
from aiwire.secrets import Secret
from aiwire.server.build import GatewayParts, build_gateway
from aiwire.serving import BackgroundServer

MASTER = "sk-aiwire-master-schemathesis-0123456789"
MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def gateway(store_url: str) -> GatewayParts:
    return build_gateway(
        simulator_config("http://127.0.0.1:9"),  # no model call is made
        store_url=store_url,
        master_key=Secret(MASTER),
    )


def admin_spec(parts: GatewayParts) -> dict[str, Any]:
    assert parts.gateway.admin is not None
    return parts.gateway.admin.app.openapi()


# The operations to test come from the spec a gateway generates (the same code serves it; the
# fixture checks the served one is identical), so pytest can list them before any server runs.
SPEC = admin_spec(gateway("sqlite:///:memory:"))
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    parts = gateway(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'aiwire.db'}")
    assert parts.gateway.auth_guard is not None
    parts.gateway.auth_guard = None  # every request here carries the master key
    with BackgroundServer(parts.gateway, lifespan="on") as server:
        served = httpx.get(f"{server.url}/admin/openapi.json", timeout=10)
        assert served.json() == SPEC
        yield server.url


def _auth(case: schemathesis.Case) -> dict[str, str]:
    """The master key, unless the case's headers are the invalid part on purpose (a missing or
    malformed Authorization): adding the key back would make that case a valid request, which
    the server rightly accepts and schemathesis would then report as negative data accepted."""
    components = case.meta.components if case.meta is not None else {}
    header = components.get(ParameterLocation.HEADER)
    if header is not None and header.mode is GenerationMode.NEGATIVE:
        return {}
    return {"authorization": f"Bearer {MASTER}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=list(HealthCheck),
)
def test_admin_api_conforms_to_its_spec(case: schemathesis.Case, gateway_url: str) -> None:
    case.call_and_validate(
        base_url=gateway_url,
        headers=_auth(case),
        checks=CHECKS,
        timeout=10,
    )
