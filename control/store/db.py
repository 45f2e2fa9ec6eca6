"""The store's I/O shell: an async engine, migrations at start, and transactions.

Every write happens in one ``Store.tx()`` transaction, which is also where
SQLAlchemy's errors become ``StoreError`` (or ``Conflict`` for a unique
constraint). SQLite allows one writer at a time, and a deferred transaction
that reads before it writes fails at once with "database is locked" when
another got there first, so on SQLite writing transactions are serialised by a
lock in this process (readers run beside them, in WAL mode; the embedded
default has exactly one control process). On
PostgreSQL they run concurrently and rows that decide a number (the next
release version) are locked with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from control.errors import Conflict, StoreError
from control.store.queries import Tx

_MIGRATIONS = Path(__file__).parent / "migrations"
#: Advisory lock key for migrations: any fixed number; "slipway" in ASCII.
_MIGRATION_LOCK = 0x736C6970776179


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores ON DELETE CASCADE unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Write-ahead log: readers never wait for the writer (nor it for them).
    cursor.execute("PRAGMA journal_mode=WAL")
    # A reader meeting a checkpoint waits this long (ms) instead of failing at once.
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @classmethod
    def open(cls, url: str) -> Store:
        try:
            # A ping per checkout survives a PostgreSQL restart; a SQLite file cannot go away.
            engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open the state store {safe_url(url)}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return cls(engine)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to run at every start."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))

        def upgrade(connection: sa.Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Replicas starting together: one migrates, the others wait, then find
                # nothing left to do. Held until this transaction ends.
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(upgrade)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"migrating the state store failed: {exc}") from exc

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"the state store does not answer: {exc}") from exc

    @contextlib.asynccontextmanager
    async def tx(self, *, write: bool = True) -> AsyncIterator[Tx]:
        """One transaction: committed on success, rolled back on any error.

        ``write=False`` is for transactions that only read: on SQLite they
        skip the writers' lock (WAL lets them run beside the writer).
        """
        lock = self._write_lock if self._sqlite and write else contextlib.nullcontext()
        async with lock:
            try:
                async with self.engine.begin() as conn:
                    yield Tx(conn, sqlite=self._sqlite)
            except IntegrityError as exc:
                raise Conflict(
                    "the change conflicts with another one; retry", id="conflict"
                ) from exc
            except (SQLAlchemyError, OSError) as exc:
                raise StoreError(f"the state store failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.engine.dispose()
