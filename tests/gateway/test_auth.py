"""Gateway authentication: master key, virtual keys, scopes, and the revocation bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiwire import errors
from aiwire.secrets import Secret
from aiwire.server.auth import Authenticator, bearer
from aiwire.store.keys import KeyRecord

MASTER = "sk-master-0123456789abcdef"
SECRET = "aiw-" + "k" * 40


def record(**kw: object) -> KeyRecord:
    base: dict[str, object] = {
        "id": "key_1",
        "name": "app1",
        "key_prefix": "aiw-kkkkkkkk",
        "models": (),
        "endpoints": (),
        "team": None,
        "created_at": datetime.now(UTC),
    }
    base.update(kw)
    return KeyRecord(**base)  # type: ignore[arg-type]


class Lookup:
    def __init__(self, rec: KeyRecord | None) -> None:
        self.rec, self.calls = rec, 0

    async def __call__(self, secret: str) -> KeyRecord | None:
        self.calls += 1
        return self.rec if secret == SECRET else None


def test_bearer_sources() -> None:
    assert bearer("Bearer abc", None, None) == "abc"
    assert bearer("bearer  abc ", None, None) == "abc"
    assert bearer(None, "xyz", None) == "xyz"
    assert bearer(None, None, "azure") == "azure"
    assert bearer("Basic zzz", None, None) is None


async def test_master_key() -> None:
    auth = Authenticator(master_key=Secret(MASTER), lookup=None)
    p = await auth.authenticate(MASTER)
    assert p.is_master and p.key_id is None
    with pytest.raises(errors.AuthenticationError, match="aiw-"):
        await auth.authenticate(MASTER + "x")


async def test_missing_and_foreign_keys_say_what_to_do() -> None:
    auth = Authenticator(master_key=None, lookup=Lookup(record()))
    with pytest.raises(errors.AuthenticationError, match="Authorization: Bearer"):
        await auth.authenticate(None)
    with pytest.raises(errors.AuthenticationError, match="provider keys are not accepted"):
        await auth.authenticate("sk-proj-someprovider")
    with pytest.raises(errors.AuthenticationError, match="unknown key"):
        await auth.authenticate("aiw-unknown")


async def test_virtual_key_is_cached_and_revocation_applies_within_ttl() -> None:
    now = [0.0]
    lookup = Lookup(record())
    auth = Authenticator(master_key=None, lookup=lookup, ttl=2.0, clock=lambda: now[0])
    for _ in range(5):
        assert (await auth.authenticate(SECRET)).key_id == "key_1"
    assert lookup.calls == 1  # no database hit per request
    lookup.rec = record(revoked_at=datetime.now(UTC) - timedelta(seconds=1))
    now[0] = 1.0
    await auth.authenticate(SECRET)  # still cached
    now[0] = 2.5  # past the ttl: the revocation is seen
    with pytest.raises(errors.AuthenticationError, match="revoked or expired"):
        await auth.authenticate(SECRET)


async def test_unknown_keys_are_negatively_cached() -> None:
    lookup = Lookup(None)
    auth = Authenticator(master_key=None, lookup=lookup)
    for _ in range(3):
        with pytest.raises(errors.AuthenticationError):
            await auth.authenticate(SECRET)
    assert lookup.calls == 1


async def test_expired_key_refused() -> None:
    auth = Authenticator(
        master_key=None,
        lookup=Lookup(record(expires_at=datetime.now(UTC) - timedelta(minutes=1))),
    )
    with pytest.raises(errors.AuthenticationError):
        await auth.authenticate(SECRET)


async def test_scopes() -> None:
    auth = Authenticator(
        master_key=None,
        lookup=Lookup(record(models=("model-a",), endpoints=("/v1/chat/completions",))),
    )
    p = await auth.authenticate(SECRET)
    p.authorize("model-a", "/v1/chat/completions")
    with pytest.raises(errors.PermissionDeniedError, match="model-b") as info:
        p.authorize("model-b", "/v1/chat/completions")
    assert info.value.status == 403
    with pytest.raises(errors.PermissionDeniedError, match="/v1/embeddings"):
        p.authorize("model-a", "/v1/embeddings")


async def test_cache_is_bounded() -> None:
    auth = Authenticator(master_key=None, lookup=Lookup(None), max_entries=10)
    for i in range(50):
        with pytest.raises(errors.AuthenticationError):
            await auth.authenticate(f"aiw-{i}")
    assert len(auth._cache) == 10


def test_the_presented_secret_is_found_in_one_pass() -> None:
    from aiwire.server.auth import presented_secret

    hdrs = [(b"host", b"x"), (b"authorization", b"Bearer aiw-abc"), (b"x-api-key", b"aiw-other")]
    assert presented_secret(hdrs) == "aiw-abc"
    assert presented_secret([(b"x-api-key", b"aiw-k")]) == "aiw-k"
    assert presented_secret([(b"api-key", b"aiw-azure")]) == "aiw-azure"
    assert presented_secret([(b"authorization", b"Basic Zm9v"), (b"api-key", b"aiw-a")]) == "aiw-a"
    assert presented_secret([(b"host", b"x")]) is None
