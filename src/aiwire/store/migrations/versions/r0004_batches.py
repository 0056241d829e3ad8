"""Batches: files of the batch API, batches and their lines' durable state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Self-contained on purpose: a migration must not change when the models module does.
def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _bigint_pk() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batch_files",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_files")),
    )
    op.create_index("ix_batch_files_key_id_created_at", "batch_files", ["key_id", "created_at"])

    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("errors", _json(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("estimate_usd", sa.Float(), nullable=False),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        sa.Column("native", _json(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("run_key", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("in_progress_at", _ts(), nullable=True),
        sa.Column("finalizing_at", _ts(), nullable=True),
        sa.Column("completed_at", _ts(), nullable=True),
        sa.Column("failed_at", _ts(), nullable=True),
        sa.Column("expired_at", _ts(), nullable=True),
        sa.Column("cancelling_at", _ts(), nullable=True),
        sa.Column("cancelled_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_key_id_created_at", "batches", ["key_id", "created_at"])
    op.create_index("ux_batches_run_key", "batches", ["run_key"], unique=True)

    op.create_table(
        "batch_lines",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _ts(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_lines")),
    )
    # Unique per batch: what makes a result's write idempotent and custom_ids unambiguous.
    op.create_index(
        "ux_batch_lines_batch_id_custom_id", "batch_lines", ["batch_id", "custom_id"], unique=True
    )
    # Claiming the next pending lines of a batch in order, and counting lines by state.
    op.create_index(
        "ix_batch_lines_batch_id_state_idx", "batch_lines", ["batch_id", "state", "idx"]
    )


def downgrade() -> None:
    op.drop_table("batch_lines")
    op.drop_table("batches")
    op.drop_table("batch_files")
