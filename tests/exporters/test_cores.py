"""The pure cores: INFO parsing and the split of a Postgres poll between targets."""

from __future__ import annotations

import dataclasses

import pytest

from exporters import pg_server, postgres, redis_info
from exporters.errors import ErrorKind, PollError
from exporters.samples import Outcome
from exporters.targets import Limits, Scope, Target


def values(outcome: Outcome, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in outcome.every_sample() if s.name == name}


class TestRedisInfo:
    INFO = (
        "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:42\r\n"
        "# Clients\r\nconnected_clients:7\r\nmaxclients:70\r\n"
        "# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n"
        "# Stats\r\nkeyspace_hits:3\r\nkeyspace_misses:1\r\n"
        "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\n"
        "master_link_status:down\r\n"
        "# Commandstats\r\ncmdstat_get:calls=21,usec=175,usec_per_call=8.33\r\n"
        "# Keyspace\r\ndb3:keys=5,expires=2,avg_ttl=100\r\n"
    )

    def test_fields_map_to_redis_exporter_names(self) -> None:
        target = Target(name="r", limits=Limits(memory_bytes=4000))
        outcome = redis_info.outcome(target, redis_info.parse_info(self.INFO))
        assert values(outcome, "redis_connected_clients") == {(): 7.0}
        assert values(outcome, "redis_max_clients") == {(): 70.0}
        assert values(outcome, "redis_db_keys") == {(("db", "db0"),): 0.0, (("db", "db3"),): 5.0}
        assert values(outcome, "redis_db_keys_expiring")[(("db", "db3"),)] == 2.0
        assert values(outcome, "redis_master_link_up") == {
            (("master_host", "10.0.0.1"), ("master_port", "6379")): 0.0
        }
        assert values(outcome, "redis_commands_total") == {(("cmd", "get"),): 21.0}
        assert values(outcome, "redis_commands_duration_seconds_total") == {
            (("cmd", "get"),): pytest.approx(175 / 1e6)
        }
        (info_labels,) = values(outcome, "redis_instance_info")
        assert dict(info_labels)["role"] == "slave"

    def test_health_ratios_use_the_plan_when_the_server_sets_no_limit(self) -> None:
        target = Target(name="r", limits=Limits(memory_bytes=4000, connections=14))
        outcome = redis_info.outcome(target, redis_info.parse_info(self.INFO))
        assert values(outcome, "slipway_redis_memory_used_ratio") == {(): 0.25}
        assert values(outcome, "slipway_redis_clients_used_ratio") == {(): 0.5}
        assert values(outcome, "slipway_redis_hit_ratio") == {(): 0.75}

    @pytest.mark.parametrize("junk", ["", "HTTP/1.1 200 OK", "# Server\r\nno colon here\r\n"])
    def test_an_answer_that_is_not_info_is_a_protocol_error(self, junk: str) -> None:
        with pytest.raises(PollError) as info:
            redis_info.parse_info(junk)
        assert info.value.kind is ErrorKind.PROTOCOL


def _db(name: str, numbackends: int, size: int = 100) -> postgres.DatabaseRow:
    return postgres.DatabaseRow(name, -1, size, 10, 1, numbackends, *([0] * 15))


BGWRITER_15 = pg_server.BgwriterRow(
    checkpoints_timed=11,
    checkpoints_req=2,
    checkpoint_write_time=1500.5,
    checkpoint_sync_time=20.25,
    buffers_checkpoint=300,
    buffers_clean=40,
    maxwritten_clean=1,
    buffers_backend=500,
    buffers_backend_fsync=0,
    buffers_alloc=9000,
    stats_reset=1_700_000_000.0,
    restartpoints_timed=None,
    restartpoints_req=None,
    restartpoints_done=None,
    checkpointer_stats_reset=None,
)
RAW = postgres.PgRaw(
    server=postgres.ServerRow("PostgreSQL 15.20 (Debian)", 150020, 1.0, False, 0.0, "postgres"),
    settings=[
        pg_server.SettingRow("max_connections", "100", "", "integer"),
        pg_server.SettingRow("superuser_reserved_connections", "3", "", "integer"),
        pg_server.SettingRow("shared_buffers", "16384", "8kB", "integer"),
    ],
    bgwriter=BGWRITER_15,
    databases=[_db("postgres", 2), _db("addon_a", 5, size=50), _db("other", 1)],
    activity=[postgres.ActivityRow("addon_a", "idle in transaction", 2, 9.5, 0, 1)],
    locks=[postgres.LockRow("addon_a", "accessexclusivelock", 3)],
)


class TestPostgresSplit:
    def test_claimed_databases_go_to_their_targets_and_the_rest_to_the_server(self) -> None:
        server = Target(name="s", dsn="x")
        member = Target(
            name="a", server="s", database="addon_a", limits=Limits(size_bytes=200, connections=10)
        )
        out = postgres.outcomes(server, RAW, [member])
        server_dbs = {dict(k)["datname"] for k in values(out["s"], "pg_database_size_bytes")}
        assert server_dbs == {"postgres", "other"}
        assert values(out["a"], "pg_database_size_bytes") == {(("datname", "addon_a"),): 50.0}
        assert values(out["a"], "slipway_pg_database_size_plan_ratio") == {
            (("datname", "addon_a"),): 0.25
        }
        assert values(out["a"], "slipway_pg_connections_used_ratio") == {(): 0.5}
        assert values(out["s"], "slipway_pg_connections_used_ratio") == {(): 8 / 97}
        assert values(out["a"], "slipway_pg_idle_in_transaction") == {(("datname", "addon_a"),): 2}
        assert values(out["a"], "slipway_pg_waiting_queries") == {(("datname", "addon_a"),): 1}
        locks = values(out["a"], "pg_locks_count")
        assert locks[(("datname", "addon_a"), ("mode", "accessexclusivelock"))] == 3
        assert len(locks) == len(postgres.LOCK_MODES)  # zero-filled like postgres_exporter
        assert values(out["s"], "pg_settings_shared_buffers_bytes") == {(): 16384 * 8192}

    def test_a_database_scoped_server_target_reports_only_its_own_database(self) -> None:
        server = Target(name="s", dsn="x", scope=Scope.DATABASE)
        out = postgres.outcomes(server, RAW, [])
        assert {dict(k)["datname"] for k in values(out["s"], "pg_database_size_bytes")} == {
            "postgres"
        }

    def test_an_add_on_polled_with_its_own_dsn_counts_its_backends_against_its_plan(
        self,
    ) -> None:
        """control writes an add-on without a monitoring DSN as a scope="database" target with
        its plan's connections: the server's other databases and max_connections are not
        what runs out (RAW connects to "postgres", 2 backends; 8 on the server)."""
        planned = Target(name="s", dsn="x", scope=Scope.DATABASE, limits=Limits(connections=5))
        out = postgres.outcomes(planned, RAW, [])
        assert values(out["s"], "slipway_pg_connections_used_ratio") == {(): 2 / 5}
        limited = dataclasses.replace(
            RAW, databases=[_db("postgres", 2)._replace(connlimit=4), *RAW.databases[1:]]
        )
        out = postgres.outcomes(Target(name="s", dsn="x", scope=Scope.DATABASE), limited, [])
        assert values(out["s"], "slipway_pg_connections_used_ratio") == {(): 2 / 4}
        # No limit of its own: the whole server's share, as for a server target.
        out = postgres.outcomes(Target(name="s", dsn="x", scope=Scope.DATABASE), RAW, [])
        assert values(out["s"], "slipway_pg_connections_used_ratio") == {(): 8 / 97}

    def test_a_database_target_whose_database_is_gone_is_down_as_not_found(self) -> None:
        server = Target(name="s", dsn="x")
        member = Target(name="gone", server="s", database="dropped")
        out = postgres.outcomes(server, RAW, [member])
        assert out["gone"].error is ErrorKind.NOT_FOUND
        assert values(out["gone"], "pg_up") == {(): 0.0}

    @pytest.mark.parametrize(
        ("version", "short"),
        [
            ("PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64", "15.20.0"),
            ("PostgreSQL 9.6.24 on x86_64", "9.6.24"),
            ("EnterpriseDB 1", ""),
        ],
    )
    def test_short_version_is_postgres_exporters_semver(self, version: str, short: str) -> None:
        assert postgres.short_version(version) == short


class TestPostgresSettings:
    """postgres_exporter's reading of pg_settings: names, units, booleans."""

    @pytest.mark.parametrize(
        ("row", "name", "value"),
        [
            (("work_mem", "4096", "kB", "integer"), "pg_settings_work_mem_bytes", 4096 * 1024.0),
            (
                ("effective_cache_size", "524288", "8kB", "integer"),
                "pg_settings_effective_cache_size_bytes",
                524288 * 8192.0,
            ),
            (("max_wal_size", "1024", "MB", "integer"), "pg_settings_max_wal_size_bytes", 2.0**30),
            (
                ("wal_segment_size", "16777216", "B", "integer"),
                "pg_settings_wal_segment_size_bytes",
                2.0**24,
            ),
            (("random_page_cost", "4", "", "real"), "pg_settings_random_page_cost", 4.0),
            (("seq_page_cost", "1", "", "real"), "pg_settings_seq_page_cost", 1.0),
            (
                ("checkpoint_timeout", "300", "s", "integer"),
                "pg_settings_checkpoint_timeout_seconds",
                300.0,
            ),
            (
                ("deadlock_timeout", "1000", "ms", "integer"),
                "pg_settings_deadlock_timeout_seconds",
                1.0,
            ),
            (
                ("log_rotation_age", "1440", "min", "integer"),
                "pg_settings_log_rotation_age_seconds",
                86400.0,
            ),
            # -1 means "off": it keeps the unit's suffix and is not converted
            (
                ("log_min_duration_statement", "-1", "ms", "integer"),
                "pg_settings_log_min_duration_statement_seconds",
                -1.0,
            ),
            (("fsync", "on", "", "bool"), "pg_settings_fsync", 1.0),
            (("ssl", "off", "", "bool"), "pg_settings_ssl", 0.0),
            # an extension's setting: dots (and dashes) become underscores
            (
                ("pg_stat_statements.max", "5000", "", "integer"),
                "pg_settings_pg_stat_statements_max",
                5000.0,
            ),
        ],
    )
    def test_names_and_units_are_postgres_exporters(
        self, row: tuple[str, str, str, str], name: str, value: float
    ) -> None:
        parsed = pg_server.setting(pg_server.SettingRow(*row))
        assert parsed is not None
        assert parsed.name == name
        assert parsed.value == pytest.approx(value)
        assert parsed.family.help.startswith(f"Server Parameter: {row[0]}")

    @pytest.mark.parametrize(
        "row", [("odd", "12", "furlongs", "integer"), ("weird", "abc", "", "real")]
    )
    def test_an_unknown_unit_or_a_value_that_is_no_number_is_skipped(
        self, row: tuple[str, str, str, str]
    ) -> None:
        assert pg_server.setting(pg_server.SettingRow(*row)) is None

    def test_every_target_of_the_server_carries_the_settings_with_their_families(self) -> None:
        server = Target(name="s", dsn="x")
        member = Target(name="a", server="s", database="addon_a")
        out = postgres.outcomes(server, RAW, [member])
        for name in ("s", "a"):
            assert values(out[name], "pg_settings_shared_buffers_bytes") == {(): 16384 * 8192}
            assert values(out[name], "pg_settings_max_connections") == {(): 100}
            assert "pg_settings_shared_buffers_bytes" in out[name].families


class TestPostgresBgwriter:
    def test_both_spellings_as_counters_before_17(self) -> None:
        out = postgres.outcomes(Target(name="s", dsn="x"), RAW, [])["s"]
        for column in pg_server.BGWRITER_HELP:
            want = float(getattr(BGWRITER_15, column))
            assert values(out, f"pg_stat_bgwriter_{column}") == {(): want}, column
            assert values(out, f"pg_stat_bgwriter_{column}_total") == {(): want}, column
            for name in (f"pg_stat_bgwriter_{column}", f"pg_stat_bgwriter_{column}_total"):
                assert postgres.FAMILIES[name].type.value == "counter"
        assert not any(s.name.startswith("pg_stat_checkpointer") for s in out.every_sample())

    def test_17_reads_the_checkpointer_and_keeps_the_bgwriter_names(self) -> None:
        assert pg_server.bgwriter_query(160004) == pg_server.BGWRITER_QUERY
        assert "pg_stat_checkpointer" in pg_server.bgwriter_query(170000)
        row = BGWRITER_15._replace(
            restartpoints_timed=3,
            restartpoints_req=0,
            restartpoints_done=3,
            checkpointer_stats_reset=1_700_000_100.0,
        )
        server = RAW.server._replace(version_num=170002)
        raw = postgres.PgRaw(server, RAW.settings, row, [], [], [])
        out = postgres.outcomes(Target(name="s", dsn="x"), raw, [])["s"]
        assert values(out, "pg_stat_checkpointer_num_timed_total") == {(): 11}
        assert values(out, "pg_stat_checkpointer_buffers_written_total") == {(): 300}
        assert values(out, "pg_stat_checkpointer_restartpoints_done_total") == {(): 3}
        assert values(out, "pg_stat_bgwriter_checkpoints_timed") == {(): 11}
        assert values(out, "pg_stat_bgwriter_buffers_checkpoint_total") == {(): 300}

    def test_a_null_counter_is_0_as_postgres_exporter_reports_it(self) -> None:
        raw = postgres.PgRaw(
            RAW.server, RAW.settings, BGWRITER_15._replace(stats_reset=None), [], [], []
        )
        out = postgres.outcomes(Target(name="s", dsn="x"), raw, [])["s"]
        assert values(out, "pg_stat_bgwriter_stats_reset") == {(): 0.0}
