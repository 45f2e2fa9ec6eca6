"""One exporter process wired together: targets file, poller, snapshot store, HTTP.

The targets file is re-read when its mtime changes (checked every poll round)
and on SIGHUP. A file that no longer parses is logged and ignored: the exporter
keeps polling the last good target list rather than going blind.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector

from control.kit.tasks import TaskSet
from exporters import postgres, redis_info
from exporters.app import Exposition, exporter_app
from exporters.collector import SnapshotCollector, SnapshotStore
from exporters.errors import TargetsFileError
from exporters.poller import Poller
from exporters.settings import ExporterSettings
from exporters.sources import PostgresSource, RedisSource, Source
from exporters.targets import Kind, load_targets

log = logging.getLogger(__name__)


def make_source(settings: ExporterSettings) -> Source:
    if settings.kind is Kind.POSTGRES:
        return PostgresSource(settings)
    return RedisSource(settings)


class Exporter:
    def __init__(
        self,
        settings: ExporterSettings,
        *,
        registry: CollectorRegistry | None = None,
        source: Source | None = None,
    ) -> None:
        self.settings = settings
        families = postgres.FAMILIES if settings.kind is Kind.POSTGRES else redis_info.FAMILIES
        self.store = SnapshotStore(kind=settings.kind, families=families)
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self.store))
        self.live = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.live)
        self.source = source or make_source(settings)
        self.poller = Poller(source=self.source, store=self.store, settings=settings)
        self.exposition = Exposition(store=self.store, live=self.live)
        self.first_round = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self._mtime: float | None = None
        self.loaded = False

    def ready(self) -> str | None:
        if not self.loaded:
            return "targets file not loaded"
        if not self.first_round.is_set():
            return "first poll round not finished"
        return None

    def app(self) -> web.Application:
        return exporter_app(exposition=self.exposition, ready=self.ready)

    def _file_mtime(self) -> float | None:
        try:
            return Path(self.settings.targets_file).stat().st_mtime_ns / 1e9
        except OSError:
            return None

    async def reload(self) -> bool:
        """Re-read the targets file; on an error keep the current targets. True if adopted."""
        mtime = self._file_mtime()
        try:
            targets = load_targets(self.settings.targets_file, kind=self.settings.kind)
        except TargetsFileError as exc:
            self._mtime = mtime
            log.error(
                "targets file rejected, keeping the current targets", extra={"reason": str(exc)}
            )
            return False
        self._mtime = mtime
        await self.poller.set_targets(targets)
        self.loaded = True
        log.info(
            "targets loaded", extra={"targets": len(targets), "kind": self.settings.kind.value}
        )
        return True

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.reload_requested.is_set() or self._file_mtime() != self._mtime:
                self.reload_requested.clear()
                await self.reload()
            await self.poller.poll_once()
            self.first_round.set()
            try:
                async with asyncio.timeout(self.settings.interval):
                    await _first(stop, self.reload_requested)
            except TimeoutError:
                pass

    async def serve(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` (or a task failure); the entry point's main."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        await self.reload()
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        await site.start()
        log.info(
            "exporter listening",
            extra={
                "kind": self.settings.kind.value,
                "host": self.settings.host,
                "port": self.settings.port,
            },
        )
        tasks = TaskSet()
        tasks.start(f"exporter-{self.settings.kind.value}-poll", self._watch(stop))
        try:
            await _first(stop, tasks.failed)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await tasks.stop()
            await runner.cleanup()
            await self.source.close()
        return 1 if tasks.failed.is_set() else 0


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
