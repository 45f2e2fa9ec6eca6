"""``slipway serve logs`` wiring and ``slipway logs`` against it, end to end on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from fluent import sender
from prometheus_client import CollectorRegistry

from control.cli import main
from kit.runner import supervise
from logs.auth import StaticTokens
from logs.cli import _follow, _show, run_service
from logs.component import LogsComponent
from logs.http import build_app
from logs.metrics import LogsMetrics
from logs.ring import Hub
from logs.s3 import S3Store
from logs.service import LogService
from logs.settings import LogsSettings
from tests.conftest import free_port
from tests.logs.conftest import ForwardClient, Moto


@pytest.fixture
async def running(tmp_path: Path, moto: Moto) -> AsyncIterator[LogsSettings]:
    tokens = tmp_path / "tokens"
    tokens.write_text("# app token\nshop shop-secret\n")
    settings = LogsSettings(
        http_port=free_port(),
        forward_port=free_port(),
        admin_token="admin",
        tokens_file=tokens,
        spool_dir=tmp_path / "spool",
        s3_bucket="archive",
        s3_endpoint=moto.url,
        flush_age=3600,
        heartbeat=0.2,
    )
    await S3Store(bucket="archive", endpoint_url=moto.url).ensure_bucket()
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(functools.partial(run_service, settings), stop=stop))
    async with asyncio.timeout(10), aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{settings.http_port}/healthz") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.05)
    yield settings
    stop.set()
    assert await asyncio.wait_for(task, 20) == 0


def cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


class TestServeAndRead:
    async def test_lines_sent_by_forward_are_shown_in_herokus_format(
        self, running: LogsSettings, moto: Moto
    ) -> None:
        s = sender.FluentSender("slipway.shop", host="127.0.0.1", port=running.forward_port)
        await asyncio.to_thread(s.emit_with_time, "web.1", 1_795_000_000, {"log": "booted"})
        await asyncio.to_thread(s.close)
        env = {
            "SLIPWAY_LOGS_URL": f"http://127.0.0.1:{running.http_port}",
            "SLIPWAY_TOKEN": "shop-secret",
        }
        async with asyncio.timeout(10):
            while True:
                code, out = await asyncio.to_thread(cli, "logs", "shop", "-n", "5", env=env)
                if out:
                    break
                await asyncio.sleep(0.05)
        assert code == 0
        assert out == "2026-11-18T11:06:40.000000+00:00 app[web.1]: booted\n"

    async def test_the_app_is_named_with_dash_a_or_slipway_app_as_by_every_command(
        self, running: LogsSettings
    ) -> None:
        s = sender.FluentSender("slipway.shop", host="127.0.0.1", port=running.forward_port)
        await asyncio.to_thread(s.emit_with_time, "web.1", 1_795_000_000, {"log": "named"})
        await asyncio.to_thread(s.close)
        env = {
            "SLIPWAY_LOGS_URL": f"http://127.0.0.1:{running.http_port}",
            "SLIPWAY_TOKEN": "shop-secret",
        }
        expected = "2026-11-18T11:06:40.000000+00:00 app[web.1]: named\n"
        async with asyncio.timeout(10):
            while (await asyncio.to_thread(cli, "logs", "-a", "shop", env=env))[1] != expected:
                await asyncio.sleep(0.05)
        assert await asyncio.to_thread(cli, "logs", "--app", "shop", env=env) == (0, expected)
        by_dyno = await asyncio.to_thread(cli, "logs", "-a", "shop", "-d", "web.1", env=env)
        assert by_dyno == (0, expected)
        from_env = await asyncio.to_thread(cli, "logs", env={**env, "SLIPWAY_APP": "shop"})
        assert from_env == (0, expected)
        # The argument wins over SLIPWAY_APP, as an explicit name should.
        other = await asyncio.to_thread(cli, "logs", "shop", env={**env, "SLIPWAY_APP": "nope"})
        assert other == (0, expected)
        code, out = await asyncio.to_thread(cli, "logs", env=env)
        assert (code, "no app given: use -a APP" in out) == (2, True)

    async def test_a_wrong_token_is_a_clear_cli_error(self, running: LogsSettings) -> None:
        env = {"SLIPWAY_LOGS_URL": f"http://127.0.0.1:{running.http_port}", "SLIPWAY_TOKEN": "nope"}
        code, out = await asyncio.to_thread(cli, "logs", "shop", env=env)
        assert code == 1
        assert "403: this token may not read shop's logs" in out

    async def test_an_unreachable_service_is_a_clear_cli_error(self) -> None:
        env = {"SLIPWAY_LOGS_URL": f"http://127.0.0.1:{free_port()}", "SLIPWAY_TOKEN": "x"}
        code, out = await asyncio.to_thread(cli, "logs", "shop", env=env)
        assert code == 1
        assert "cannot read logs from" in out

    async def test_a_graceful_stop_uploads_what_was_spooled(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        settings = LogsSettings(
            http_port=free_port(),
            forward_port=free_port(),
            spool_dir=tmp_path / "spool",
            s3_bucket="archive",
            s3_endpoint=moto.url,
        )
        store = S3Store(bucket="archive", endpoint_url=moto.url)
        await store.ensure_bucket()
        stop = asyncio.Event()
        task = asyncio.create_task(supervise(functools.partial(run_service, settings), stop=stop))
        s = sender.FluentSender("slipway.shop", host="127.0.0.1", port=settings.forward_port)
        async with asyncio.timeout(10):
            while not await asyncio.to_thread(s.emit, "web.1", {"log": "keep me"}):
                await asyncio.sleep(0.05)
        await asyncio.to_thread(s.close)
        async with asyncio.timeout(10):
            while not list((tmp_path / "spool").glob("shop/*")):
                await asyncio.sleep(0.02)
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
        [key] = await store.keys("logs/shop/")
        assert b"keep me" in gzip.decompress(await store.get(key))


class TestRestart:
    async def test_lines_acked_during_an_outage_are_uploaded_by_the_next_process(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        settings = LogsSettings(
            http_port=free_port(),
            forward_port=free_port(),
            spool_dir=tmp_path / "spool",
            s3_bucket="archive",
            s3_endpoint=moto.url,
        )
        moto.stop()
        first = LogsComponent(settings)
        await first.start()
        client = await ForwardClient.connect(settings.forward_port)
        await client.send(
            ["slipway.shop.web.1", [[1_795_000_000, {"log": "during outage"}]], {"chunk": "o"}]
        )
        assert await client.reply() == {"ack": "o"}
        await client.close()
        await first.stop()  # the upload at stop fails: the journal stays in the spool
        assert list((tmp_path / "spool" / "shop").glob("*.ready"))

        moto.start()
        store = S3Store(bucket="archive", endpoint_url=moto.url)
        await store.ensure_bucket()
        second = LogsComponent(settings)
        await second.start()
        try:
            async with asyncio.timeout(15):
                while not await store.keys("logs/shop/"):
                    await asyncio.sleep(0.1)
        finally:
            await second.stop()
        [key] = await store.keys("logs/shop/")
        assert b"during outage" in gzip.decompress(await store.get(key))


class TestOutput:
    def test_lines_are_coloured_by_source_on_a_terminal(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        line = {"app": "shop", "seq": 1, "time": 1795000000.0, "source": "router"}
        data = json.dumps({**line, "process": "router", "text": "at=info"})
        _show("message", data, colour=True)
        out = capsys.readouterr().out
        assert out == "\x1b[35m2026-11-18T11:06:40.000000+00:00 slipway[router]:\x1b[0m at=info\n"

    def test_dropped_and_missed_events_go_to_stderr(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _show("dropped", '{"count": 7}', colour=False)
        _show("missed", '{"count": null}', colour=False)
        assert capsys.readouterr().err == "-- dropped 7 lines --\n-- missed some lines --\n"


class TestReadiness:
    async def test_a_full_spool_makes_the_service_not_ready_and_says_why(
        self, tmp_path: Path
    ) -> None:
        settings = LogsSettings(
            http_port=free_port(), forward_port=free_port(), spool_dir=tmp_path, spool_max_bytes=0
        )
        component = LogsComponent(settings)
        await component.start()
        try:
            url = f"http://127.0.0.1:{settings.http_port}/readyz"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                assert r.status == 503
                assert "archive spool is full" in await r.text()
        finally:
            await component.stop()


class TestFollowResume:
    async def test_tail_reconnects_after_the_server_goes_away_and_resumes_without_duplicates(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        registry = CollectorRegistry()
        metrics = LogsMetrics(registry)
        hub = Hub()
        svc = LogService(hub=hub, metrics=metrics)
        port = free_port()

        async def serve() -> web.AppRunner:
            app = build_app(
                hub=hub,
                verifier=StaticTokens(admin="adm"),
                metrics=metrics,
                registry=registry,
                ready=lambda: None,
            )
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner

        def shown() -> list[str]:
            return [line.rsplit(": ", 1)[1] for line in capsys.readouterr().out.splitlines()]

        runner = await serve()
        params = {"lines": "100", "tail": "1"}
        follow = asyncio.create_task(
            _follow(f"http://127.0.0.1:{port}", "shop", "adm", params, False)
        )
        seen: list[str] = []
        try:
            for i in range(2):
                svc.publish("shop", "app", "web.1", f"l{i}", 1.0 + i)
            async with asyncio.timeout(10):
                while len(seen) < 2:
                    seen += shown()
                    await asyncio.sleep(0.02)
            await runner.cleanup()  # the connection drops
            for i in range(2, 4):
                svc.publish("shop", "app", "web.1", f"l{i}", 1.0 + i)  # while it is away
            runner = await serve()
            async with asyncio.timeout(15):
                while len(seen) < 4:
                    seen += shown()
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            seen += shown()
            assert seen == ["l0", "l1", "l2", "l3"]
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            await runner.cleanup()
