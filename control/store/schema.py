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
    # The router answers H80 (a maintenance page) instead of sending requests to the app.
    sa.Column("maintenance", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # Memory and CPU of each process: a size name (standard-2x) or an amount (768mb).
    sa.Column("size", sa.String(40), nullable=False, server_default="standard-1x"),
    # Autoscaling by requests in flight (web): target, windows, delay; NULL: off.
    sa.Column("autoscale", sa.JSON, nullable=True),
    # Where a worker type's jobs wait (agent/queues.py's source, its wire form); NULL: none
    # set here (a usual Procfile worker line is still detected).
    sa.Column("queue", sa.JSON, nullable=True),
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
    # The dashboard user a token was minted for (`slipway login --user`): a collaborator's
    # token reaches the apps the user is a member of, read at each lookup (0008).
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
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
    # A git URL (or local repository path), masked (kit.redact); "upload:<name>" for an
    # uploaded tarball.
    sa.Column("source_url", sa.String(1000), nullable=False),
    # The commit asked for (a sha, or None for a tarball).
    sa.Column("source_version", sa.String(64), nullable=True),
    # The branch the commit was resolved from, when one was named (the dashboard's deploy).
    sa.Column("source_ref", sa.String(255), nullable=True),
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

github_deliveries = sa.Table(
    "github_deliveries",
    metadata,
    # X-GitHub-Delivery: a GUID that stays the same when GitHub redelivers.
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("event", sa.String(32), nullable=False),
    # The app the event's plan acts on (it may not exist: a missing staging app).
    sa.Column("app", sa.String(64), nullable=False),
    sa.Column("summary", sa.String(500), nullable=False),
    # running -> succeeded | failed; a failed one runs again when GitHub redelivers it.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("ix_github_deliveries_received_at", "received_at"),
)

review_apps = sa.Table(
    "review_apps",
    metadata,
    # Not a foreign key: the status outlives the app (destroyed) or precedes it (failed).
    sa.Column("app", sa.String(64), primary_key=True),
    # pending -> deployed | destroyed | failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    # The commit the last plan was for, and the delivery that asked for it.
    sa.Column("commit", sa.String(64), nullable=True),
    sa.Column("delivery", sa.String(100), nullable=True),
    # app.json's scripts.pr-predestroy when the app was last deployed: a stale or closed
    # app runs it even when its branch can no longer be fetched.
    sa.Column("predestroy", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

pipelines = sa.Table(
    "pipelines",
    metadata,
    # A repository connected from the dashboard (control/review/pipelines.py); the
    # environment's pipeline (SLIPWAY_GITHUB_*, SLIPWAY_REVIEW_*) is not stored here.
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("repo_url", sa.String(1000), nullable=False),
    sa.Column("branch", sa.String(255), nullable=False),
    # As given: GitHub signs deliveries with it, so it must be had in clear.
    sa.Column("webhook_secret", sa.String(200), nullable=False),
    sa.Column("domain", sa.String(253), nullable=False),
    sa.Column("staging_app", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # argon2id, in its PHC string form (parameters and salt included).
    sa.Column("password_hash", sa.String(200), nullable=False),
    # admin: everything; otherwise a collaborator on the apps of ``memberships``.
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    # The app's id: a membership survives a rename and goes with the app.
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    # sha256 of the cookie's 256 random bits: a copy of this table signs no one in.
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The synchronizer token every state-changing request of this session must carry.
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_sessions_user_id", "user_id"),
)

pg_backups = sa.Table(
    "pg_backups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    # Per app, shown with its kind's letter: b001 captured by hand, a002 by the schedule.
    sa.Column("num", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # The add-on's name and its database when the backup was taken.
    sa.Column("addon", sa.String(100), nullable=False),
    sa.Column("resource", sa.String(100), nullable=False),
    # running -> verifying -> succeeded | failed | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("object_key", sa.String(500), nullable=False),
    # Bytes of the stored (encrypted) object and of the pg_dump output in it.
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("dump_size", sa.BigInteger, nullable=True),
    # sha256 hex of the object as stored and of the dump: checked again at each read.
    sa.Column("object_sha256", sa.String(64), nullable=True),
    sa.Column("dump_sha256", sa.String(64), nullable=True),
    # Per table at dump time, in the dump's snapshot: {"schema.table": [rows, checksum]}.
    sa.Column("tables", sa.JSON, nullable=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("verified_at", sa.Float, nullable=True),
    # The control-plane process capturing it (host:pid:nonce); NULL: a backup Job's, or a
    # record from before 0013. Its heartbeat in pg_backup_owners says whether it lives.
    sa.Column("owner", sa.String(200), nullable=True),
    sa.UniqueConstraint("app_id", "num", name="uq_pg_backups_app_num"),
)

#: Control-plane processes that capture in-process, and when each last said it lives.
pg_backup_owners = sa.Table(
    "pg_backup_owners",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)

pg_backup_schedules = sa.Table(
    "pg_backup_schedules",
    metadata,
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("addon", sa.String(100), primary_key=True),
    sa.Column("hour", sa.Integer, nullable=False),
    sa.Column("minute", sa.Integer, nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    # Retention of scheduled backups: the newest of each of this many days and weeks.
    sa.Column("daily", sa.Integer, nullable=False),
    sa.Column("weekly", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_run_at", sa.Float, nullable=True),
)

#: A restore run as a Job (backups on Kubernetes): its record, which the Job moves and a
#: request that waits reads. One in the control plane's process answers when done instead.
pg_restores = sa.Table(
    "pg_restores",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The app restored into, and its add-on's name.
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("addon", sa.String(100), nullable=False),
    # Where the backup comes from (the same app, or another: by name, it may go later).
    sa.Column("source_app", sa.String(64), nullable=False),
    sa.Column("backup", sa.String(16), nullable=False),
    # running -> succeeded | failed | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    # The control-plane process running it in-process (0014); None: a Job's, or the
    # record of a restore from before 0014.
    sa.Column("owner", sa.String(200), nullable=True),
)
