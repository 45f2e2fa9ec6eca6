"""Formation: where a worker type's jobs wait (agent/queues.py's source), NULL when none is set.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.add_column(sa.Column("queue", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.drop_column("queue")
