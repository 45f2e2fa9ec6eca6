"""The pure cores: INFO parsing and the split of a Postgres poll between targets."""

from __future__ import annotations

import pytest

from exporters import postgres, redis_info
from exporters.errors import ErrorKind, PollError
from exporters.samples import Outcome
from exporters.targets import Limits, Scope, Target


def values(outcome: Outcome, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in outcome.samples if s.name == name}


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


RAW = postgres.PgRaw(
    server=postgres.ServerRow("PostgreSQL 15.20 (Debian)", 150020, 1.0, False, 0.0, "postgres"),
    settings=[
        postgres.SettingRow("max_connections", "100", None),
        postgres.SettingRow("superuser_reserved_connections", "3", None),
        postgres.SettingRow("shared_buffers", "16384", "8kB"),
    ],
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
