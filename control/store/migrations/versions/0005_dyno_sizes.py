"""Process sizes: memory and CPU per process type (agent/dynosize.py), in the formation.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.add_column(
            sa.Column("size", sa.String(40), nullable=False, server_default="standard-1x")
        )


def downgrade() -> None:
    with op.batch_alter_table("formation") as batch:
        batch.drop_column("size")
