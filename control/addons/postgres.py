"""Postgres add-ons on a shared server: one role and one database per tenant.

The role logs in with a random password, has a CONNECTION LIMIT and its own
statement/idle/temp-file limits (``ALTER ROLE ... SET``, which the tenant
cannot lift: temp_file_limit is superuser-only and a role may not change its
own connection limit). It owns one database, whose CONNECT and TEMP rights are
revoked from PUBLIC, so no other tenant can even open it. Destroy stops new
logins, terminates the tenant's sessions and drops both.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

import psycopg
from psycopg import sql

from control.addons import Provisioned
from control.addons.plans import POSTGRES_PLANS, PostgresPlan
from control.errors import AddonError, Unprocessable

log = logging.getLogger(__name__)


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
    ) -> None:
        self._admin_dsn = admin_dsn
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
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)),
            *_limits(name, limits),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role),
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role),
        ]
        async with await self._admin() as conn:
            try:
                for statement in statements:
                    await conn.execute(statement)
            except psycopg.Error as exc:
                await self._drop(conn, name)
                raise AddonError(
                    f"creating postgres add-on {name} failed: {exc.sqlstate or 'error'}"
                ) from exc
        log.info("postgres add-on created", extra={"resource": name, "plan": plan})
        url = f"postgresql://{name}:{password}@{self._public_host}:{self._public_port}/{name}"
        return Provisioned(resource=name, url=url)

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Re-apply the plan's limits (they may have changed since); a lost role is an error."""
        limits = self._plans.get(plan)
        async with await self._admin() as conn:
            try:
                exists = await (
                    await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (resource,))
                ).fetchone()
                if exists is None:
                    raise AddonError(f"postgres add-on {resource} is gone from its server")
                if limits is not None:
                    for statement in _limits(resource, limits):
                        await conn.execute(statement)
            except psycopg.Error as exc:
                raise AddonError(
                    f"checking postgres add-on {resource} failed: {exc.sqlstate or 'error'}"
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
