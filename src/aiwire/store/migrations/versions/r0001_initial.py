"""Keys, request log and audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Self-contained on purpose: a migration must not change when the models module does.
def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _ts() -> sa.DateTime:
    """Stored as UTC; the models' UTCDateTime type does the converting in Python."""
    return sa.DateTime(timezone=True)


def _bigint_pk() -> sa.types.TypeEngine[int]:
    """BIGINT, but INTEGER on SQLite: only that is an alias of the auto-incrementing rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("models", _json(), nullable=False),
        sa.Column("endpoints", _json(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("rotated_from", sa.String(64), nullable=True),
        sa.Column("grace_until", _ts(), nullable=True),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("last_used_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ux_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)

    op.create_table(
        "request_log",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("deployment", sa.String(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("completion", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_log")),
    )
    op.create_index("ux_request_log_request_id", "request_log", ["request_id"], unique=True)
    op.create_index("ix_request_log_ts", "request_log", ["ts"])
    op.create_index("ix_request_log_key_id_ts", "request_log", ["key_id", "ts"])
    op.create_index("ix_request_log_model_ts", "request_log", ["model", "ts"])

    op.create_table(
        "audit_log",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("before", _json(), nullable=True),
        sa.Column("after", _json(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("request_log")
    op.drop_table("api_keys")
