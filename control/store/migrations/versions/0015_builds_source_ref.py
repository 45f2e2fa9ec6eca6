"""The branch a build was asked for by name (the dashboard's "Deploy a branch"), kept
beside the commit it resolved to: the next deploy offers it again, and the build's page
says it.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("builds", sa.Column("source_ref", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("source_ref")
