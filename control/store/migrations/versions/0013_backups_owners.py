"""Which control-plane process runs each backup, and its heartbeat: a starting replica
fails only the backups of processes that stopped, not those of the replicas running.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pg_backups", sa.Column("owner", sa.String(200), nullable=True))
    op.create_table(
        "pg_backup_owners",
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_pg_backup_owners"),
    )


def downgrade() -> None:
    op.drop_table("pg_backup_owners")
    with op.batch_alter_table("pg_backups") as batch:
        batch.drop_column("owner")
