"""The exporter process over real HTTP: endpoints, readiness, reloads, and the CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from control.cli import main
from exporters import redis_info
from exporters.app import Exposition
from exporters.collector import SnapshotStore
from exporters.errors import ErrorKind
from exporters.samples import Outcome, Sample, down
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind, Target
from kit.runner import supervise
from tests.conftest import free_port
from tests.exporters.conftest import RedisServer
from tests.exporters.promql import parse_exposition
from tests.helpers import eventually

ADDON_TARGETS = "addon-targets.toml"


def write(path: Path, targets: dict[str, str]) -> None:
    path.write_text(
        "".join(f'[[targets]]\nname = "{n}"\ndsn = "{u}"\n' for n, u in targets.items())
    )


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def target_names(text: str) -> set[str]:
    return {
        s.labels["target"]
        for f in text_string_to_metric_families(text)
        if f.name == "redis_up"
        for s in f.samples
    }


@pytest.fixture
async def running(
    tmp_path: Path, redis_servers: Callable[..., RedisServer]
) -> AsyncIterator[tuple[Exporter, str, Path, RedisServer, RedisServer]]:
    one, two = redis_servers(), redis_servers()
    path = tmp_path / "targets.toml"
    write(path, {"one": one.url})
    settings = ExporterSettings(
        kind=Kind.REDIS,
        targets_file=path,
        # The control plane's file: missing (none written yet) until a test writes it.
        addon_targets_file=tmp_path / ADDON_TARGETS,
        port=free_port(),
        interval=0.3,
        timeout=0.2,
    )
    exporter = Exporter(settings)
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervise(exporter.serve, stop=stop))
    base = f"http://127.0.0.1:{settings.port}"
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        while True:
            try:
                if (await get(session, f"{base}/readyz"))[0] == 200:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.02)
    yield exporter, base, path, one, two
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0


async def wait_for_targets(session: aiohttp.ClientSession, base: str, names: set[str]) -> None:
    async def listed() -> bool:
        return target_names((await get(session, f"{base}/metrics"))[1]) == names

    await eventually(listed, interval=0.05)


class TestEndpoints:
    async def test_metrics_probe_health_and_readiness(
        self, running: tuple[Exporter, str, Path, RedisServer, RedisServer]
    ) -> None:
        _, base, path, one, two = running
        write(path, {"one": one.url, "two": two.url})
        async with aiohttp.ClientSession() as session:
            await wait_for_targets(session, base, {"one", "two"})
            status, text = await get(session, f"{base}/probe?target=two")
            assert status == 200
            assert target_names(text) == {"two"}
            assert (await get(session, f"{base}/probe?target=nope"))[0] == 404
            status, text = await get(session, f"{base}/probe")
            assert (status, text) == (400, "missing ?target=NAME\n")
            assert await get(session, f"{base}/healthz") == (200, "ok\n")
            async with session.get(f"{base}/metrics") as response:
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                body = await response.text()
            assert "process_resident_memory_bytes" in body  # live part, rendered every time

    async def test_the_body_is_rendered_after_the_round_not_by_the_scrape(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        path = tmp_path / "targets.toml"
        write(path, {"one": redis_servers().url})
        # One round in this test (the next is 60 s away), and it must reach the server
        # (redis_up 1): a timeout no loaded machine misses, as the round is not tried again.
        settings = ExporterSettings(
            kind=Kind.REDIS, targets_file=path, port=free_port(), interval=60.0, timeout=15.0
        )
        exporter = Exporter(settings)
        stop = asyncio.Event()
        task = asyncio.ensure_future(supervise(exporter.serve, stop=stop))
        base = f"http://127.0.0.1:{settings.port}"
        try:
            async with aiohttp.ClientSession() as session:

                async def ready() -> bool:
                    try:
                        return (await get(session, f"{base}/readyz"))[0] == 200
                    except aiohttp.ClientConnectionError:
                        return False

                await eventually(ready, interval=0.02)
                assert exporter.exposition.renders == 1  # by the round, before any scrape
                for _ in range(3):
                    status, text = await get(session, f"{base}/metrics")
                    assert status == 200
                    assert 'redis_up{target="one"} 1' in text
                assert exporter.exposition.renders == 1
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0

    async def test_process_series_reach_every_target_once_in_each_family(
        self, running: tuple[Exporter, str, Path, RedisServer, RedisServer]
    ) -> None:
        _, base, path, one, two = running
        write(path, {"one": one.url, "two": two.url})
        async with aiohttp.ClientSession() as session:
            await wait_for_targets(session, base, {"one", "two"})
            metrics = parse_exposition((await get(session, f"{base}/metrics"))[1])
            probed = parse_exposition((await get(session, f"{base}/probe?target=two"))[1])
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
            targets = [s.labels.get("target") for s in metrics if s.name == name]
            assert targets == [None, "one", "two"]  # None: the exporter itself, unlabelled
            assert [s.labels for s in probed if s.name == name] == [{"target": "two"}]
        assert {s.labels.get("target") for s in probed} == {"two"}
        names = [s.name for s in metrics]
        # each family's lines stay together, as the text format requires
        runs = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
        assert len(runs) == len(set(runs))

    async def test_readyz_waits_for_the_targets_file_and_the_first_round(
        self, tmp_path: Path
    ) -> None:
        settings = ExporterSettings(
            kind=Kind.REDIS, targets_file=tmp_path / "none.toml", interval=1.0, timeout=0.5
        )
        exporter = Exporter(settings)
        assert exporter.ready() == "targets file not loaded"
        assert not await exporter.reload()
        (tmp_path / "none.toml").write_text("")
        assert await exporter.reload()
        assert exporter.ready() == "first poll round not finished"


class TestReload:
    async def test_a_changed_file_is_picked_up_and_a_removed_target_disappears(
        self, running: tuple[Exporter, str, Path, RedisServer, RedisServer]
    ) -> None:
        _, base, path, _, two = running
        async with aiohttp.ClientSession() as session:
            write(path, {"two": two.url})
            await wait_for_targets(session, base, {"two"})

    async def test_sighup_rereads_a_file_whose_mtime_did_not_change(
        self,
        running: tuple[Exporter, str, Path, RedisServer, RedisServer],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        exporter, base, path, one, two = running
        rounds = 0
        poll_once = exporter.poller.poll_once

        async def counted() -> None:
            nonlocal rounds
            await poll_once()
            rounds += 1

        monkeypatch.setattr(exporter.poller, "poll_once", counted)
        mtime = path.stat().st_mtime_ns
        write(path, {"one": one.url, "two": two.url})
        os.utime(path, ns=(mtime, mtime))
        async with aiohttp.ClientSession() as session:
            # Two whole rounds (counted, not slept: a loaded machine may run none in a
            # fixed wait), each starting with the mtime check, which alone sees no change.
            await eventually(lambda: rounds >= 2, what="two poll rounds")
            assert target_names((await get(session, f"{base}/metrics"))[1]) == {"one"}
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_for_targets(session, base, {"one", "two"})

    async def test_a_broken_file_is_logged_and_the_last_good_targets_kept(
        self,
        running: tuple[Exporter, str, Path, RedisServer, RedisServer],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, base, path, _, _ = running
        caplog.set_level(logging.ERROR)
        path.write_text("[[targets]]\nname = 'x'\n")
        await eventually(lambda: "targets file rejected" in caplog.text, interval=0.05)
        record = next(
            r for r in caplog.records if r.getMessage().startswith("targets file rejected")
        )
        assert "exactly one of 'dsn'" in record.reason
        async with aiohttp.ClientSession() as session:
            assert target_names((await get(session, f"{base}/metrics"))[1]) == {"one"}

    async def test_the_control_planes_file_joins_the_targets_and_may_not_repeat_a_name(
        self,
        running: tuple[Exporter, str, Path, RedisServer, RedisServer],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, base, path, _, two = running
        addon_targets = path.with_name(ADDON_TARGETS)
        caplog.set_level(logging.ERROR)
        async with aiohttp.ClientSession() as session:
            assert target_names((await get(session, f"{base}/metrics"))[1]) == {"one"}
            write(addon_targets, {"addon-two": two.url})
            await wait_for_targets(session, base, {"one", "addon-two"})
            write(addon_targets, {"one": two.url})  # a name the operator's file has
            await eventually(
                lambda: any("named as in" in getattr(r, "reason", "") for r in caplog.records),
                interval=0.05,
            )
            assert target_names((await get(session, f"{base}/metrics"))[1]) == {"one", "addon-two"}
            addon_targets.unlink()  # none left: the operator's targets only
            await wait_for_targets(session, base, {"one"})


class TestCommandLine:
    def test_a_timeout_not_below_the_interval_is_a_usage_error(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(
            main,
            [
                "exporter",
                "redis",
                "--targets",
                str(tmp_path / "t.toml"),
                "--interval",
                "5s",
                "--timeout",
                "5s",
            ],
        )
        assert result.exit_code == 2
        assert "timeout (5.0s) must be positive and below the interval (5.0s)" in result.output

    def test_a_bad_duration_names_the_input(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(
            main, ["exporter", "postgres", "--targets", "t.toml", "--interval", "soon"]
        )
        assert result.exit_code == 2
        assert "not a duration: 'soon'" in result.output

    async def test_slipway_exporter_redis_serves_until_sigterm(
        self, tmp_path: Path, redis_servers: Callable[..., RedisServer]
    ) -> None:
        server = redis_servers()
        path = tmp_path / "t.toml"
        write(path, {"r": server.url})
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "slipway"), "exporter", "redis",
            "--targets", str(path),
            # The first round decides redis_up, read once: a timeout no loaded machine misses.
            "--port", str(port), "--interval", "60s", "--timeout", "15s",
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # A process start and one round: seconds on a loaded machine.
            async with aiohttp.ClientSession() as session, asyncio.timeout(40):
                while True:
                    try:
                        if (await get(session, f"http://127.0.0.1:{port}/readyz"))[0] == 200:
                            break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.05)
                _, text = await get(session, f"http://127.0.0.1:{port}/metrics")
            assert 'redis_up{target="r"} 1.0' in text
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10) == 0
            assert process.stderr is not None
            logs = (await process.stderr.read()).decode()
            assert 'msg="exporter listening"' in logs
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


class TestBackgroundRendering:
    def test_mid_round_a_scrape_gets_the_last_rounds_body_until_the_refresh(self) -> None:
        store = SnapshotStore(kind=Kind.REDIS, families=redis_info.FAMILIES)
        exposition = Exposition(store=store)
        exposition.background = True
        target = Target(name="r", dsn="redis://127.0.0.1:1/0")
        store.put(target, down("redis_up", ErrorKind.CONNECT), duration=0.1, now_wall=1.0)
        exposition.refresh()
        assert b'redis_up{target="r"} 0' in exposition.body()
        store.put(target, Outcome([Sample("redis_up", (), 1.0)]), duration=0.1, now_wall=2.0)
        assert b'redis_up{target="r"} 0' in exposition.body()  # the round is not over
        assert exposition.renders == 1
        exposition.refresh()  # what the poll loop does when the round ends
        assert b'redis_up{target="r"} 1' in exposition.body()
        exposition.background = False  # no poll loop: a scrape renders what changed
        store.put(target, down("redis_up", ErrorKind.TIMEOUT), duration=0.1, now_wall=3.0)
        assert b'redis_up{target="r"} 0' in exposition.body()
