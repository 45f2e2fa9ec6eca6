"""The watchdog holds Postgres tenants to their plan's time limits whatever they SET."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from control.addons import Provisioned
from control.addons.plans import POSTGRES_PLANS, PostgresPlan, postgres_seconds
from control.addons.postgres import PostgresAddons
from control.addons.watchdog import (
    Action,
    PostgresWatchdog,
    Session,
    Verdict,
    overdue,
    registry_tenants,
)
from control.detached import DetachedTarget
from control.server import ControlPlane
from control.settings import AddonServers, ControlSettings
from tests.control.conftest import ADMIN_DSN, TEST_PREFIX
from tests.helpers import eventually

#: Half a second for both limits: past them quickly, yet far above a check's cost.
QUICK = PostgresPlan(3, "500ms", "500ms", "1MB")
#: The watchdog's tick in these tests: a cancel lands at most this late (plus a query).
TICK = 0.05


class TestTheDecision:
    plans: Mapping[str, PostgresPlan] = {"t": QUICK}

    def test_a_statement_past_the_plans_timeout_is_cancelled(self) -> None:
        sessions = [Session(7, "t", "active", running=0.75, in_state=0.75)]
        assert overdue(sessions, self.plans) == [
            Action(7, "t", Verdict.CANCEL, limit=0.5, over=0.25)
        ]

    def test_a_statement_within_the_timeout_is_left_alone(self) -> None:
        assert overdue([Session(7, "t", "active", 0.5, 0.5)], self.plans) == []

    @pytest.mark.parametrize("state", ["idle in transaction", "idle in transaction (aborted)"])
    def test_a_transaction_idle_past_the_plans_timeout_is_terminated(self, state: str) -> None:
        sessions = [Session(8, "t", state, running=9.0, in_state=0.6)]
        [action] = overdue(sessions, self.plans)
        assert (action.pid, action.verdict) == (8, Verdict.TERMINATE)

    def test_an_idle_session_outside_a_transaction_is_left_alone(self) -> None:
        # Idle connections in a pool are normal; CONNECTION LIMIT bounds how many.
        assert overdue([Session(9, "t", "idle", 999.0, 999.0)], self.plans) == []

    def test_roles_that_are_not_tenants_are_never_touched(self) -> None:
        assert overdue([Session(1, "postgres", "active", 999.0, 999.0)], self.plans) == []

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("300ms", 0.3), ("30s", 30.0), ("5min", 300.0), ("1h", 3600.0), ("250", 0.25)],
    )
    def test_plan_times_read_as_postgres_spells_them(self, text: str, seconds: float) -> None:
        assert postgres_seconds(text) == pytest.approx(seconds)

    def test_a_time_postgres_would_not_take_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not a PostgreSQL time: '5 minutes'"):
            postgres_seconds("5 minutes")

    def test_every_shipped_plan_has_times_the_watchdog_reads(self) -> None:
        for plan in POSTGRES_PLANS.values():
            assert plan.statement_seconds > 0
            assert plan.idle_in_transaction_seconds > 0


@pytest.fixture(scope="module")
def tenant() -> Iterator[Provisioned]:
    """One tenant for the module: each CREATE/DROP DATABASE costs a checkpoint."""
    addons = PostgresAddons(
        admin_dsn=ADMIN_DSN,
        public_host="127.0.0.1",
        public_port=5432,
        prefix=TEST_PREFIX,
        plans={"quick": QUICK},
    )
    made = asyncio.run(addons.create("quick"))
    try:
        yield made
    finally:
        asyncio.run(addons.destroy(made.resource))


@contextlib.asynccontextmanager
async def watching(resource: str, *, dsn: str = ADMIN_DSN) -> AsyncIterator[PostgresWatchdog]:
    async def tenants() -> Mapping[str, PostgresPlan]:
        return {resource: QUICK}

    watchdog = PostgresWatchdog(admin_dsn=dsn, tenants=tenants, interval=TICK)
    task = asyncio.create_task(watchdog.run(), name="postgres-watchdog")
    try:
        yield watchdog
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cancelled_after(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> float:
    """Run a 10 s statement; how long until the server cancelled it (well before its end)."""
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        async with asyncio.timeout(9):
            await conn.execute("SELECT pg_sleep(10)")
    return time.monotonic() - started


class TestLimitsATenantLifted:
    async def test_a_statement_is_cancelled_after_the_tenant_set_its_timeout_to_zero(
        self, tenant: Provisioned
    ) -> None:
        """Attack: SET statement_timeout = 0, then a statement that runs for ever."""
        async with (
            watching(tenant.resource) as watchdog,
            await psycopg.AsyncConnection.connect(tenant.url, autocommit=True) as conn,
        ):
            await conn.execute("SET statement_timeout = 0")
            took = await cancelled_after(conn)
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)  # session lives on
        # After the 0.5 s limit, and long before the statement's own 10 s (a tick and a
        # cancel take milliseconds; the margin is for a loaded machine).
        assert 0.5 < took < 8
        assert watchdog.actions >= 1

    async def test_a_statement_is_cancelled_after_the_tenant_altered_its_own_role(
        self, tenant: Provisioned
    ) -> None:
        """Attack: ALTER ROLE <own> SET statement_timeout = 0 (and IN DATABASE, which wins
        over the role's plain setting), then a new session."""
        name = tenant.resource
        async with await psycopg.AsyncConnection.connect(tenant.url, autocommit=True) as conn:
            await conn.execute(f'ALTER ROLE "{name}" SET statement_timeout = 0')
            await conn.execute(
                f'ALTER ROLE "{name}" IN DATABASE "{name}" SET statement_timeout = 0'
            )
        try:
            async with (
                watching(name),
                await psycopg.AsyncConnection.connect(tenant.url, autocommit=True) as conn,
            ):
                assert await (await conn.execute("SHOW statement_timeout")).fetchone() == ("0",)
                await cancelled_after(conn)
        finally:
            async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
                await admin.execute(f'ALTER ROLE "{name}" IN DATABASE "{name}" RESET ALL')
                await admin.execute(f"ALTER ROLE \"{name}\" SET statement_timeout = '500ms'")

    async def test_a_statement_is_cancelled_when_the_dsn_lifts_the_timeout(
        self, tenant: Provisioned
    ) -> None:
        """Attack: options=-c statement_timeout=0 in the connection string."""
        async with (
            watching(tenant.resource),
            await psycopg.AsyncConnection.connect(
                tenant.url, autocommit=True, options="-c statement_timeout=0"
            ) as conn,
        ):
            await cancelled_after(conn)

    async def test_a_transaction_left_idle_is_ended_after_the_tenant_lifted_its_timeout(
        self, tenant: Provisioned
    ) -> None:
        """Attack: SET idle_in_transaction_session_timeout = 0, BEGIN, take a lock, go idle:
        the lock would be held for ever."""
        async with watching(tenant.resource) as watchdog:
            conn = await psycopg.AsyncConnection.connect(tenant.url, autocommit=True)
            try:
                await conn.execute("SET idle_in_transaction_session_timeout = 0")
                await conn.execute("BEGIN")
                await conn.execute("SELECT pg_advisory_xact_lock(42)")
                # Not polled with statements: each would reset the idle time it measures.
                await eventually(lambda: watchdog.actions >= 1)
                with pytest.raises(psycopg.OperationalError):
                    await conn.execute("SELECT 1")
            finally:
                await conn.close()
        assert watchdog.actions >= 1

    async def test_statements_within_the_limit_and_other_roles_are_left_alone(
        self, tenant: Provisioned
    ) -> None:
        async with (
            watching(tenant.resource) as watchdog,
            await psycopg.AsyncConnection.connect(tenant.url, autocommit=True) as mine,
            await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin,
        ):
            await mine.execute("SELECT pg_sleep(0.2)")
            # The admin is not a tenant. Long enough for several checks (a tick each) to see
            # it even when a loaded machine makes each check take several ticks.
            await admin.execute("SELECT pg_sleep(1.5)")
            assert watchdog.checks > 3
            assert watchdog.actions == 0


class TestTheWatchdogTask:
    async def test_a_server_that_cannot_be_reached_is_waited_out_not_fatal(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with watching("nobody", dsn="postgresql://postgres@127.0.0.1:1/postgres") as dog:
            await eventually(lambda: dog.checks >= 3)  # still checking
        warnings = [r for r in caplog.records if r.getMessage().startswith("postgres watchdog")]
        assert len(warnings) == 1  # once per outage

    async def test_the_control_plane_runs_it_over_its_registrys_postgres_add_ons(
        self, tmp_path: Path
    ) -> None:
        settings = ControlSettings(
            db_url=f"sqlite+aiosqlite:///{tmp_path}/state.db",
            port=0,
            addons=AddonServers(postgres_admin_dsn=ADMIN_DSN),
        )
        plane = ControlPlane(
            settings,
            target=DetachedTarget(release_timeout=5),
            registry=CollectorRegistry(),
            addon_prefix=TEST_PREFIX,
        )
        await plane.start()
        try:
            assert "postgres-watchdog" in plane.tasks.names()
            control = plane.control
            await control.create_app("wd", actor="test")
            addon, _ = await control.create_addon(
                "wd", plan="postgres:mini", attachment=None, actor="test"
            )
            tenants = registry_tenants(control.store, POSTGRES_PLANS)
            assert await tenants() == {addon.resource: POSTGRES_PLANS["mini"]}
        finally:
            async with control.store.tx() as tx:
                leftovers = await tx.all_addons()
            for leftover in leftovers:
                await control.provisioners["postgres"].destroy(leftover.resource)
            await plane.stop()
