"""The leader lease of replicas sharing one PostgreSQL database (issue 14, SPEC §11).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

One row per lease (``leader``): who holds it, its epoch (the fencing token
every write of the leader is checked against) and when it expires, on the
database's clock. Created on SQLite too (same schema everywhere), where it
stays empty: SQLite means one replica.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UTCDateTime in the models (spelled out: later model changes must not rewrite history).
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
