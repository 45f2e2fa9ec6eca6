"""Custom domains: host names the router sends to an app.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_domains"),
        sa.UniqueConstraint("hostname", name="uq_domains_hostname"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_domains_app_id_apps", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("domains")
