"""Tag state versions (compare-and-set) and the source each watch came from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``tag_states.version`` is what a write expects to find: a write whose
expected version is stale is refused (``monitor.store.states``). Rows written
before it start at 0. ``watches.source`` names the watch source that produced
the watch; every existing watch came from the config file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a column in place (a no-op wrapper on PostgreSQL).
    with op.batch_alter_table("tag_states") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("watches") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=64), nullable=False, server_default="config")
        )


def downgrade() -> None:
    with op.batch_alter_table("watches") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("tag_states") as batch:
        batch.drop_column("version")
