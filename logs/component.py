"""The whole logs service as one object with start()/stop(), for ``serve logs`` and ``slipway up``.

``slipway up`` builds one, passes ``component.service`` as LocalRuntime's
``ProcessLogSink``, the builds' sink and the router's ``LogSink``, starts it
before the runtime and stops it last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from aiohttp import web
from prometheus_client import CollectorRegistry

from kit.ops import bound_port
from kit.tasks import TaskSet
from logs.archive import Spool, Uploader
from logs.auth import (
    AnyOf,
    ControlPlaneTokens,
    StaticTokens,
    TokenVerifier,
    parse_tokens_env,
    read_tokens_file,
)
from logs.http import build_app
from logs.metrics import LogsMetrics
from logs.ring import Hub
from logs.s3 import S3Store
from logs.server import ForwardServer
from logs.service import LogService
from logs.settings import LogsSettings

log = logging.getLogger(__name__)


class LogsComponent:
    def __init__(
        self,
        settings: LogsSettings,
        *,
        registry: CollectorRegistry | None = None,
        verifier: TokenVerifier | None = None,
        tasks: TaskSet | None = None,
    ) -> None:
        """``tasks``: the process's task set; a dead archive uploader (a spool that only
        grows until forward chunks are refused) stops the process."""
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = LogsMetrics(self.registry)
        self.hub = Hub(
            # Microseconds at start-up: sequence numbers keep growing across restarts, so
            # archive keys never collide and a stale Last-Event-ID is recognised as such.
            seq_base=int(time.time() * 1_000_000),
            lines=settings.ring_lines,
            queue=settings.subscriber_queue,
            apps=settings.ring_apps,
            on_drop=self.metrics.dropped.labels("slow_subscriber").inc,
        )
        self.spool: Spool | None = None
        if settings.spool_dir is not None:
            self.spool = Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                flush_bytes=settings.flush_bytes,
                flush_age=settings.flush_age,
                fsync=settings.fsync,
            )
        self.store: S3Store | None = None
        if settings.s3_bucket is not None:
            self.store = S3Store(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint,
                region=settings.s3_region,
            )
        #: The HTTP port once started (settings may ask for 0, a free one).
        self.http_port = settings.http_port
        self.service = LogService(hub=self.hub, metrics=self.metrics, spool=self.spool)
        self._remote: ControlPlaneTokens | None = None
        if verifier is None:
            tokens = read_tokens_file(settings.tokens_file) if settings.tokens_file else {}
            tokens.update(parse_tokens_env(os.environ.get("SLIPWAY_LOGS_APP_TOKENS", "")))
            verifier = StaticTokens(admin=settings.admin_token, apps=tokens)
            if settings.control_url is not None:
                self._remote = ControlPlaneTokens(settings.control_url)
                verifier = AnyOf(verifier, self._remote)
        self.app = build_app(
            hub=self.hub,
            verifier=verifier,
            metrics=self.metrics,
            registry=self.registry,
            ready=self._ready,
            store=self.store,
            heartbeat=settings.heartbeat,
            ingest=self.service,
            platform_token=settings.platform_token,
        )
        self.forward = ForwardServer(
            service=self.service,
            metrics=self.metrics,
            shared_key=settings.shared_key,
            hostname=settings.server_hostname,
        )
        self._tasks = TaskSet.of(tasks)
        self._runner: web.AppRunner | None = None

    def _ready(self) -> str | None:
        # A full spool means forward chunks are refused: tell the probe, so an operator
        # sees it and Fluent Bit's retries are explained.
        if self.spool is not None and not self.spool.has_room():
            return "archive spool is full (S3 unreachable?)"
        return None

    @property
    def failed(self) -> asyncio.Event:
        return self._tasks.failed

    async def start(self) -> None:
        if self.spool is not None:
            recovered = self.spool.recover()
            # Acked lines are readable again (tail, resume) after a crash, not only archived.
            recent = self.spool.recent(self.settings.ring_lines, apps=self.settings.ring_apps)
            for app, lines in recent.items():
                self.hub.restore(app, lines)
            log.info(
                "spool opened",
                extra={"recovered": recovered, "bytes": self.spool.bytes, "apps": len(recent)},
            )
        self._runner = web.AppRunner(self.app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self.http_port = bound_port(site)
        await self.forward.start(self.settings.forward_host, self.settings.forward_port)
        if self.spool is not None:  # without a store it still flushes and seals
            uploader = Uploader(self.spool, self.store, metrics=self.metrics)
            self._tasks.start("archive-uploader", uploader.run())
        log.info("logs service started", extra={"http_port": self.http_port})

    async def stop(self) -> None:
        """Stop taking lines, then seal and upload what is spooled (bounded by S3's timeouts)."""
        await self.forward.stop()
        await self._tasks.stop()
        if self.spool is not None:
            self.spool.seal_all()
            if self.store is not None:
                await Uploader(self.spool, self.store, metrics=self.metrics).upload_ready()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._remote is not None:
            await self._remote.close()
