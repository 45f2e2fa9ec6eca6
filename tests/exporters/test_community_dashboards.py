"""Grafana 763, 9628 and 14114 have data in every panel with the documented scrape configs.

The queries below were typed from the dashboards' JSON (763: redis_exporter's
contrib/grafana_prometheus_redis_dashboard.json; 14114: postgres_exporter's
postgres_mixin/dashboards/postgres-overview.json; 9628: grafana.com's "PostgreSQL
Database"), panel by panel; the test writes them to a file in its tmp directory, reads
that file back as a dashboard provisioner would, and renders every query against the
exporters serving a real Postgres and a real redis-server on loopback, with default
flags, scraped as Prometheus scrapes them: the chart's ServiceMonitor (``target`` ->
``instance``) and the ``/probe`` multi-target job. A metric name counts as found when
every selector naming it matches a series, with the labels the query aggregates by,
once the dashboard's variables are resolved to the add-on being viewed.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind
from tests.conftest import free_port
from tests.exporters.conftest import PG_ADMIN, RedisServer, poll_round
from tests.exporters.promql import (
    Rendering,
    Series,
    Variable,
    parse_exposition,
    probe,
    resolve,
    service_monitor,
)


@dataclass(frozen=True)
class Dashboard:
    kind: str
    variables: list[Variable]
    exprs: list[str]


DASHBOARDS = {
    "763": Dashboard(
        kind="redis",
        variables=[
            Variable("namespace", "namespace", "redis_up"),
            Variable("instance", "instance", 'redis_up{namespace=~"$namespace"}'),
        ],
        exprs=[
            'max(max_over_time(redis_uptime_in_seconds{namespace=~"$namespace", instance=~"$instance"}[$__interval]))',  # noqa: E501
            'sum(redis_connected_clients{namespace=~"$namespace", instance=~"$instance"})',
            'sum(100 * (redis_memory_used_bytes{namespace=~"$namespace", instance=~"$instance"}  / redis_memory_max_bytes{namespace=~"$namespace", instance=~"$instance"}))',  # noqa: E501
            'sum(rate(redis_commands_total{namespace=~"$namespace", instance=~"$instance"} [1m])) by (cmd)',  # noqa: E501
            'irate(redis_keyspace_hits_total{instance=~"$instance"}[5m])',
            'irate(redis_keyspace_misses_total{instance=~"$instance"}[5m])',
            'redis_memory_used_bytes{instance=~"$instance"}',
            'redis_memory_max_bytes{instance=~"$instance"}',
            'sum(rate(redis_net_input_bytes_total{instance=~"$instance"}[5m]))',
            'sum(rate(redis_net_output_bytes_total{instance=~"$instance"}[5m]))',
            'sum (redis_db_keys{instance=~"$instance"}) by (db, instance)',
            'sum (redis_db_keys{instance=~"$instance"}) by (instance) - sum (redis_db_keys_expiring{instance=~"$instance"}) by (instance)',  # noqa: E501
            'sum (redis_db_keys_expiring{instance=~"$instance"}) by (instance)',
            'sum(rate(redis_expired_keys_total{instance=~"$instance"}[5m])) by (instance)',
            'sum(rate(redis_evicted_keys_total{instance=~"$instance"}[5m])) by (instance)',
            'sum(redis_connected_clients{instance=~"$instance"})',
            'sum(redis_blocked_clients{instance=~"$instance"})',
            'sum(irate(redis_commands_duration_seconds_total{namespace=~"$namespace", instance =~ "$instance"}[1m])) by (cmd) / sum(irate(redis_commands_total{namespace=~"$namespace", instance =~ "$instance"}[1m])) by (cmd)',  # noqa: E501
            'sum(irate(redis_commands_duration_seconds_total{instance=~"$instance"}[1m])) by (cmd) != 0',  # noqa: E501
        ],
    ),
    "9628": Dashboard(
        kind="postgres",
        # query_result(...) with a regex taking one label; datname and mode over every series
        variables=[
            Variable(
                "namespace", "kubernetes_namespace", "pg_exporter_last_scrape_duration_seconds"
            ),
            Variable(
                "release",
                "release",
                'pg_exporter_last_scrape_duration_seconds{kubernetes_namespace="$namespace"}',
            ),
            Variable("instance", "instance", 'pg_up{release="$release"}'),
            Variable("datname", "datname"),
            Variable("mode", "mode"),
        ],
        exprs=[
            'pg_static{release="$release", instance="$instance"}',
            'pg_postmaster_start_time_seconds{release="$release", instance="$instance"} * 1000',
            'avg(rate(process_cpu_seconds_total{release="$release", instance="$instance"}[5m]) * 1000)',  # noqa: E501
            'avg(rate(process_resident_memory_bytes{release="$release", instance="$instance"}[5m]))',  # noqa: E501
            'avg(rate(process_virtual_memory_bytes{release="$release", instance="$instance"}[5m]))',
            'process_open_fds{release="$release", instance="$instance"}',
            'pg_settings_max_connections{release="$release", instance="$instance"}',
            'pg_settings_shared_buffers_bytes{instance="$instance"}',
            'pg_settings_effective_cache_size_bytes{instance="$instance"}',
            'pg_settings_maintenance_work_mem_bytes{instance="$instance"}',
            'pg_settings_work_mem_bytes{instance="$instance"}',
            'pg_settings_max_wal_size_bytes{instance="$instance"}',
            'pg_settings_random_page_cost{instance="$instance"}',
            "pg_settings_seq_page_cost",
            'pg_settings_max_worker_processes{instance="$instance"}',
            'pg_settings_max_parallel_workers{instance="$instance"}',
            'pg_stat_activity_count{datname=~"$datname", instance=~"$instance", state="active"} !=0',  # noqa: E501
            'pg_stat_activity_count{datname=~"$datname", instance=~"$instance", state=~"idle|idle in transaction|idle in transaction (aborted)"}',  # noqa: E501
            'SUM(pg_stat_database_tup_fetched{datname=~"$datname", instance=~"$instance"})',
            'SUM(pg_stat_database_tup_inserted{release="$release", datname=~"$datname", instance=~"$instance"})',  # noqa: E501
            'SUM(pg_stat_database_tup_updated{datname=~"$datname", instance=~"$instance"})',
            'pg_stat_database_tup_returned{datname=~"$datname", instance=~"$instance"} != 0',
            'pg_stat_database_tup_fetched{datname=~"$datname", instance=~"$instance"} != 0',
            'pg_stat_database_tup_inserted{datname=~"$datname", instance=~"$instance"} != 0',
            'pg_stat_database_tup_updated{datname=~"$datname", instance=~"$instance"} != 0',
            'pg_stat_database_tup_deleted{datname=~"$datname", instance=~"$instance"} != 0',
            'irate(pg_stat_database_xact_commit{instance="$instance", datname=~"$datname"}[5m])',
            'irate(pg_stat_database_xact_rollback{instance="$instance", datname=~"$datname"}[5m])',
            'pg_locks_count{datname=~"$datname", instance=~"$instance", mode=~"$mode"} != 0',
            'irate(pg_stat_bgwriter_buffers_backend{instance="$instance"}[5m])',
            'irate(pg_stat_bgwriter_buffers_alloc{instance="$instance"}[5m])',
            'irate(pg_stat_bgwriter_buffers_backend_fsync{instance="$instance"}[5m])',
            'irate(pg_stat_bgwriter_buffers_checkpoint{instance="$instance"}[5m])',
            'irate(pg_stat_bgwriter_buffers_clean{instance="$instance"}[5m])',
            'irate(pg_stat_database_conflicts{instance="$instance", datname=~"$datname"}[5m])',
            'irate(pg_stat_database_deadlocks{instance="$instance", datname=~"$datname"}[5m])',
            'pg_stat_database_blks_hit{instance="$instance", datname=~"$datname"} / (pg_stat_database_blks_read{instance="$instance", datname=~"$datname"} + pg_stat_database_blks_hit{instance="$instance", datname=~"$datname"})',  # noqa: E501
            'irate(pg_stat_database_temp_bytes{instance="$instance", datname=~"$datname"}[5m])',
            'irate(pg_stat_bgwriter_checkpoint_write_time{instance="$instance"}[5m])',
            'irate(pg_stat_bgwriter_checkpoint_sync_time{instance="$instance"}[5m])',
        ],
    ),
    "14114": Dashboard(
        kind="postgres",
        variables=[
            Variable("job", "job", "pg_up"),
            Variable("instance", "instance", 'pg_up{job=~"$job"}'),
            Variable(
                "db",
                "datname",
                'pg_stat_database_tup_fetched{job=~"$job",instance=~"$instance",datname!~"template.*|postgres"}',
            ),
        ],
        exprs=[
            'sum(irate(pg_stat_database_xact_commit{datname=~"$db",job=~"$job",instance=~"$instance"}[$__rate_interval])) + sum(irate(pg_stat_database_xact_rollback{datname=~"$db",job=~"$job",instance=~"$instance"}[$__rate_interval]))',  # noqa: E501
            *(
                f'sum(irate(pg_stat_database_tup_{c}{{datname=~"$db",job=~"$job",instance=~"$instance"}}[$__rate_interval]))'
                for c in ("fetched", "returned", "inserted", "updated", "deleted")
            ),
            *(
                f'irate(pg_stat_bgwriter_{c}_total{{job=~"$job",instance=~"$instance"}}[$__rate_interval])'
                for c in (
                    "buffers_alloc",
                    "buffers_backend_fsync",
                    "buffers_backend",
                    "buffers_clean",
                    "buffers_checkpoint",
                )
            ),
            'sum(pg_stat_database_deadlocks{datname=~"$db",job=~"$job",instance=~"$instance"})',
            'sum(pg_stat_database_conflicts{datname=~"$db",job=~"$job",instance=~"$instance"})',
            'round(sum by (datname) (rate(pg_stat_database_blks_hit{datname=~"$db",job=~"$job",instance=~"$instance"}[$__rate_interval])) / (sum by (datname)(rate(pg_stat_database_blks_hit{datname=~"$db",job=~"$job",instance=~"$instance"}[$__rate_interval])) + sum by (datname)(rate(pg_stat_database_blks_read{datname=~"$db",job=~"$job",instance=~"$instance"}[$__rate_interval])))*100,0.001)',  # noqa: E501
            'pg_stat_database_numbackends{datname=~"$db",job=~"$job",instance=~"$instance"}',
        ],
    ),
}
ADDON_DB = f"slipway_exp_dash_{os.getpid()}"
#: What the viewer picks: the add-on (its own instance under both scrape configs).
VIEW = {
    "postgres": {"instance": "blue-db", "datname": ADDON_DB, "db": ADDON_DB},
    "redis": {"instance": "blue-redis"},
}


def load_dashboards(path: Path) -> dict[str, Dashboard]:
    raw = json.loads(path.read_text())
    return {
        uid: Dashboard(board["kind"], [Variable(**v) for v in board["variables"]], board["exprs"])
        for uid, board in raw.items()
    }


@pytest.fixture
def dashboards(tmp_path: Path) -> dict[str, Dashboard]:
    path = tmp_path / "community-dashboards.json"
    path.write_text(json.dumps({uid: asdict(board) for uid, board in DASHBOARDS.items()}))
    return load_dashboards(path)


@pytest.fixture
def addon_database() -> Iterator[str]:
    """An add-on database with some traffic, so its counters have moved."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{ADDON_DB}"')
    try:
        dsn = f"host=127.0.0.1 user=postgres dbname={ADDON_DB}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
            conn.execute("UPDATE t SET v = 'y' WHERE id <= 10")
            conn.execute("DELETE FROM t WHERE id > 90")
            conn.execute("SELECT * FROM t WHERE id = 5").fetchall()
        yield ADDON_DB
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{ADDON_DB}" WITH (FORCE)')


@dataclass
class Scrapes:
    """Every series Prometheus would store, per scrape config."""

    service_monitor: list[Series]
    probe: list[Series]


async def scrape(exporter: Exporter, job: str, targets: list[str]) -> Scrapes:
    await poll_round(exporter)
    await poll_round(exporter)  # a second poll: counters of the exporter's own move
    runner = web.AppRunner(exporter.app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200
                metrics = parse_exposition(await response.text())
            probed = []
            for target in targets:
                async with session.get(f"{base}/probe", params={"target": target}) as response:
                    assert response.status == 200
                    text = await response.text()
                probed += probe(parse_exposition(text), target=target, job=f"{job}-addons")
    finally:
        await runner.cleanup()
    return Scrapes(service_monitor(metrics, pod_address=f"10.0.0.7:{port}", job=job), probed)


@pytest.fixture
async def postgres_scrapes(tmp_path: Path, addon_database: str) -> AsyncIterator[Scrapes]:
    path = tmp_path / "pg.toml"
    path.write_text(
        '[[targets]]\nname = "pg-shared"\ndsn = "host=127.0.0.1 user=postgres dbname=postgres"\n'
        f'[[targets]]\nname = "blue-db"\nserver = "pg-shared"\ndatabase = "{addon_database}"\n'
        'labels = { app = "blue" }\n'
    )
    exporter = Exporter(
        ExporterSettings(kind=Kind.POSTGRES, targets_file=path, interval=20.0, timeout=10.0)
    )
    assert await exporter.reload()
    try:
        yield await scrape(exporter, "slipway-exporter-postgres", ["pg-shared", "blue-db"])
    finally:
        await exporter.source.close()


@pytest.fixture
async def redis_scrapes(
    tmp_path: Path, redis_servers: Callable[..., RedisServer]
) -> AsyncIterator[Scrapes]:
    server = redis_servers()
    with server.client() as client:
        for i in range(20):
            client.set(f"k{i}", i, ex=600 if i % 2 else None)
            client.get(f"k{i}")
    path = tmp_path / "redis.toml"
    path.write_text(f'[[targets]]\nname = "blue-redis"\ndsn = "{server.url}"\n')
    exporter = Exporter(
        ExporterSettings(kind=Kind.REDIS, targets_file=path, interval=20.0, timeout=10.0)
    )
    assert await exporter.reload()
    try:
        yield await scrape(exporter, "slipway-exporter-redis", ["blue-redis"])
    finally:
        await exporter.source.close()


def render(board: Dashboard, series: list[Series]) -> Rendering:
    return resolve(board.variables, board.exprs, series, choose=VIEW[board.kind])


def report(uid: str, config: str, rendering: Rendering) -> str:
    line = f"dashboard {uid} via {config}: {rendering.found}/{rendering.total} metric names found"
    print(line)  # the run's summary, with -s
    return line


@pytest.mark.parametrize("config", ["service_monitor", "probe"])
class TestEveryPanelHasData:
    async def test_redis_763(
        self, config: str, dashboards: dict[str, Dashboard], redis_scrapes: Scrapes
    ) -> None:
        rendering = render(dashboards["763"], getattr(redis_scrapes, config))
        line = report("763", config, rendering)
        assert rendering.total >= 15, line
        assert not rendering.missing, rendering.missing

    @pytest.mark.parametrize("uid", ["9628", "14114"])
    async def test_postgres(
        self, config: str, uid: str, dashboards: dict[str, Dashboard], postgres_scrapes: Scrapes
    ) -> None:
        rendering = render(dashboards[uid], getattr(postgres_scrapes, config))
        line = report(uid, config, rendering)
        assert rendering.total >= 18, line
        assert not rendering.missing, rendering.missing


class TestTheRenderingCatchesGaps:
    """The checks above can fail: a scrape without a series leaves its panels empty."""

    async def test_a_missing_series_or_label_is_reported(
        self, dashboards: dict[str, Dashboard], redis_scrapes: Scrapes
    ) -> None:
        series = [s for s in redis_scrapes.probe if s.name != "redis_commands_total"]
        rendering = render(dashboards["763"], series)
        assert set(rendering.missing) == {"redis_commands_total"}
        unlabelled = [
            Series(s.name, {k: v for k, v in s.labels.items() if k != "cmd"})
            for s in redis_scrapes.probe
        ]
        rendering = render(dashboards["763"], unlabelled)
        assert "by (cmd)" in str(rendering.missing["redis_commands_duration_seconds_total"])

    async def test_an_add_on_the_instance_variable_does_not_offer_is_reported(
        self, dashboards: dict[str, Dashboard], redis_scrapes: Scrapes
    ) -> None:
        # /metrics without the relabelling: every series has the pod's address as instance
        raw = [
            Series(s.name, {**s.labels, "instance": "10.0.0.7:9121"})
            for s in redis_scrapes.service_monitor
        ]
        rendering = render(dashboards["763"], raw)
        assert "$instance" in rendering.missing
