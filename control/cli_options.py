"""Options the control plane's process entry points share (``serve control``, ``pg-backups``).

Its own module, not ``serve_control``: the ``slipway`` command loads each
sub-command lazily, and ``pg-backups`` must not import the server to learn
what ``--db`` means.
"""

from __future__ import annotations

import click

from control.settings import DEFAULT_DB_URL

DB = click.option(
    "--db",
    "db_url",
    # SLIPWAY_DATABASE_URL is the documented name (the chart's Secret holds it); the old
    # SLIPWAY_DB_URL is still read, so an existing install keeps its store.
    envvar=["SLIPWAY_DATABASE_URL", "SLIPWAY_DB_URL"],
    default=DEFAULT_DB_URL,
    show_default=True,
    help="State store: sqlite+aiosqlite:///FILE or postgresql+psycopg://... (SLIPWAY_DATABASE_URL)",
)
POSTGRES_ADMIN_DSN = click.option(
    "--postgres-admin-dsn",
    envvar="SLIPWAY_ADDON_POSTGRES_DSN",
    default=None,
    help="Admin DSN of the shared PostgreSQL for add-ons (SLIPWAY_ADDON_POSTGRES_DSN); a "
    "dedicated instance is reached as its own admin through its add-on's URL in the store.",
)
LOG_LEVEL = click.option(
    "--log-level", envvar="SLIPWAY_LOG_LEVEL", default="info", show_default=True
)
