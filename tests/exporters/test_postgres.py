"""The Postgres exporter against the real server on 127.0.0.1:5432, with 50 add-on databases."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.errors import ErrorKind
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.sources import PostgresSource
from exporters.targets import Kind
from tests.exporters.conftest import PG_ADMIN, PREFIX, sample

# Trust authentication ignores it, so it can ride in the DSN and prove it never shows up.
SECRET = "pw-that-must-never-leak-7f3a"
SERVER_DSN = f"host=127.0.0.1 port=5432 user=postgres dbname=postgres password={SECRET}"


def write_targets(path: Path, databases: list[str], *extra: str) -> Path:
    parts = [f'[[targets]]\nname = "shared"\ndsn = "{SERVER_DSN}"\nlabels = {{ cluster = "c1" }}\n']
    for i, db in enumerate(databases):
        parts.append(
            f'[[targets]]\nname = "addon-{i}"\nserver = "shared"\ndatabase = "{db}"\n'
            f'labels = {{ app = "app{i}", plan = "hobby" }}\n'
            f"limits = {{ size_bytes = 100_000_000, connections = 20 }}\n"
        )
    parts.extend(extra)
    path.write_text("\n".join(parts))
    return path


def settings(path: Path, **overrides: object) -> ExporterSettings:
    values: dict[str, object] = {"interval": 2.0, "timeout": 1.0, "port": 1}
    values.update(overrides)
    return ExporterSettings(kind=Kind.POSTGRES, targets_file=path, **values)  # type: ignore[arg-type]


@pytest.fixture
async def exporter(tmp_path: Path, pg_databases: list[str], silent_port: int) -> Exporter:
    path = write_targets(
        tmp_path / "pg.toml",
        pg_databases,
        '[[targets]]\nname = "down"\ndsn = "host=127.0.0.1 port=1 user=postgres"\n',
        f'[[targets]]\nname = "silent"\ndsn = "host=127.0.0.1 port={silent_port} user=postgres"\n',
    )
    exporter = Exporter(settings(path))
    assert await exporter.reload()
    yield exporter  # type: ignore[misc]
    await exporter.source.close()


class TestManyDatabases:
    async def test_every_add_on_database_is_up_with_the_sizes_the_server_reports(
        self, exporter: Exporter, pg_databases: list[str]
    ) -> None:
        await exporter.poller.poll_once()
        store = exporter.store
        with psycopg.connect(PG_ADMIN) as conn:
            sizes = dict(
                conn.execute(
                    "SELECT datname, pg_database_size(datname) FROM pg_database "
                    "WHERE datname LIKE %s",
                    (PREFIX + "%",),
                ).fetchall()
            )
        assert len(sizes) == 50
        for i, db in enumerate(pg_databases):
            assert sample(store, f"addon-{i}", "pg_up") == 1.0
            assert sample(store, f"addon-{i}", "pg_database_size_bytes", datname=db) == sizes[db]
            assert sample(store, f"addon-{i}", "slipway_pg_database_size_plan_ratio") == (
                pytest.approx(sizes[db] / 100_000_000)
            )
        # the server target reports the databases nobody claims, not the add-ons'
        assert sample(store, "shared", "pg_database_size_bytes", datname=pg_databases[0]) is None
        assert sample(store, "shared", "pg_database_size_bytes", datname="postgres") is not None

    async def test_activity_counters_and_locks_match_what_the_server_sees(
        self, exporter: Exporter, pg_databases: list[str]
    ) -> None:
        db = pg_databases[7]
        dsn = f"host=127.0.0.1 user=postgres dbname={db}"
        async with (
            await psycopg.AsyncConnection.connect(dsn) as holder,
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as waiter,
            await psycopg.AsyncConnection.connect(dsn) as idle,
        ):
            await holder.execute("CREATE TABLE t (x int)")
            await holder.commit()
            await holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # stays in a transaction
            blocked = asyncio.ensure_future(waiter.execute("SELECT * FROM t"))
            await idle.execute("SELECT 1")  # idle in transaction too
            async with asyncio.timeout(10):
                while True:
                    async with await psycopg.AsyncConnection.connect(PG_ADMIN) as admin:
                        cur = await admin.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = %s AND wait_event_type = 'Lock'",
                            (db,),
                        )
                        row = await cur.fetchone()
                    if row and row[0] == 1:
                        break
                    await asyncio.sleep(0.05)
            await exporter.poller.poll_once()
            async with await psycopg.AsyncConnection.connect(PG_ADMIN) as admin:
                cur = await admin.execute(
                    "SELECT numbackends, xact_commit FROM pg_stat_database WHERE datname = %s",
                    (db,),
                )
                server_numbackends, server_commits = await cur.fetchone()  # type: ignore[misc]
            blocked.cancel()
            await holder.rollback()
        store = exporter.store
        name = "addon-7"
        assert sample(store, name, "pg_stat_database_numbackends", datname=db) == 3
        assert server_numbackends == 3
        commits = sample(store, name, "pg_stat_database_xact_commit", datname=db)
        assert commits is not None
        assert 0 < commits <= server_commits
        assert sample(store, name, "pg_stat_activity_count", state="idle in transaction") == 2
        assert sample(store, name, "pg_stat_activity_count", state="active") == 1
        assert sample(store, name, "slipway_pg_idle_in_transaction") == 2
        assert sample(store, name, "slipway_pg_waiting_queries") == 1
        assert sample(store, name, "pg_locks_count", mode="accessexclusivelock") == 1
        assert sample(store, name, "slipway_pg_connections_used_ratio") == 3 / 20

    async def test_settings_are_the_servers_own(self, exporter: Exporter) -> None:
        await exporter.poller.poll_once()
        with psycopg.connect(PG_ADMIN) as conn:
            max_conn = float(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
            buffers = conn.execute(
                "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'"
            ).fetchone()[0]  # type: ignore[index]
            start = conn.execute(
                "SELECT extract(epoch FROM pg_postmaster_start_time())::float8"
            ).fetchone()[0]  # type: ignore[index]
        for target in ("shared", "addon-0"):
            assert sample(exporter.store, target, "pg_settings_max_connections") == max_conn
            assert sample(exporter.store, target, "pg_settings_shared_buffers_bytes") == buffers
            assert sample(exporter.store, target, "pg_postmaster_start_time_seconds") == start
            assert sample(exporter.store, target, "pg_replication_is_replica") == 0


class TestFailingTargets:
    async def test_down_and_silent_servers_are_up_0_while_the_others_stay_fresh(
        self, exporter: Exporter
    ) -> None:
        before = time.time()
        started = time.monotonic()
        await exporter.poller.poll_once()
        took = time.monotonic() - started
        store = exporter.store
        assert sample(store, "down", "pg_up") == 0
        assert sample(store, "down", "slipway_exporter_poll_error", error="connect") == 1
        assert sample(store, "silent", "pg_up") == 0
        assert sample(store, "silent", "slipway_exporter_poll_error", error="timeout") == 1
        assert sample(store, "silent", "slipway_exporter_poll_duration_seconds") < 1.5
        # the silent server held one slot for its timeout and nothing else
        assert took < 1.0 + 1.5
        assert exporter.store.round_duration is not None
        assert exporter.store.round_duration <= took
        fresh = sample(store, "addon-3", "slipway_exporter_last_poll_success_timestamp_seconds")
        assert fresh is not None
        assert fresh >= before
        assert sample(store, "down", "slipway_exporter_last_poll_success_timestamp_seconds") is None

    async def test_a_database_target_follows_its_server_down(
        self, tmp_path: Path, pg_databases: list[str]
    ) -> None:
        path = tmp_path / "pg.toml"
        path.write_text(
            '[[targets]]\nname = "s"\ndsn = "host=127.0.0.1 port=1 user=postgres"\n'
            f'[[targets]]\nname = "d"\nserver = "s"\ndatabase = "{pg_databases[0]}"\n'
            '[[targets]]\nname = "live"\ndsn = "host=127.0.0.1 user=postgres"\n'
            '[[targets]]\nname = "gone"\nserver = "live"\ndatabase = "slipway_exp_t_no_such_db"\n'
        )
        exporter = Exporter(settings(path))
        await exporter.reload()
        await exporter.poller.poll_once()
        assert sample(exporter.store, "d", "pg_up") == 0
        assert sample(exporter.store, "d", "slipway_exporter_poll_error") == 1
        snapshot = exporter.store.get("d")
        assert snapshot is not None
        assert snapshot.outcome.error is ErrorKind.SERVER_DOWN
        gone = exporter.store.get("gone")
        assert gone is not None
        assert gone.outcome.error is ErrorKind.NOT_FOUND
        await exporter.source.close()


class TestConnections:
    async def test_one_kept_connection_named_slipway_exporter_with_a_statement_timeout(
        self, exporter: Exporter
    ) -> None:
        for _ in range(3):
            await exporter.poller.poll_once()
        source = exporter.source
        assert isinstance(source, PostgresSource)
        with psycopg.connect(PG_ADMIN) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slipway-exporter'"
            ).fetchone()  # type: ignore[misc]
        assert count == 1  # 50 database targets, three rounds: still one connection
        conn = source._conns["shared"]
        cur = await conn.execute("SHOW statement_timeout")
        assert (await cur.fetchone()) == ("1s",)

    async def test_a_server_that_comes_back_is_reconnected(self, exporter: Exporter) -> None:
        await exporter.poller.poll_once()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'slipway-exporter'"
            )
        await exporter.poller.poll_once()  # finds the connection dead: up 0, backs off
        assert sample(exporter.store, "shared", "pg_up") == 0
        exporter.poller._states.clear()  # skip the backoff wait instead of sleeping through it
        await exporter.poller.poll_once()
        assert sample(exporter.store, "shared", "pg_up") == 1


class TestSecrets:
    async def test_the_password_appears_in_no_exposition_and_no_log(
        self, exporter: Exporter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        await exporter.poller.poll_once()
        body = exporter.exposition.body().decode()
        assert SECRET not in body
        assert SECRET not in caplog.text
        assert "poll failed" in caplog.text  # the failing targets were logged, without DSNs


class TestExposition:
    async def test_names_match_postgres_exporter_and_parse(self, exporter: Exporter) -> None:
        await exporter.poller.poll_once()
        text = exporter.exposition.body().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        names = {s.name for f in families.values() for s in f.samples}
        for column in ("xact_commit", "blks_hit", "tup_fetched", "deadlocks", "temp_bytes"):
            assert f"pg_stat_database_{column}" in names
            assert f"pg_stat_database_{column}_total" not in names
        for name in (
            "pg_up",
            "pg_static",
            "pg_database_size_bytes",
            "pg_stat_activity_count",
            "pg_stat_activity_max_tx_duration",
            "pg_locks_count",
            "pg_settings_max_connections",
            "pg_replication_lag_seconds",
            "pg_database_wraparound_age_datfrozenxid_seconds",
            "slipway_exporter_poll_duration_seconds",
            "slipway_exporter_targets",
        ):
            assert name in names, name
        assert families["pg_stat_database_xact_commit"].type == "unknown"
        (targets,) = families["slipway_exporter_targets"].samples
        assert targets.value == 53
        for family in families.values():
            for s in family.samples:
                if family.name.startswith(("pg_", "slipway_pg_", "slipway_exporter_poll")):
                    assert "target" in s.labels, s

    async def test_the_fast_text_and_the_collector_hold_the_same_samples(
        self, exporter: Exporter
    ) -> None:
        await exporter.poller.poll_once()
        fast = exporter.store.render()
        slow = generate_latest(exporter.registry).decode()

        def parsed(text: str) -> dict[str, tuple[str, set[tuple[str, frozenset, float]]]]:  # type: ignore[type-arg]
            return {
                f.name: (
                    f.type,
                    {(s.name, frozenset(s.labels.items()), s.value) for s in f.samples},
                )
                for f in text_string_to_metric_families(text)
            }

        assert parsed(fast) == parsed(slow)
        assert len(parsed(fast)["pg_locks_count"][1]) > 50 * 9


class TestLeastPrivilege:
    async def test_a_role_without_pg_monitor_still_polls_and_degrades_per_database(
        self, tmp_path: Path, pg_databases: list[str]
    ) -> None:
        role = f"{PREFIX}role"
        locked = pg_databases[5]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
            admin.execute(f'REVOKE CONNECT ON DATABASE "{locked}" FROM PUBLIC')
            try:
                path = tmp_path / "pg.toml"
                path.write_text(
                    f'[[targets]]\nname = "plain"\n'
                    f'dsn = "host=127.0.0.1 user={role} dbname=postgres"\n'
                    f'[[targets]]\nname = "locked"\nserver = "plain"\ndatabase = "{locked}"\n'
                    f'[[targets]]\nname = "open"\nserver = "plain"\n'
                    f'database = "{pg_databases[6]}"\n'
                )
                exporter = Exporter(settings(path))
                await exporter.reload()
                await exporter.poller.poll_once()
                await exporter.source.close()
            finally:
                admin.execute(f'GRANT CONNECT ON DATABASE "{locked}" TO PUBLIC')
                admin.execute(f'DROP ROLE "{role}"')
        store = exporter.store
        assert sample(store, "plain", "pg_up") == 1
        assert sample(store, "locked", "pg_up") == 1
        assert sample(store, "locked", "pg_database_size_bytes") is None  # may not be sized
        assert sample(store, "locked", "pg_stat_database_xact_commit") is not None
        assert sample(store, "open", "pg_database_size_bytes") is not None
