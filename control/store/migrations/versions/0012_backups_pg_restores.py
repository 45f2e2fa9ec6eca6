"""Restores run as backup Jobs on Kubernetes: one record per restore, moved by its Job.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pg_restores",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("addon", sa.String(100), nullable=False),
        sa.Column("source_app", sa.String(64), nullable=False),
        sa.Column("backup", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pg_restores"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_pg_restores_app_id_apps", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("pg_restores")
