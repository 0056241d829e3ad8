"""Cost control: per-key rate limits and options, budgets, cost and team in the request log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table in place; Alembic copies it there.
    with op.batch_alter_table("api_keys") as t:
        t.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        t.add_column(sa.Column("tpm", sa.Integer(), nullable=True))
        t.add_column(sa.Column("options", _json(), nullable=False, server_default="{}"))

    with op.batch_alter_table("request_log") as t:
        t.add_column(sa.Column("team", sa.String(), nullable=True))
        t.add_column(sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"))
        t.add_column(
            sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_request_log_team_ts", "request_log", ["team", "ts"])

    op.create_table(
        "budgets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("limit_usd", sa.Float(), nullable=False),
        sa.Column("soft_usd", sa.Float(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
    )
    op.create_index(
        "ux_budgets_scope_scope_id_period", "budgets", ["scope", "scope_id", "period"], unique=True
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_index("ix_request_log_team_ts", "request_log")
    with op.batch_alter_table("request_log") as t:
        t.drop_column("cache_hit")
        t.drop_column("cost_usd")
        t.drop_column("team")
    with op.batch_alter_table("api_keys") as t:
        t.drop_column("options")
        t.drop_column("tpm")
        t.drop_column("rpm")
