"""One exporter process wired together: targets file, poller, snapshot store, HTTP.

The targets file is re-read when its mtime changes (checked every poll round)
and on SIGHUP. A file that no longer parses is logged and ignored: the exporter
keeps polling the last good target list rather than going blind. The control
plane's file of dedicated add-ons (``addon_targets_file``, a Secret it writes
on a cluster) is read the same way and joined to it; until it exists it lists
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector

from exporters import postgres, redis_info
from exporters.app import Exposition, exporter_app
from exporters.collector import SnapshotCollector, SnapshotStore
from exporters.errors import TargetsFileError
from exporters.poller import Poller
from exporters.settings import ExporterSettings
from exporters.sources import PostgresSource, RedisSource, Source
from exporters.targets import Kind, Target, load_targets
from kit.tasks import TaskSet

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
        if settings.kind is Kind.POSTGRES:
            families, names = postgres.FAMILIES, postgres.SCRAPE_NAMES
        else:
            families, names = redis_info.FAMILIES, redis_info.SCRAPE_NAMES
        self.store = SnapshotStore(kind=settings.kind, families=families, scrape_names=names)
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self.store))
        self.process = ProcessCollector(registry=None)
        self.source = source or make_source(settings)
        self.poller = Poller(source=self.source, store=self.store, settings=settings)
        self.exposition = Exposition(store=self.store, process=self.process)
        self.first_round = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self._mtime: tuple[float | None, ...] | None = None
        self.loaded = False

    def ready(self) -> str | None:
        if not self.loaded:
            return "targets file not loaded"
        if not self.first_round.is_set():
            return "first poll round not finished"
        return None

    def app(self) -> web.Application:
        return exporter_app(exposition=self.exposition, ready=self.ready)

    def _file_mtime(self) -> tuple[float | None, ...]:
        found: list[float | None] = []
        for path in (self.settings.targets_file, self.settings.addon_targets_file):
            try:
                found.append(Path(path).stat().st_mtime_ns / 1e9 if path else None)
            except OSError:
                found.append(None)
        return tuple(found)

    def _load(self) -> list[Target]:
        """Both files' targets; TargetsFileError if one does not parse or a name repeats."""
        targets = load_targets(self.settings.targets_file, kind=self.settings.kind)
        extra = self.settings.addon_targets_file
        if extra is not None and Path(extra).exists():
            added = load_targets(extra, kind=self.settings.kind)
            taken = {t.name for t in targets} & {t.name for t in added}
            if taken:
                raise TargetsFileError(
                    f"{extra}: targets named as in {self.settings.targets_file}: "
                    + ", ".join(sorted(taken))
                )
            targets += added
        return targets

    async def reload(self) -> bool:
        """Re-read the targets files; on an error keep the current targets. True if adopted."""
        mtime = self._file_mtime()
        try:
            targets = self._load()
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

    async def _watch(self) -> None:
        """Poll every ``interval`` (sooner on SIGHUP), forever: ``stop`` cancels it."""
        while True:
            if self.reload_requested.is_set() or self._file_mtime() != self._mtime:
                self.reload_requested.clear()
                await self.reload()
            await self.poller.poll_once()
            # the store only changes in this task, so the thread renders a steady snapshot
            await asyncio.to_thread(self.exposition.refresh)
            self.first_round.set()
            try:
                async with asyncio.timeout(self.settings.interval):
                    await self.reload_requested.wait()
            except TimeoutError:
                pass

    async def serve(self, tasks: TaskSet, stop: asyncio.Event) -> int:
        """Run until ``stop`` (a signal, or the poll task failed); the entry point's main."""
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
        self.exposition.background = True
        own = tasks.child()
        own.start(f"exporter-{self.settings.kind.value}-poll", self._watch())
        try:
            await stop.wait()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await own.stop()
            await runner.cleanup()
            await self.source.close()
        return 0
