"""Builds: a source in, a slug and the release it made out.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_url", sa.String(1000), nullable=False),
        sa.Column("source_version", sa.String(64), nullable=True),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("artifact", sa.String(1000), nullable=True),
        sa.Column("digest", sa.String(100), nullable=True),
        sa.Column("procfile", sa.JSON, nullable=False),
        sa.Column("release_version", sa.Integer, nullable=True),
        sa.Column("output", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_builds"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_builds_app_id_apps", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_builds_app_id", "builds", ["app_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_builds_app_id", table_name="builds")
    op.drop_table("builds")
