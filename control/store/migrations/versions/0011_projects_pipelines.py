"""Repositories connected from the dashboard: one review-app pipeline per row.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("repo_url", sa.String(1000), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("webhook_secret", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("staging_app", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pipelines"),
    )


def downgrade() -> None:
    op.drop_table("pipelines")
