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
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind
from tests.conftest import free_port
from tests.exporters.conftest import RedisServer


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
        kind=Kind.REDIS, targets_file=path, port=free_port(), interval=0.3, timeout=0.2
    )
    exporter = Exporter(settings)
    stop = asyncio.Event()
    task = asyncio.ensure_future(exporter.serve(stop))
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
    async with asyncio.timeout(10):
        while target_names((await get(session, f"{base}/metrics"))[1]) != names:
            await asyncio.sleep(0.05)


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
        self, running: tuple[Exporter, str, Path, RedisServer, RedisServer]
    ) -> None:
        _, base, path, one, two = running
        mtime = path.stat().st_mtime_ns
        write(path, {"one": one.url, "two": two.url})
        os.utime(path, ns=(mtime, mtime))
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(0.7)  # two rounds: the mtime check alone sees no change
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
        async with asyncio.timeout(5):
            while "targets file rejected" not in caplog.text:
                await asyncio.sleep(0.05)
        record = next(
            r for r in caplog.records if r.getMessage().startswith("targets file rejected")
        )
        assert "exactly one of 'dsn'" in record.reason
        async with aiohttp.ClientSession() as session:
            assert target_names((await get(session, f"{base}/metrics"))[1]) == {"one"}


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
            "--port", str(port), "--interval", "1s", "--timeout", "500ms",
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as session, asyncio.timeout(20):
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
