"""``newer: semver``: ``tag_states.newer_version``, the highest higher version last listed.

Revision ID: 0003
Revises: 0002b
Create Date: 2026-12-01

Written on the repos branch beside other session-3 branches: if another
revision of 0002b is merged first, re-point this one to revise it (this
touches only tag_states, so the order does not matter).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tag_states") as batch:
        batch.add_column(sa.Column("newer_version", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tag_states") as batch:
        batch.drop_column("newer_version")
