"""Formation: autoscaling by requests in flight per process type (web), NULL when off.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.add_column(sa.Column("autoscale", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.drop_column("autoscale")
