"""Virtual keys: secrets never stored, lookup, scopes, expiry, revocation, rotation, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select, text

from aiwire.store import (
    AuditLog,
    Database,
    KeyStateError,
    KeyStore,
    UnknownKeyError,
    audit,
    hash_secret,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def dump_every_value(db: Database) -> str:
    """Every column of every row of every table, as text: what a database leak would expose."""
    async with db.engine.connect() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        assert {"api_keys", "audit_log", "request_log"} <= set(metadata.tables)
        parts = []
        for table in metadata.tables.values():
            for row in (await conn.execute(select(table))).all():
                parts.extend(repr(value) for value in row)
    return "\n".join(parts)


async def audit_rows(db: Database) -> list[AuditLog]:
    async with db.session() as session:
        return list(await session.scalars(select(AuditLog).order_by(AuditLog.id)))


async def test_create_returns_a_secret_once_and_stores_only_its_hash(
    database: Database, db_url: str
) -> None:
    keys = KeyStore(database)
    record, secret = await keys.create(
        "billing-app",
        ["gpt-4o-mini"],
        ["/v1/chat/completions"],
        team="billing",
        metadata={"owner": "ana"},
        actor="admin",
    )
    value = secret.reveal()
    assert value.startswith("aiw-") and len(value) == 44
    assert value not in repr(secret) and value not in f"{secret}"
    assert record.id.startswith("key_")
    assert record.key_prefix == value[:12] and record.display == value[:12] + "…"
    assert (record.models, record.endpoints, record.team) == (
        ("gpt-4o-mini",),
        ("/v1/chat/completions",),
        "billing",
    )
    assert record.metadata == {"owner": "ana"}
    await keys.rotate(record.id, timedelta(hours=1), actor="admin")  # more rows to search

    everything = await dump_every_value(database)
    assert hash_secret(value) in everything  # the dump does see the key rows ...
    assert value not in everything  # ... but not the secret,
    assert value[12:] not in everything  # nor its undisplayed part,
    hidden = value[12:]
    assert not any(hidden[i : i + 12] in everything for i in range(len(hidden) - 11))
    if db_url.startswith("sqlite"):  # nor any byte of the database files on disk
        path = Path(db_url.removeprefix("sqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            assert hidden.encode() not in file.read_bytes()


async def test_find_by_secret(database: Database) -> None:
    keys = KeyStore(database)
    record, secret = await keys.create("a", actor="admin")
    other, _ = await keys.create("b", actor="admin")
    assert await keys.find_by_secret(secret) == record
    assert await keys.find_by_secret(secret.reveal()) == record
    plain = secret.reveal()
    altered = plain[:-1] + ("y" if plain.endswith("x") else "x")  # a different last character
    assert await keys.find_by_secret(altered) is None
    assert await keys.find_by_secret("sk-not-ours") is None
    assert await keys.find_by_secret("") is None
    assert (await keys.find_by_secret(secret)) != other


async def test_scopes() -> None:
    from aiwire.store import KeyRecord

    open_key = KeyRecord(
        id="k", name="n", key_prefix="aiw-x", models=(), endpoints=(), team=None, created_at=T0
    )
    scoped = KeyRecord(
        id="k",
        name="n",
        key_prefix="aiw-x",
        models=("a",),
        endpoints=("/v1/embeddings",),
        team=None,
        created_at=T0,
    )
    assert open_key.allows_model("anything") and open_key.allows_endpoint("/v1/anything")
    assert scoped.allows_model("a") and not scoped.allows_model("b")
    assert scoped.allows_endpoint("/v1/embeddings")
    assert not scoped.allows_endpoint("/v1/chat/completions")


async def test_expired_keys_are_not_usable(database: Database) -> None:
    clock = Clock()
    keys = KeyStore(database, clock=clock)
    record, secret = await keys.create("temp", expires_at=T0 + timedelta(days=1), actor="admin")
    assert record.usable(T0)
    assert record.usable(T0 + timedelta(hours=23))
    assert not record.usable(T0 + timedelta(days=1))
    found = await keys.find_by_secret(secret)
    assert found is not None and found.expires_at == T0 + timedelta(days=1)
    with pytest.raises(ValueError, match="aware"):
        await keys.create("naive", expires_at=datetime(2030, 1, 1), actor="admin")


async def test_revoked_keys_are_not_usable_and_revoking_twice_changes_nothing(
    database: Database,
) -> None:
    clock = Clock()
    keys = KeyStore(database, clock=clock)
    record, secret = await keys.create("app", actor="admin")
    clock.now = T0 + timedelta(minutes=5)
    revoked = await keys.revoke(record.id, actor="ops@example.com")
    assert revoked.revoked_at == T0 + timedelta(minutes=5)
    assert record.usable(T0 + timedelta(minutes=4))
    assert not revoked.usable(clock.now)
    found = await keys.find_by_secret(secret)
    assert found is not None and not found.usable(clock.now)

    clock.now += timedelta(minutes=5)
    assert await keys.revoke(record.id, actor="ops@example.com") == revoked
    assert [r.action for r in await audit_rows(database)] == ["key.create", "key.revoke"]
    with pytest.raises(UnknownKeyError):
        await keys.revoke("key_missing", actor="admin")


async def test_rotation_keeps_the_old_key_working_for_the_grace_period(
    database: Database,
) -> None:
    clock = Clock()
    keys = KeyStore(database, clock=clock)
    old, old_secret = await keys.create(
        "app", ["m1"], team="t", expires_at=T0 + timedelta(days=30), actor="admin"
    )
    new, new_secret = await keys.rotate(old.id, timedelta(hours=2), actor="admin")
    assert new_secret != old_secret and new.id != old.id
    assert new.rotated_from == old.id
    assert (new.name, new.models, new.team, new.expires_at) == (
        old.name,
        old.models,
        old.team,
        old.expires_at,
    )
    old_now = await keys.find_by_secret(old_secret)
    assert old_now is not None
    assert old_now.grace_until == old_now.revoked_at == T0 + timedelta(hours=2)
    assert old_now.usable(T0 + timedelta(hours=1, minutes=59))
    assert not old_now.usable(T0 + timedelta(hours=2))
    assert new.usable(T0 + timedelta(hours=3))
    assert await keys.find_by_secret(new_secret) == new

    with pytest.raises(KeyStateError, match="rotate its newest successor"):
        await keys.rotate(old.id, timedelta(hours=1), actor="admin")
    with pytest.raises(UnknownKeyError):
        await keys.rotate("key_missing", timedelta(hours=1), actor="admin")

    # Revoking during the grace period ends it now.
    clock.now = T0 + timedelta(minutes=30)
    ended = await keys.revoke(old.id, actor="admin")
    assert not ended.usable(clock.now)


async def test_expired_key_cannot_be_rotated(database: Database) -> None:
    clock = Clock()
    keys = KeyStore(database, clock=clock)
    record, _ = await keys.create("a", expires_at=T0 + timedelta(hours=1), actor="admin")
    clock.now = T0 + timedelta(hours=2)
    with pytest.raises(KeyStateError, match="expired"):
        await keys.rotate(record.id, timedelta(hours=1), actor="admin")


async def test_list_and_touch(database: Database) -> None:
    clock = Clock()
    keys = KeyStore(database, clock=clock)
    a, _ = await keys.create("a", team="x", actor="admin")
    clock.now += timedelta(seconds=1)
    b, _ = await keys.create("b", team="y", actor="admin")
    clock.now += timedelta(seconds=1)
    await keys.revoke(a.id, actor="admin")
    assert [k.id for k in await keys.list()] == [a.id, b.id]
    assert [k.id for k in await keys.list(include_unusable=False)] == [b.id]
    assert [k.id for k in await keys.list(team="y")] == [b.id]
    await keys.touch(b.id, T0 + timedelta(hours=1))
    touched = await keys.get(b.id)
    assert touched is not None and touched.last_used_at == T0 + timedelta(hours=1)
    assert await keys.get("key_missing") is None


async def test_admin_actions_are_audited_with_a_valid_chain(database: Database) -> None:
    keys = KeyStore(database)
    record, _ = await keys.create("a", actor="alice")
    await keys.rotate(record.id, timedelta(0), actor="bob")
    await keys.revoke(record.id, actor="carol")  # already ended by a zero grace: no-op
    new = next(k for k in await keys.list() if k.rotated_from == record.id)
    await keys.revoke(new.id, actor="carol")

    rows = await audit_rows(database)
    assert [(r.actor, r.action, r.target) for r in rows] == [
        ("alice", "key.create", record.id),
        ("bob", "key.rotate", record.id),
        ("carol", "key.revoke", new.id),
    ]
    assert rows[0].before is None and rows[0].after is not None
    assert rows[0].after["id"] == record.id and "key_hash" not in rows[0].after
    assert rows[1].after is not None and rows[1].after["new"]["rotated_from"] == record.id
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert await audit.verify(database) == (True, None)


async def test_an_action_and_its_audit_row_commit_together(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyStore(database)
    with pytest.raises(TypeError):  # not JSON: refused before anything is written
        await keys.create("bad", metadata={"when": object()}, actor="admin")

    async def audit_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit unavailable")

    monkeypatch.setattr(audit, "append", audit_fails)
    with pytest.raises(RuntimeError, match="audit unavailable"):
        await keys.create("unaudited", actor="admin")
    monkeypatch.undo()
    assert await keys.list() == []  # the key insert was rolled back with the failed audit
    assert await audit_rows(database) == []


async def test_concurrent_admin_actions_keep_one_chain(database: Database) -> None:
    keys = KeyStore(database)
    await asyncio.gather(*(keys.create(f"k{i}", actor=f"admin{i}") for i in range(20)))
    rows = await audit_rows(database)
    assert len(rows) == 20
    assert len({r.prev_hash for r in rows}) == 20  # no two rows claim the same predecessor
    assert await audit.verify(database) == (True, None)


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE id = 2", 2),
        ("UPDATE audit_log SET target = 'key_other' WHERE id = 3", 3),
        ("DELETE FROM audit_log WHERE id = 2", 3),
        ("UPDATE audit_log SET hash = prev_hash WHERE id = 1", 1),
    ],
)
async def test_verify_detects_tampering(database: Database, tamper: str, first_bad: int) -> None:
    keys = KeyStore(database)
    for name in ("a", "b", "c"):
        await keys.create(name, actor="admin")
    assert await audit.verify(database) == (True, None)
    async with database.engine.begin() as conn:
        await conn.execute(text(tamper))
    assert await audit.verify(database) == (False, first_bad)


async def test_verify_sees_edits_inside_json(database: Database) -> None:
    keys = KeyStore(database)
    await keys.create("a", ["m1"], actor="admin")
    async with database.session() as session:
        row = (await session.scalars(select(AuditLog))).one()
        row.after = {**(row.after or {}), "models": ["m1", "m2"]}
    assert await audit.verify(database) == (False, 1)


async def test_audit_append_normalizes_values(database: Database) -> None:
    """Datetimes and tuples are stored as their JSON forms, and the hash covers what is stored."""
    async with database.session() as session:
        await audit.append(session, "me", "thing.do", "t1", None, {"at": T0, "xs": (1, 2)})
    rows = await audit_rows(database)
    assert rows[0].after == {"at": T0.isoformat(), "xs": [1, 2]}
    assert await audit.verify(database) == (True, None)
