"""Flows: definitions, per-record state and step checkpoints, deliveries, dead letters, runs,
reviews, webhook events and source cursors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Self-contained on purpose: a migration must not change when the models module does.
def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _bigint_pk() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _flow_key() -> list[sa.Column[str]]:
    return [
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "flow_definitions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_flow_definitions")),
    )

    op.create_table(
        "flow_records",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        *_flow_key(),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", _json(), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_records")),
    )
    # One row per (flow, key): what makes ingesting the same source record twice a no-op.
    op.create_index("ux_flow_records_flow_key", "flow_records", ["flow", "key"], unique=True)
    op.create_index("ix_flow_records_flow_state", "flow_records", ["flow", "state"])

    op.create_table(
        "flow_steps",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        *_flow_key(),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ms", sa.Float(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("output", _json(), nullable=True),
        sa.Column("finished_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_steps")),
    )
    op.create_index(
        "ux_flow_steps_flow_key_step", "flow_steps", ["flow", "key", "step"], unique=True
    )
    op.create_index("ix_flow_steps_run_id", "flow_steps", ["run_id"])

    op.create_table(
        "flow_deliveries",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        *_flow_key(),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_deliveries")),
    )
    # At most one delivery per record and sink: the guard against a duplicate sink write.
    op.create_index(
        "ux_flow_deliveries_flow_key_sink", "flow_deliveries", ["flow", "key", "sink"], unique=True
    )

    op.create_table(
        "flow_dead_letters",
        sa.Column("id", sa.String(64), nullable=False),
        *_flow_key(),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("error_class", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=True),
        sa.Column("record", _json(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_dead_letters")),
    )
    op.create_index("ix_flow_dead_letters_flow_status", "flow_dead_letters", ["flow", "status"])

    op.create_table(
        "flow_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("counts", _json(), nullable=False),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_runs")),
    )
    op.create_index("ix_flow_runs_flow_started_at", "flow_runs", ["flow", "started_at"])

    op.create_table(
        "flow_reviews",
        sa.Column("id", sa.String(64), nullable=False),
        *_flow_key(),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("draft", _json(), nullable=False),
        sa.Column("source", _json(), nullable=False),
        sa.Column("editable", _json(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("edits", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("due_at", _ts(), nullable=True),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_reviews")),
    )
    op.create_index(
        "ux_flow_reviews_flow_key_step", "flow_reviews", ["flow", "key", "step"], unique=True
    )
    op.create_index("ix_flow_reviews_status_created_at", "flow_reviews", ["status", "created_at"])
    op.create_index("ix_flow_reviews_flow_status", "flow_reviews", ["flow", "status"])

    op.create_table(
        "flow_events",
        sa.Column("id", _bigint_pk(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_events")),
    )
    # A re-sent webhook event (same id) is dropped by this constraint.
    op.create_index(
        "ux_flow_events_flow_event_id", "flow_events", ["flow", "event_id"], unique=True
    )

    op.create_table(
        "flow_cursors",
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", _json(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("flow", "name", name=op.f("pk_flow_cursors")),
    )


def downgrade() -> None:
    for table in (
        "flow_cursors",
        "flow_events",
        "flow_reviews",
        "flow_runs",
        "flow_dead_letters",
        "flow_deliveries",
        "flow_steps",
        "flow_records",
        "flow_definitions",
    ):
        op.drop_table(table)
