"""Webhook batches: ``deliveries.batch_id`` (a webhook's ``batch:`` window, SPEC §6).

Revision ID: 0002b
Revises: 0002
Create Date: 2026-12-01

Written beside house-runtime's 0002 (tag_states.version, watches.source) on
another branch: both revise 0001; at merge this one is re-pointed to revise
0002 (they touch different tables, so the order does not matter).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002b"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(64), nullable=True))
        batch.create_index(op.f("ix_deliveries_batch_id"), ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index(op.f("ix_deliveries_batch_id"))
        batch.drop_column("batch_id")
