"""Alembic environment for aiwire's store.

At run time :meth:`aiwire.store.Database.migrate` hands Alembic an open connection (already
holding the migration lock) in ``config.attributes["connection"]``. For developers running the
``alembic`` command (see ``alembic.ini`` here) the URL comes from ``AIWIRE_STORE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from aiwire.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    # Inside Database.migrate() the connection is already in a transaction, and this is a no-op.
    with context.begin_transaction():
        context.run_migrations()


def _cli_url() -> str:
    url = os.environ.get("AIWIRE_STORE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set AIWIRE_STORE_URL=sqlite:///path or postgresql://... to run alembic")
    return url


async def _run_cli() -> None:
    from aiwire.store.db import Database

    database = Database(_cli_url())
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(run_migrations)
    finally:
        await database.aclose()


if context.is_offline_mode():
    from aiwire.store.db import async_url

    context.configure(
        url=async_url(_cli_url()), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_cli())
    else:
        run_migrations(connection)
