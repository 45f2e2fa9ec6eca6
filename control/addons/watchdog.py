"""Holds Postgres tenants to their plan's time limits, whatever they SET.

A role can always change its own statement_timeout and
idle_in_transaction_session_timeout: ``SET``, ``ALTER ROLE <itself> SET``,
``ALTER DATABASE <its own> SET`` or ``options=-c statement_timeout=0`` in the
DSN. The plan's values on the role are therefore only defaults. This watchdog
enforces them where the tenant cannot reach: every ``interval`` it reads
``pg_stat_activity`` as the add-on admin and

- cancels (``pg_cancel_backend``) a tenant statement running longer than its
  plan's statement_timeout: the client gets ``57014 canceling statement due to
  user request`` and its session lives on;
- terminates (``pg_terminate_backend``) a tenant session idle in a transaction
  longer than its plan's idle_in_transaction_session_timeout: the transaction's
  locks are released, as the setting itself would.

``overdue`` is the decision, a pure function of one snapshot (ages by the
server's own clock, so skew between hosts does not matter); ``PostgresWatchdog``
is the I/O shell. Which roles are tenants, and on which plan, comes from the
control plane's registry (``tenants``), never from the server, where a tenant
could change what it says about itself.

The admin role needs to signal tenant backends: a superuser, or a member of
``pg_signal_backend``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import class_row

from control.addons.instances import APP_PREFIX
from control.addons.plans import PostgresPlan
from control.errors import StoreError

if TYPE_CHECKING:
    from control.store.db import Store

log = logging.getLogger(__name__)

#: One second: a statement outlives its limit by at most this plus one round trip,
#: and one query per second against pg_stat_activity costs the server next to nothing
#: (figures in docs/control.md).
INTERVAL = 1.0
#: The watchdog's own query must never hang on a stuck server: bounded well under a tick.
_QUERY_TIMEOUT_MS = 5000

#: Client backends of the given roles; ages in seconds by the server's clock.
_SNAPSHOT = """
SELECT pid, usename AS role, coalesce(state, '') AS state,
       coalesce(extract(epoch FROM clock_timestamp() - query_start), 0)::float8 AS running,
       coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8 AS in_state
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND usename = ANY(%s)
"""


@dataclass(frozen=True, slots=True)
class Session:
    """One tenant backend as ``pg_stat_activity`` showed it."""

    pid: int
    role: str
    #: ``active``, ``idle``, ``idle in transaction``, ``idle in transaction (aborted)``, ...
    state: str
    #: Seconds since the current (or last) statement started.
    running: float
    #: Seconds since ``state`` last changed.
    in_state: float


class Verdict(enum.Enum):
    CANCEL = "cancel"
    TERMINATE = "terminate"


@dataclass(frozen=True, slots=True)
class Action:
    pid: int
    role: str
    verdict: Verdict
    #: The plan's limit that was passed, in seconds, and by how much.
    limit: float
    over: float


_IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")


def overdue(sessions: Iterable[Session], plans: Mapping[str, PostgresPlan]) -> list[Action]:
    """What to do with each tenant session past its plan's limits (pure)."""
    actions = []
    for session in sessions:
        plan = plans.get(session.role)
        if plan is None:
            continue
        if session.state == "active":
            limit = plan.statement_seconds
            if session.running > limit:
                actions.append(
                    Action(
                        session.pid, session.role, Verdict.CANCEL, limit, session.running - limit
                    )
                )
        elif session.state in _IDLE_IN_TRANSACTION:
            limit = plan.idle_in_transaction_seconds
            if session.in_state > limit:
                actions.append(
                    Action(
                        session.pid,
                        session.role,
                        Verdict.TERMINATE,
                        limit,
                        session.in_state - limit,
                    )
                )
    return actions


#: Which roles are tenants and the plan of each: ``{role: plan}``, from the registry.
Tenants = Callable[[], Awaitable[Mapping[str, PostgresPlan]]]


def registry_tenants(store: Store, plans: Mapping[str, PostgresPlan]) -> Tenants:
    """The postgres add-ons in the control plane's registry, each with its plan.

    Read at every check (one small query), so a new add-on is watched from the next
    second on. An add-on whose plan no longer exists keeps the role's own settings only.
    """

    async def tenants() -> Mapping[str, PostgresPlan]:
        async with store.tx(write=False) as tx:
            addons = await tx.all_addons()
        return {
            addon.resource: plans[addon.plan]
            for addon in addons
            if addon.service == "postgres"
            and addon.plan in plans
            # A dedicated instance (a StatefulSet on Kubernetes) is not on the shared server.
            and not addon.resource.startswith(APP_PREFIX)
        }

    return tenants


class PostgresWatchdog:
    def __init__(self, *, admin_dsn: str, tenants: Tenants, interval: float = INTERVAL) -> None:
        self._admin_dsn = admin_dsn
        self._tenants = tenants
        self._interval = interval
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        #: Checks done and actions taken since start (tests and the measurement read them).
        self.checks = 0
        self.actions = 0

    async def run(self) -> None:
        """Check every ``interval`` until cancelled; a server that is down is waited out."""
        down = False
        try:
            while True:
                try:
                    await self.check()
                    if down:
                        log.info("postgres watchdog reaches the server again")
                    down = False
                except (psycopg.Error, StoreError) as exc:
                    await self._close()
                    if not down:  # once per outage, not once per second
                        log.warning(
                            "postgres watchdog cannot check its tenants",
                            extra={"error": type(exc).__name__},
                        )
                    down = True
                await asyncio.sleep(self._interval)
        finally:
            await self._close()

    async def check(self) -> list[Action]:
        """One snapshot, its verdicts carried out.

        Raises psycopg.Error when the server fails, StoreError when the registry does.
        """
        plans = await self._tenants()
        self.checks += 1
        if not plans:
            return []
        conn = await self._connect()
        async with conn.cursor(row_factory=class_row(Session)) as cursor:
            await cursor.execute(_SNAPSHOT, (list(plans),))
            sessions = await cursor.fetchall()
        actions = overdue(sessions, plans)
        for action in actions:
            signal = (
                "SELECT pg_cancel_backend(%s)"
                if action.verdict is Verdict.CANCEL
                else "SELECT pg_terminate_backend(%s)"
            )
            await conn.execute(signal, (action.pid,))
            self.actions += 1
            log.warning(
                "tenant session past its plan's limit",
                extra={
                    "role": action.role,
                    "pid": action.pid,
                    "action": action.verdict.value,
                    "limit_s": action.limit,
                    "over_s": round(action.over, 3),
                },
            )
        return actions

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._admin_dsn,
                autocommit=True,
                application_name="slipway-watchdog",
                options=f"-c statement_timeout={_QUERY_TIMEOUT_MS}",
            )
        return self._conn

    async def _close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
