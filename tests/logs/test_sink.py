"""In-process producers: the router's sink and ``publish`` for runtimes, builds and releases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.output import ProcessLogSink
from control.builds.model import LogSink as BuildLogSink
from logs.archive import Spool
from logs.auth import parse_tokens_env, read_tokens_file
from logs.component import LogsComponent
from logs.metrics import LogsMetrics
from logs.model import Source
from logs.ring import Filter, Hub
from logs.service import LogService
from logs.settings import LogsSettings
from router.accesslog import LogSink


def service() -> tuple[LogService, CollectorRegistry]:
    registry = CollectorRegistry()
    return LogService(
        hub=Hub(), metrics=LogsMetrics(registry), clock=lambda: 1_795_000_000.0
    ), registry


class TestRouterSink:
    def test_the_service_is_a_router_log_sink(self) -> None:
        svc, _ = service()
        sink: LogSink = svc  # structural: logs does not import router, the test does
        sink.emit("shop", "at=info method=GET path=/ status=200")
        [line], _ = svc.hub.history("shop", Filter(), lines=10)
        assert (line.source, line.process, line.time) == (Source.ROUTER, "router", 1_795_000_000.0)

    def test_a_line_for_an_invalid_app_is_counted_not_raised(self) -> None:
        svc, registry = service()
        svc.emit("Not An App", "x")
        assert (
            registry.get_sample_value("slipway_logs_lines_dropped_total", {"reason": "unknown_app"})
            == 1
        )

    def test_a_broken_spool_loses_the_line_but_never_raises_into_the_proxy(
        self, tmp_path: Path
    ) -> None:
        registry = CollectorRegistry()
        spool = Spool(tmp_path, max_bytes=10**6, flush_bytes=10**6, flush_age=60)
        svc = LogService(hub=Hub(), metrics=LogsMetrics(registry), spool=spool)
        tmp_path.joinpath("shop").write_text("a file where the app's folder should be")
        svc.emit("shop", "x")
        assert (
            registry.get_sample_value("slipway_logs_lines_dropped_total", {"reason": "error"}) == 1
        )


class TestPublish:
    def test_the_service_is_the_agents_process_sink(self) -> None:
        svc, registry = service()
        sink: ProcessLogSink = svc  # structural, as slipway up passes it to LocalRuntime
        sink.publish("shop", "app", "web.1", "listening on 5000", 5.0)
        [line], _ = svc.hub.history("shop", Filter(), lines=10)
        assert (line.seq, line.time, line.source, line.process) == (1, 5.0, Source.APP, "web.1")
        assert (
            registry.get_sample_value("slipway_logs_lines_received_total", {"source": "app"}) == 1
        )

    def test_the_service_is_the_builds_sink(self) -> None:
        svc, _ = service()
        sink: BuildLogSink = svc
        sink.publish("shop", "build", "build", "Step 1/3", 6.0)
        [line], _ = svc.hub.history("shop", Filter(source=Source.BUILD), lines=10)
        assert line.text == "Step 1/3"

    def test_an_unknown_source_is_counted_not_raised(self) -> None:
        svc, registry = service()
        svc.publish("shop", "kernel", "x", "oops", 1.0)
        assert (
            registry.get_sample_value("slipway_logs_lines_dropped_total", {"reason": "bad_source"})
            == 1
        )
        assert svc.hub.history("shop", Filter(), lines=10)[0] == []


class TestSpooling:
    def test_router_lines_are_buffered_and_reach_the_file_on_the_next_flush(
        self, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path, max_bytes=10**6, flush_bytes=10**6, flush_age=60)
        svc = LogService(hub=Hub(), metrics=LogsMetrics(CollectorRegistry()), spool=spool)
        svc.emit("shop", "at=info status=200")
        [journal] = (tmp_path / "shop").iterdir()
        assert journal.read_bytes() == b""
        spool.flush()
        assert b"at=info status=200" in journal.read_bytes()
        spool.close()

    async def test_without_an_archive_bucket_lines_still_reach_the_disk_within_a_tick(
        self, tmp_path: Path
    ) -> None:
        """`slipway up` has a spool and no S3: a crash must not lose more than a tick."""
        settings = LogsSettings(http_port=0, forward_port=0, spool_dir=tmp_path / "spool")
        component = LogsComponent(settings, registry=CollectorRegistry())
        await component.start()
        try:
            component.service.emit("shop", "at=info status=200 after a tick")
            [journal] = (tmp_path / "spool" / "shop").iterdir()
            async with asyncio.timeout(5):
                while b"after a tick" not in journal.read_bytes():
                    await asyncio.sleep(0.05)
        finally:
            await component.stop()


class TestTokens:
    def test_app_tokens_from_the_environment(self) -> None:
        assert parse_tokens_env("shop=a, blog=b,") == {"shop": "a", "blog": "b"}

    def test_a_malformed_app_tokens_variable_says_what_is_expected(self) -> None:
        with pytest.raises(ValueError, match="expected app=token"):
            parse_tokens_env("shop")

    def test_a_malformed_tokens_file_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "tokens"
        path.write_text("# comment\n\nshop a\nblog\n")
        with pytest.raises(ValueError, match="tokens:4: expected 'app token'"):
            read_tokens_file(path)
