"""Initial schema: watches, tag states, history, events and the webhook outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Self-contained on purpose: types are spelled out here rather than imported
from ``monitor.store.models``, so later model changes cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# UTCDateTime in the models: TIMESTAMP WITH TIME ZONE on PostgreSQL, naive UTC text on SQLite.
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "watches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("registry", sa.String(length=255), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("cron", sa.String(length=128), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("removed_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watches")),
        sa.UniqueConstraint("image", name=op.f("uq_watches_image")),
    )
    op.create_table(
        "tag_states",
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("decided_status", sa.String(length=16), nullable=True),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("platforms", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("first_seen", Timestamp, nullable=True),
        sa.Column("last_checked", Timestamp, nullable=True),
        sa.Column("last_decided", Timestamp, nullable=True),
        sa.Column("last_changed", Timestamp, nullable=True),
        sa.Column("consecutive_misses", sa.Integer(), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("missing_alerted", sa.Boolean(), nullable=False),
        sa.Column("failing_alerted", sa.Boolean(), nullable=False),
        sa.Column("digest_changes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("image", name=op.f("pk_tag_states")),
    )
    op.create_table(
        "history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("platforms", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(length=26), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
    )
    op.create_index(op.f("ix_history_image"), "history", ["image"])
    op.create_table(
        "events",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_events_image"), "events", ["image"])
    op.create_index(op.f("ix_events_occurred_at"), "events", ["occurred_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("event_seq", Id, nullable=False),
        sa.Column("webhook", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("claimed_until", Timestamp, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_latency_ms", sa.Float(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'dead', 'failed')",
            name=op.f("ck_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["event_seq"],
            ["events.seq"],
            name=op.f("fk_deliveries_event_seq_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_event_seq"), "deliveries", ["event_seq"])
    op.create_index(op.f("ix_deliveries_next_attempt_at"), "deliveries", ["next_attempt_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("delivery_id", Id, nullable=False),
        sa.Column("attempted_at", Timestamp, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(op.f("ix_delivery_attempts_delivery_id"), "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("events")
    op.drop_table("history")
    op.drop_table("tag_states")
    op.drop_table("watches")
