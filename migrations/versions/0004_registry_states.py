"""Registry outages: ``registry_states`` and ``tag_states.failing_covered`` (SPEC §5).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``registry_states`` holds whether a registry is failing (between
``registry.failing`` and ``registry.recovered``), so a restart during an
outage announces it neither twice nor never. ``tag_states.failing_covered``
remembers that a tag's ``check.failing`` was covered by its registry's, so its
``check.recovered`` is covered too. Existing tags start uncovered.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained like 0001: UTCDateTime in the models.
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_states",
        sa.Column("registry", sa.String(length=255), nullable=False),
        sa.Column("failing", sa.Boolean(), nullable=False),
        sa.Column("since", Timestamp, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("registry", name=op.f("pk_registry_states")),
    )
    with op.batch_alter_table("tag_states") as batch:
        batch.add_column(
            sa.Column("failing_covered", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("tag_states") as batch:
        batch.drop_column("failing_covered")
    op.drop_table("registry_states")
