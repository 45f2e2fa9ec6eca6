"""Postgres add-ons on a shared server: one role and one database per tenant.

The role logs in with a random password and holds no attribute beyond LOGIN
(NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS). Its limits:

- CONNECTION LIMIT and temp_file_limit, which it cannot lift (a role may not
  change its own connection limit; temp_file_limit is superuser-only);
- statement_timeout and idle_in_transaction_session_timeout as the role's
  defaults (``ALTER ROLE ... SET``). A role can always SET these itself, so
  they are enforced outside its reach by the control plane's watchdog
  (``watchdog.py``), which cancels and terminates past the plan's numbers.

It owns one database, whose CONNECT and TEMP rights are revoked from PUBLIC,
so no other tenant can open it; ``postgres`` and ``template1`` (``FENCED``)
get the same revoke at every create and ensure, so a tenant opens its own
database and nothing else. Destroy stops new logins, terminates the tenant's
sessions and drops both.

The URL's ``sslmode`` says what the server offers, probed at each create:
``require`` when it speaks TLS (so an app asking for SSL, as Heroku's samples
do with dj-database-url's ``ssl_require=True``, connects), ``prefer`` when it
does not, and the creation then says so in its ``message``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from control.addons import Provisioned
from control.addons.plans import POSTGRES_PLANS, PostgresPlan
from control.errors import AddonError, Unprocessable

log = logging.getLogger(__name__)

#: Databases every server has that no tenant needs: CONNECT is revoked from PUBLIC.
#: (template0 already refuses connections.) Roles that must still open them, such as
#: a least-privilege exporter, need an explicit GRANT CONNECT (docs/control.md).
FENCED = ("postgres", "template1")
#: What an add-on's creation says when its server has no TLS (shown by addons:create).
NO_TLS = (
    "this PostgreSQL server offers no TLS: the URL says sslmode=prefer, and an app that "
    "requires SSL (dj-database-url ssl_require=True, sslmode=require) cannot connect; "
    "turn on ssl in the server (.ci/services shows how)"
)
#: Everything a tenant role is not: written out so an operator's default cannot add it.
_ATTRIBUTES = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")


def _fence(databases: tuple[str, ...]) -> list[sql.Composed]:
    """Close the server's own databases to PUBLIC (pure, idempotent)."""
    return [
        sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(database)
        )
        for database in databases
    ]


def _limits(name: str, limits: PostgresPlan) -> list[sql.Composed]:
    """The statements that put a role under its plan (pure, idempotent)."""
    role = sql.Identifier(name)
    return [
        sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
            role, sql.Literal(limits.connection_limit)
        ),
        sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            role, sql.Literal(limits.statement_timeout)
        ),
        sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
            role, sql.Literal(limits.idle_in_transaction_timeout)
        ),
        sql.SQL("ALTER ROLE {} SET temp_file_limit = {}").format(
            role, sql.Literal(limits.temp_file_limit)
        ),
    ]


class PostgresAddons:
    service = "postgres"

    def __init__(
        self,
        *,
        admin_dsn: str,
        public_host: str,
        public_port: int,
        prefix: str = "slipway_",
        plans: Mapping[str, PostgresPlan] = POSTGRES_PLANS,
        fenced: tuple[str, ...] = FENCED,
    ) -> None:
        self._admin_dsn = admin_dsn
        self._fenced = fenced
        self._public_host = public_host
        self._public_port = public_port
        self._prefix = prefix
        self._plans = dict(plans)

    @property
    def plans(self) -> Mapping[str, PostgresPlan]:
        return self._plans

    async def _admin(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        try:
            return await psycopg.AsyncConnection.connect(self._admin_dsn, autocommit=True)
        except psycopg.Error as exc:
            raise AddonError(
                f"cannot reach the shared PostgreSQL: {exc.sqlstate or 'error'}"
            ) from exc

    async def create(self, plan: str) -> Provisioned:
        limits = self._plans.get(plan)
        if limits is None:
            raise Unprocessable(
                f"no postgres plan {plan!r} (plans: {', '.join(sorted(self._plans))})",
                id="plan_not_found",
            )
        name = f"{self._prefix}{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(24)
        role = sql.Identifier(name)
        statements = [
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} ").format(role, sql.Literal(password))
            + _ATTRIBUTES,
            *_limits(name, limits),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role),
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role),
        ]
        async with await self._admin() as conn:
            tls = await self._offers_tls()
            await self._close_fenced(conn)
            try:
                for statement in statements:
                    await conn.execute(statement)
            except psycopg.Error as exc:
                await self._drop(conn, name)
                raise AddonError(
                    f"creating postgres add-on {name} failed: {exc.sqlstate or 'error'}"
                ) from exc
        log.info("postgres add-on created", extra={"resource": name, "plan": plan, "tls": tls})
        url = (
            f"postgresql://{name}:{password}@{self._public_host}:{self._public_port}/{name}"
            f"?sslmode={'require' if tls else 'prefer'}"
        )
        return Provisioned(resource=name, url=url, message="" if tls else NO_TLS)

    async def _offers_tls(self) -> bool:
        """Whether the server speaks TLS where apps reach it: a connection that insists on it.

        Asked at the public host and port (what the URL names) with the admin's role;
        where the control plane cannot reach those, over the admin DSN. Checked on the
        connection itself, since libpq lets ``sslmode=require`` pass without TLS over a
        Unix socket.
        """
        public = make_conninfo(self._admin_dsn, host=self._public_host, port=self._public_port)
        for dsn in (public, self._admin_dsn):
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn, sslmode="require", connect_timeout=5
                ) as conn:
                    return bool(conn.pgconn.ssl_in_use)
            except psycopg.Error as exc:
                if "does not support SSL" in str(exc):
                    return False  # the server answered: no TLS
        return False

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Re-apply the plan's limits (they may have changed since); a lost role is an error."""
        limits = self._plans.get(plan)
        async with await self._admin() as conn:
            try:
                found = await (
                    await conn.execute(
                        "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication"
                        " OR rolbypassrls FROM pg_roles WHERE rolname = %s",
                        (resource,),
                    )
                ).fetchone()
                if found is None:
                    raise AddonError(f"postgres add-on {resource} is gone from its server")
                if found[0]:
                    # Only a superuser can take these away; say so rather than skip it.
                    log.warning("postgres add-on role had attributes", extra={"resource": resource})
                    await conn.execute(
                        sql.SQL("ALTER ROLE {} ").format(sql.Identifier(resource)) + _ATTRIBUTES
                    )
                statements = [
                    *(_limits(resource, limits) if limits is not None else []),
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(resource)
                    ),
                ]
                for statement in statements:
                    await conn.execute(statement)
            except psycopg.Error as exc:
                raise AddonError(
                    f"checking postgres add-on {resource} failed: {exc.sqlstate or 'error'}"
                ) from exc
            await self._close_fenced(conn)

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> Provisioned:
        """The role's limits become ``to``'s (the database stays): what ``ensure`` applies."""
        if to not in self._plans:
            raise Unprocessable(
                f"no postgres plan {to!r} (plans: {', '.join(self._plans)})", id="plan_not_found"
            )
        await self.ensure(resource, url=url, plan=to)
        log.info("postgres add-on resized", extra={"resource": resource, "plan": to})
        return Provisioned(resource=resource, url=url)

    async def _close_fenced(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """REVOKE CONNECT on the server's own databases from PUBLIC (idempotent)."""
        try:
            for statement in _fence(self._fenced):
                await conn.execute(statement)
        except psycopg.Error as exc:
            raise AddonError(
                f"cannot revoke CONNECT on {', '.join(self._fenced)} from PUBLIC "
                f"({exc.sqlstate or 'error'}): the add-on admin role must be a superuser "
                "or own those databases"
            ) from exc

    async def destroy(self, resource: str) -> None:
        async with await self._admin() as conn:
            try:
                await self._drop(conn, resource)
            except psycopg.Error as exc:
                raise AddonError(
                    f"destroying postgres add-on {resource} failed: {exc.sqlstate or 'error'}"
                ) from exc
        log.info("postgres add-on destroyed", extra={"resource": resource})

    async def _drop(self, conn: psycopg.AsyncConnection[tuple[object, ...]], name: str) -> None:
        role = sql.Identifier(name)
        exists = await (
            await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        ).fetchone()
        if exists:
            # No new sessions while the old ones are ended.
            await conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE (usename = %s OR datname = %s) AND pid <> pg_backend_pid()",
            (name, name),
        )
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(role))
        await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
