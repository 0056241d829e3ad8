"""Response cache: the ``response_cache`` table behind ``cache.backend: sql``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_response_cache")),
    )
    # purge() deletes by expiry: an index keeps that a range scan.
    op.create_index("ix_response_cache_expires_at", "response_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_response_cache_expires_at", "response_cache")
    op.drop_table("response_cache")
