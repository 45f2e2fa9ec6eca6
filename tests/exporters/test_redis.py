"""The Redis exporter against redis-server processes the test starts on free ports."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters.poller import Poller
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind
from tests.exporters.conftest import RedisServer, poll_round, sample

EXPORTER_PW = "exporter-pw-never-shown-91c2"
#: The least privilege docs/exporters.md documents for the exporter's own ACL user.
EXPORTER_ACL = ["on", f">{EXPORTER_PW}", "resetkeys", "-@all", "+info", "+ping", "+client|setname"]


def targets_file(path: Path, targets: dict[str, str]) -> Path:
    path.write_text(
        "".join(f'[[targets]]\nname = "{name}"\ndsn = "{url}"\n' for name, url in targets.items())
    )
    return path


# What a poll that must succeed is given: INFO answers in a millisecond, but a loaded CI
# runner has missed half a second. The test with a silent server sets its own timeout.
TIMEOUT = 10.0


async def make_exporter(path: Path, **overrides: object) -> Exporter:
    values: dict[str, object] = {"interval": 2 * TIMEOUT, "timeout": TIMEOUT, "port": 1}
    values.update(overrides)
    exporter = Exporter(ExporterSettings(kind=Kind.REDIS, targets_file=path, **values))  # type: ignore[arg-type]
    assert await exporter.reload()
    return exporter


class TestSeveralServers:
    async def test_values_match_what_each_server_reports_and_bad_ones_are_up_0(
        self,
        tmp_path: Path,
        redis_servers: Callable[..., RedisServer],
        silent_port: int,
    ) -> None:
        plain = redis_servers()
        capped = redis_servers("--maxmemory", "64mb", "--maxclients", "123")
        replica = redis_servers("--replicaof", "127.0.0.1", str(plain.port))
        with plain.client() as client, capped.client() as capped_client:
            for i in range(25):
                client.set(f"k{i}", "v", ex=600 if i < 10 else None)
            client.select(2)
            client.set("other-db", "v")
            capped_client.set("x", "y")
            async with asyncio.timeout(10):
                while replica.client().info("replication").get("master_link_status") != "up":
                    await asyncio.sleep(0.05)
            path = targets_file(
                tmp_path / "redis.toml",
                {
                    "plain": plain.url,
                    "capped": capped.url,
                    "replica": replica.url,
                    "down": "redis://127.0.0.1:1/0",
                    "silent": f"redis://127.0.0.1:{silent_port}/0",
                },
            )
            # only the timeout ends the silent server's poll, so the round lasts that long
            exporter = await make_exporter(path, timeout=3.0)
            before = time.time()
            uptime_before = client.info("server")["uptime_in_seconds"]
            await exporter.poller.poll_once()
            store = exporter.store
            info = client.info()
            assert sample(store, "plain", "redis_up") == 1
            assert sample(store, "plain", "redis_db_keys", db="db0") == 25
            assert sample(store, "plain", "redis_db_keys_expiring", db="db0") == 10
            assert sample(store, "plain", "redis_db_keys", db="db2") == 1
            # the exporter's connection and this test's: what the server itself counts
            assert sample(store, "plain", "redis_connected_clients") == info["connected_clients"]
            uptime = sample(store, "plain", "redis_uptime_in_seconds")
            assert uptime is not None
            assert uptime_before <= uptime <= info["uptime_in_seconds"]
            assert sample(store, "plain", "redis_connected_slaves") == 1
            config = capped_client.config_get("max*")
            assert sample(store, "capped", "redis_memory_max_bytes") == float(config["maxmemory"])
            assert sample(store, "capped", "redis_max_clients") == float(config["maxclients"])
            assert sample(store, "capped", "slipway_redis_memory_used_ratio") == pytest.approx(
                capped_client.info("memory")["used_memory"] / float(config["maxmemory"]), rel=0.2
            )
            assert sample(store, "replica", "redis_master_link_up") == 1
            assert sample(store, "replica", "redis_instance_info", role="slave") == 1
            assert sample(store, "down", "redis_up") == 0
            assert sample(store, "down", "slipway_exporter_poll_error", error="connect") == 1
            assert sample(store, "silent", "redis_up") == 0
            assert sample(store, "silent", "slipway_exporter_poll_error", error="timeout") == 1
            for live in ("plain", "capped", "replica"):
                fresh = sample(store, live, "slipway_exporter_last_poll_success_timestamp_seconds")
                assert fresh is not None
                assert fresh >= before
            await exporter.source.close()

    async def test_polls_reuse_one_connection_named_slipway_exporter(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        server = redis_servers()
        exporter = await make_exporter(targets_file(tmp_path / "r.toml", {"r": server.url}))
        with server.client() as client:
            received = client.info("stats")["total_connections_received"]
            for _ in range(4):
                await poll_round(exporter)
            assert client.info("stats")["total_connections_received"] == received + 1
            names = [c["name"] for c in client.client_list()]
            assert names.count("slipway-exporter") == 1
        await exporter.source.close()

    async def test_per_command_series_are_on_by_default_and_match_commandstats(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        server = redis_servers()
        path = targets_file(tmp_path / "r.toml", {"r": server.url})
        with server.client() as client:
            for i in range(7):
                client.set(f"k{i}", i)
            default = await make_exporter(path)
            await default.poller.poll_once()
            stats = client.info("commandstats")["cmdstat_set"]
            assert sample(default.store, "r", "redis_commands_total", cmd="set") == stats["calls"]
            assert sample(
                default.store, "r", "redis_commands_duration_seconds_total", cmd="set"
            ) == pytest.approx(stats["usec"] / 1e6)
            lean = await make_exporter(path, command_stats=False)
            await lean.poller.poll_once()
            assert sample(lean.store, "r", "redis_commands_total", cmd="set") is None
        await default.source.close()
        await lean.source.close()

    async def test_the_exporters_own_series_are_redis_exporters(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        server = redis_servers()
        path = targets_file(tmp_path / "r.toml", {"r": server.url, "gone": "redis://127.0.0.1:1/0"})
        exporter = await make_exporter(path)
        now = [0.0]
        poller = Poller(
            source=exporter.source,
            store=exporter.store,
            settings=exporter.settings,
            clock=lambda: now[0],
        )
        await poller.set_targets(exporter.poller.targets)
        for _ in range(2):
            await poller.poll_once()
            now[0] += exporter.settings.interval
        store = exporter.store
        assert sample(store, "r", "redis_exporter_scrapes_total") == 2
        assert sample(store, "r", "redis_exporter_last_scrape_error", err="") == 0
        assert sample(store, "r", "redis_exporter_last_scrape_duration_seconds") is not None
        assert sample(store, "gone", "redis_exporter_last_scrape_error", err="connect") == 1
        await exporter.source.close()


class TestLeastPrivilege:
    async def test_the_documented_acl_is_enough_and_an_add_on_users_acl_is_not(
        self,
        tmp_path: Path,
        redis_servers: Callable[..., RedisServer],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        server = redis_servers()
        with server.client() as admin:
            admin.acl_setuser("exporter", reset=True)
            admin.execute_command("ACL", "SETUSER", "exporter", *EXPORTER_ACL)
            # an add-on's own user: its key prefix, and no dangerous commands (INFO is one)
            admin.execute_command(
                "ACL", "SETUSER", "app1", "on", ">app1-pw", "~app1:*", "+@all", "-@dangerous"
            )
            admin.set("app1:k", "v")
            path = targets_file(
                tmp_path / "r.toml",
                {
                    "least": f"redis://exporter:{EXPORTER_PW}@127.0.0.1:{server.port}/0",
                    "addon-user": f"redis://app1:app1-pw@127.0.0.1:{server.port}/0",
                    "wrong-pw": f"redis://exporter:nope@127.0.0.1:{server.port}/0",
                },
            )
            exporter = await make_exporter(path)
            await exporter.poller.poll_once()
            store = exporter.store
            assert sample(store, "least", "redis_up") == 1
            assert sample(store, "least", "redis_db_keys", db="db0") == admin.dbsize()
            assert sample(store, "least", "redis_max_clients") == float(
                admin.config_get("maxclients")["maxclients"]
            )
            users = {c["name"]: c["user"] for c in admin.client_list()}
            assert users.get("slipway-exporter") == "exporter"
            assert sample(store, "addon-user", "redis_up") == 0
            assert sample(store, "addon-user", "slipway_exporter_poll_error", error="denied") == 1
            assert sample(store, "wrong-pw", "slipway_exporter_poll_error", error="auth") == 1
        body = exporter.exposition.body().decode()
        assert EXPORTER_PW not in body
        assert "app1-pw" not in body
        assert EXPORTER_PW not in caplog.text
        assert "app1-pw" not in caplog.text
        await exporter.source.close()


class TestExposition:
    async def test_names_match_redis_exporter_and_parse(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        server = redis_servers()
        exporter = await make_exporter(targets_file(tmp_path / "r.toml", {"r": server.url}))
        await exporter.poller.poll_once()
        families = {
            f.name: f for f in text_string_to_metric_families(exporter.exposition.body().decode())
        }
        names = {s.name for f in families.values() for s in f.samples}
        expected = {
            "redis_up", "redis_uptime_in_seconds", "redis_instance_info",
            "redis_connected_clients", "redis_blocked_clients", "redis_max_clients",
            "redis_rejected_connections_total", "redis_memory_used_bytes",
            "redis_memory_used_rss_bytes", "redis_memory_max_bytes",
            "redis_mem_fragmentation_ratio", "redis_commands_processed_total",
            "redis_net_input_bytes_total", "redis_net_output_bytes_total",
            "redis_keyspace_hits_total", "redis_keyspace_misses_total",
            "redis_evicted_keys_total", "redis_expired_keys_total", "redis_db_keys",
            "redis_db_keys_expiring", "redis_connected_slaves",
            "slipway_exporter_poll_duration_seconds",
            "slipway_exporter_last_poll_success_timestamp_seconds", "slipway_exporter_targets",
            "slipway_exporter_round_duration_seconds",
        }  # fmt: skip
        assert expected <= names, expected - names
        assert families["redis_commands_processed"].type == "counter"
        await exporter.source.close()
