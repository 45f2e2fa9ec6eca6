"""Which control-plane process runs each restore in its own process (a restore is
recorded there too since pg:backups:cancel stops restores): a replica fails only the
restores of processes that stopped, as it does their backups (0013).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pg_restores", sa.Column("owner", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pg_restores") as batch:
        batch.drop_column("owner")
