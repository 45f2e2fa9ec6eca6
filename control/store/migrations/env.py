"""Alembic's entry: migrations run on the connection the store hands over.

The store opens an async connection and calls ``command.upgrade`` inside
``run_sync``; this file only takes that connection from the config, so the
same migrations run on SQLite and PostgreSQL, at start, with no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from control.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
