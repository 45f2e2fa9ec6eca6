"""Postgres backups: one row per capture (status, sizes, checksums, table stats) and schedules.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pg_backups",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("num", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("addon", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("object_key", sa.String(500), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("dump_size", sa.BigInteger, nullable=True),
        sa.Column("object_sha256", sa.String(64), nullable=True),
        sa.Column("dump_sha256", sa.String(64), nullable=True),
        sa.Column("tables", sa.JSON, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("verified_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pg_backups"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_pg_backups_app_id_apps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("app_id", "num", name="uq_pg_backups_app_num"),
    )
    op.create_table(
        "pg_backup_schedules",
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("addon", sa.String(100), nullable=False),
        sa.Column("hour", sa.Integer, nullable=False),
        sa.Column("minute", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("daily", sa.Integer, nullable=False),
        sa.Column("weekly", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_run_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("app_id", "addon", name="pk_pg_backup_schedules"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_pg_backup_schedules_app_id_apps", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("pg_backup_schedules")
    op.drop_table("pg_backups")
