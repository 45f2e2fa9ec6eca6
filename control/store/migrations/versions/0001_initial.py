"""The first schema: apps, releases, formation, add-ons, tokens, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("current_release", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_apps"),
        sa.UniqueConstraint("name", name="uq_apps_name"),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("artifact", sa.String(1000), nullable=True),
        sa.Column("procfile", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("addon_env", sa.JSON, nullable=False),
        sa.Column("output", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_releases_app_id_apps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("app_id", "version", name="uq_releases_app_version"),
    )
    op.create_table(
        "formation",
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("idle_after", sa.Float, nullable=False),
        sa.Column("min_scale", sa.Integer, nullable=False),
        sa.Column("max_scale", sa.Integer, nullable=False),
        sa.Column("never_sleep", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("app_id", "type", name="pk_formation"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_formation_app_id_apps", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "addons",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("app_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("attachment", sa.String(64), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_addons"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_addons_app_id_apps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("name", name="uq_addons_name"),
        sa.UniqueConstraint("app_id", "attachment", name="uq_addons_app_attachment"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("app_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_tokens_app_id_apps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("hash", name="uq_tokens_hash"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("app", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )


def downgrade() -> None:
    for table in ("audit", "tokens", "addons", "formation", "releases", "apps"):
        op.drop_table(table)
