"""The Postgres exporter against the real server on 127.0.0.1:5432, with 50 add-on databases."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import generate_latest

from exporters.errors import ErrorKind
from exporters.poller import Poller
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.sources import APPLICATION_NAME, PostgresSource
from exporters.targets import Kind
from tests.exporters.conftest import PG_ADMIN, PREFIX, own_backends, poll_round, sample
from tests.exporters.promql import parse_exposition

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


# A poll of the shared server reads 50 databases: well under a second on an idle machine,
# but more than one on a loaded CI runner (stop 20's CI failed so). Tests that expect a
# poll to succeed give it this much; the one about a silent server sets its own timeout.
TIMEOUT = 15.0


def settings(path: Path, **overrides: object) -> ExporterSettings:
    values: dict[str, object] = {"interval": 2 * TIMEOUT, "timeout": TIMEOUT, "port": 1}
    values.update(overrides)
    return ExporterSettings(kind=Kind.POSTGRES, targets_file=path, **values)  # type: ignore[arg-type]


DOWN = '[[targets]]\nname = "down"\ndsn = "host=127.0.0.1 port=1 user=postgres"\n'


@pytest.fixture
async def exporter(tmp_path: Path, pg_databases: list[str]) -> Exporter:
    exporter = Exporter(settings(write_targets(tmp_path / "pg.toml", pg_databases, DOWN)))
    assert await exporter.reload()
    yield exporter  # type: ignore[misc]
    await exporter.source.close()


class TestManyDatabases:
    async def test_every_add_on_database_is_up_with_the_sizes_the_server_reports(
        self, exporter: Exporter, pg_databases: list[str]
    ) -> None:
        await poll_round(exporter)
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
            await poll_round(exporter)
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
        await poll_round(exporter)
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
        self, tmp_path: Path, pg_databases: list[str], silent_port: int
    ) -> None:
        # Only a timeout ends a silent server's poll, so this round lasts that long: short
        # enough for a quick test, long enough for five databases on a loaded machine.
        timeout = 5.0
        silent = f'[[targets]]\nname = "silent"\ndsn = "host=127.0.0.1 port={silent_port}"\n'
        path = write_targets(tmp_path / "pg.toml", pg_databases[:5], DOWN, silent)
        exporter = Exporter(settings(path, timeout=timeout))
        assert await exporter.reload()
        before = time.time()
        started = time.monotonic()
        try:
            await poll_round(exporter)
        finally:
            await exporter.source.close()
        took = time.monotonic() - started
        store = exporter.store
        assert sample(store, "down", "pg_up") == 0
        assert sample(store, "down", "slipway_exporter_poll_error", error="connect") == 1
        assert sample(store, "silent", "pg_up") == 0
        assert sample(store, "silent", "slipway_exporter_poll_error", error="timeout") == 1
        # the timeout ended the silent server's poll (with margin for a loaded machine;
        # without the timeout it would hang for ever), and the round with it
        duration = sample(store, "silent", "slipway_exporter_poll_duration_seconds")
        assert duration is not None
        assert timeout <= duration < timeout + 3
        assert took < timeout + 5
        assert exporter.store.round_duration is not None
        assert exporter.store.round_duration <= took
        # meanwhile the others were polled, not held behind it
        for target in ("shared", "addon-3"):
            fresh = sample(store, target, "slipway_exporter_last_poll_success_timestamp_seconds")
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
        await poll_round(exporter)
        assert sample(exporter.store, "d", "pg_up") == 0
        assert sample(exporter.store, "d", "slipway_exporter_poll_error") == 1
        snapshot = exporter.store.get("d")
        assert snapshot is not None
        assert snapshot.outcome.error is ErrorKind.SERVER_DOWN
        gone = exporter.store.get("gone")
        assert gone is not None
        assert gone.outcome.error is ErrorKind.NOT_FOUND
        await exporter.source.close()


@pytest.fixture
def bystander() -> Iterator[int]:
    """Another process's connection by the exporter's name, as another exporter on the
    machine has: the tests must neither count it nor end it. Yields its backend pid."""
    code = (
        "import sys, psycopg\n"
        f"conn = psycopg.connect({PG_ADMIN!r}, application_name={APPLICATION_NAME!r})\n"
        "print(conn.info.backend_pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.communicate(timeout=10)


def alive(pid: int) -> bool:
    with psycopg.connect(PG_ADMIN) as admin:
        row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None


class TestConnections:
    async def test_one_kept_connection_named_slipway_exporter_with_a_statement_timeout(
        self, exporter: Exporter, bystander: int
    ) -> None:
        for _ in range(3):
            await poll_round(exporter)
        source = exporter.source
        assert isinstance(source, PostgresSource)
        with psycopg.connect(PG_ADMIN) as admin:
            # 50 database targets, three rounds: still one connection
            assert len(own_backends(admin, APPLICATION_NAME)) == 1
        conn = source._conns["shared"]
        cur = await conn.execute("SHOW statement_timeout")
        assert (await cur.fetchone()) == (f"{TIMEOUT:g}s",)

    async def test_a_server_that_comes_back_is_reconnected(
        self, exporter: Exporter, bystander: int
    ) -> None:
        await poll_round(exporter)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            # Only this exporter's: others on the machine share the server and the name.
            (pid,) = own_backends(admin, APPLICATION_NAME)
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await poll_round(exporter)  # finds the connection dead: up 0, backs off
        assert sample(exporter.store, "shared", "pg_up") == 0
        # Should a loaded machine still miss the poll timeout, the reconnect gets a few
        # rounds (as the backoff would), bounded in time.
        deadline = time.monotonic() + 20
        while True:
            await poll_round(exporter)
            if sample(exporter.store, "shared", "pg_up") == 1 or time.monotonic() > deadline:
                break
        snapshot = exporter.store.get("shared")
        assert snapshot is not None
        assert sample(exporter.store, "shared", "pg_up") == 1, snapshot.outcome.error
        assert alive(bystander)


class TestSecrets:
    async def test_the_password_appears_in_no_exposition_and_no_log(
        self, exporter: Exporter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        await poll_round(exporter)
        body = exporter.exposition.body().decode()
        assert SECRET not in body
        assert SECRET not in caplog.text
        assert "poll failed" in caplog.text  # the failing targets were logged, without DSNs


def types(text: str) -> dict[str, str]:
    """TYPE lines: sample name as written -> type."""
    return {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")
    }


class TestExposition:
    async def test_names_and_types_match_postgres_exporter(self, exporter: Exporter) -> None:
        await poll_round(exporter)
        await poll_round(exporter)
        text = exporter.exposition.body().decode()
        series = parse_exposition(text)
        names = {s.name for s in series}
        typed = types(text)
        for column in ("xact_commit", "blks_hit", "tup_fetched", "deadlocks", "temp_bytes"):
            # a counter without _total, exactly as postgres_exporter's Go client writes it
            assert typed[f"pg_stat_database_{column}"] == "counter"
            assert f"pg_stat_database_{column}_total" not in names
        assert typed["pg_stat_database_numbackends"] == "gauge"
        for column in ("buffers_alloc", "checkpoints_timed", "checkpoint_write_time"):
            assert typed[f"pg_stat_bgwriter_{column}"] == "counter"
            assert typed[f"pg_stat_bgwriter_{column}_total"] == "counter"
        for name in (
            "pg_up",
            "pg_static",
            "pg_database_size_bytes",
            "pg_stat_activity_count",
            "pg_stat_activity_max_tx_duration",
            "pg_locks_count",
            "pg_settings_max_connections",
            "pg_settings_work_mem_bytes",
            "pg_settings_random_page_cost",
            "pg_settings_fsync",
            "pg_replication_lag_seconds",
            "pg_database_wraparound_age_datfrozenxid_seconds",
            "pg_exporter_last_scrape_duration_seconds",
            "pg_exporter_last_scrape_error",
            "pg_exporter_scrapes_total",
            "slipway_exporter_poll_duration_seconds",
            "slipway_exporter_targets",
            "process_cpu_seconds_total",
        ):
            assert name in names, name
        assert typed["pg_exporter_scrapes_total"] == "counter"
        assert typed["pg_settings_work_mem_bytes"] == "gauge"
        (targets,) = [s for s in series if s.name == "slipway_exporter_targets"]
        assert targets.labels == {"kind": "postgres"}
        for s in series:
            if s.name.startswith(("pg_", "slipway_pg_", "slipway_exporter_poll")):
                assert "target" in s.labels, s
        # every family once, its samples together: what the 0.0.4 format requires
        seen: list[str] = []
        for s in series:
            if not seen or seen[-1] != s.name:
                assert s.name not in seen, s.name
                seen.append(s.name)

    async def test_the_exporters_own_series_count_polls_per_target(
        self, exporter: Exporter
    ) -> None:
        now = [0.0]
        poller = Poller(
            source=exporter.source,
            store=exporter.store,
            settings=exporter.settings,
            clock=lambda: now[0],
        )
        await poller.set_targets(exporter.poller.targets)
        for _ in range(3):
            await poller.poll_once()
            now[0] += exporter.settings.interval
        store = exporter.store
        for target in ("shared", "addon-0"):
            assert sample(store, target, "pg_exporter_scrapes_total") == 3
            assert sample(store, target, "pg_exporter_last_scrape_error") == 0
            duration = sample(store, target, "pg_exporter_last_scrape_duration_seconds")
            assert duration == sample(store, target, "slipway_exporter_poll_duration_seconds")
        # "down" backs off: retried after one interval, then after two
        assert sample(store, "down", "pg_exporter_scrapes_total") == 2
        assert sample(store, "down", "pg_exporter_last_scrape_error") == 1

    async def test_settings_span_all_of_pg_settings_on_every_target(
        self, exporter: Exporter
    ) -> None:
        await poll_round(exporter)
        with psycopg.connect(PG_ADMIN) as conn:
            rows = conn.execute(
                "SELECT name, setting, unit FROM pg_settings "
                "WHERE vartype IN ('bool', 'integer', 'real')"
            ).fetchall()
            work_mem_kb = int(
                conn.execute("SELECT setting FROM pg_settings WHERE name = 'work_mem'").fetchone()[
                    0
                ]
            )  # type: ignore[index]
        names = {
            s.name
            for s in exporter.store.get("addon-7").samples()  # type: ignore[union-attr]
        }
        settings = {n for n in names if n.startswith("pg_settings_")}
        assert len(settings) == len(rows)
        assert sample(exporter.store, "addon-7", "pg_settings_work_mem_bytes") == work_mem_kb * 1024

    async def test_the_fast_text_and_the_collector_hold_the_same_samples(
        self, exporter: Exporter
    ) -> None:
        await poll_round(exporter)
        fast = exporter.store.render()
        slow = generate_latest(exporter.registry).decode()

        def samples(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
            return {(s.name, frozenset(s.labels.items())) for s in parse_exposition(text)}

        assert samples(fast) == samples(slow)
        assert sum(1 for name, _ in samples(fast) if name == "pg_locks_count") > 50 * 9
        slow_types = types(slow)
        for name, kind in types(fast).items():
            if kind == "gauge":
                assert slow_types[name] == "gauge", name


class TestLeastPrivilege:
    async def test_a_role_without_pg_monitor_still_polls_and_degrades_per_database(
        self, tmp_path: Path, pg_databases: list[str]
    ) -> None:
        role = f"{PREFIX}role"
        locked = pg_databases[5]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
            # Its own grant: add-on servers close `postgres` to PUBLIC (control/addons/
            # postgres.py: FENCED), and other users of a shared server may too.
            admin.execute(f'GRANT CONNECT ON DATABASE postgres TO "{role}"')
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
                await poll_round(exporter)
                await exporter.source.close()
            finally:
                admin.execute(f'GRANT CONNECT ON DATABASE "{locked}" TO PUBLIC')
                admin.execute(f'REVOKE CONNECT ON DATABASE postgres FROM "{role}"')
                admin.execute(f'DROP ROLE "{role}"')
        store = exporter.store
        assert sample(store, "plain", "pg_up") == 1
        assert sample(store, "locked", "pg_up") == 1
        assert sample(store, "locked", "pg_database_size_bytes") is None  # may not be sized
        assert sample(store, "locked", "pg_stat_database_xact_commit") is not None
        assert sample(store, "open", "pg_database_size_bytes") is not None
