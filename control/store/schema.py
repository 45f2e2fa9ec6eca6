"""Tables of the state store, in SQLAlchemy Core (no ORM: rows in, dataclasses out).

Times are float seconds since the epoch: the same type on SQLite and
PostgreSQL, with no timezone handling that differs between the two.
JSON columns hold config snapshots and Procfiles, read and written whole.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # The release that runs now: the newest one that succeeded.
    sa.Column("current_release", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # pending -> succeeded | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    # Where the code is: a directory locally, an image digest on Kubernetes.
    sa.Column("artifact", sa.String(1000), nullable=True),
    sa.Column("procfile", sa.JSON, nullable=False),
    # The user's config vars at this release.
    sa.Column("config", sa.JSON, nullable=False),
    # Add-on variables (NAME_URL) at this release, for the record; a rollback
    # takes the current ones, since a destroyed add-on cannot come back.
    sa.Column("addon_env", sa.JSON, nullable=False),
    # Tail of the release phase's output, when there was one.
    sa.Column("output", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("app_id", "version", name="uq_releases_app_version"),
)

formation = sa.Table(
    "formation",
    metadata,
    sa.Column(
        "app_id",
        sa.Integer,
        sa.ForeignKey("apps.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    # Idle policy, read by the agent: sleep after idle_after seconds without a
    # request, never below min_scale nor above max_scale; never_sleep pins it up.
    sa.Column("idle_after", sa.Float, nullable=False),
    sa.Column("min_scale", sa.Integer, nullable=False),
    sa.Column("max_scale", sa.Integer, nullable=False),
    sa.Column("never_sleep", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

addons = sa.Table(
    "addons",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    # postgres | redis
    sa.Column("service", sa.String(32), nullable=False),
    sa.Column("plan", sa.String(64), nullable=False),
    # The attachment name: DATABASE sets DATABASE_URL.
    sa.Column("attachment", sa.String(64), nullable=False),
    # The credentials the app gets; needed again at every release, so stored
    # (a secret at rest, like Heroku's add-on config vars).
    sa.Column("url", sa.String(1000), nullable=False),
    # The role/database or ACL user/prefix on the shared server.
    sa.Column("resource", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("app_id", "attachment", name="uq_addons_app_attachment"),
)

domains = sa.Table(
    "domains",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    # A host name the router sends to the app (lower case), besides APP.{app domain}.
    sa.Column("hostname", sa.String(253), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # sha256 hex of the token: tokens are 256 random bits, so a fast hash is
    # enough (nothing to brute-force) and lookups stay one indexed equality.
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("admin", sa.Boolean, nullable=False),
    # The one app a non-admin token may act on; the app's id survives renames.
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    # The app's name at the time (kept after the app is gone).
    sa.Column("app", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
)

builds = sa.Table(
    "builds",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    # pending -> succeeded | failed
    sa.Column("status", sa.String(16), nullable=False),
    # A git URL (or local repository path), or the path of an uploaded tarball.
    sa.Column("source_url", sa.String(1000), nullable=False),
    # The commit asked for (a sha, or None for a tarball).
    sa.Column("source_version", sa.String(64), nullable=True),
    # The full sha the builder resolved and built.
    sa.Column("commit", sa.String(64), nullable=True),
    # The slug directory (or image) once built.
    sa.Column("artifact", sa.String(1000), nullable=True),
    sa.Column("digest", sa.String(100), nullable=True),
    # Process types the Procfile declared.
    sa.Column("procfile", sa.JSON, nullable=False),
    # The release this build made (its status is the release's own).
    sa.Column("release_version", sa.Integer, nullable=True),
    # Why it failed, with the last lines of output.
    sa.Column("output", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("ix_builds_app_id", "app_id", "created_at"),
)
