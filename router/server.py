"""The router as a running thing: the proxy listener, the ops listener, the sweeper, the drain.

An app gone from the route table (deleted) takes its series with it: on the swap
the router drops its counts, activity, held count and round-robin position, and so
its label sets from every ``slipway_router_*`` family. One still in flight then
(a slow response, a held request, an open tunnel) would need them to end and be
counted: its app is forgotten by the first sweep once nothing of it is in flight.
A request's path does no look-up for any of this.

With a logs service in another process (``settings.logs_url``, Kubernetes) every router
line is also queued for it (router/lines.py); the poster is one of the router's
background tasks, and the drain ends with one last bounded post of what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from prometheus_client import CollectorRegistry

from kit.logpost import PlatformLogSink
from kit.ops import bound_port, ops_app
from kit.tasks import TaskSet
from router.accesslog import LogSink, StreamSink
from router.activity import Activity
from router.client import ClientConnection
from router.counters import Counters
from router.holder import Holder
from router.lines import PostedLines, Tee
from router.metrics import RouterStats
from router.proxy import Proxy
from router.routes import Routes, RouteTable
from router.settings import RouterSettings
from router.waking import Waker

log = logging.getLogger(__name__)

# Timeouts are checked on this tick; a quarter of a second keeps a 30 s limit
# accurate to 1% while costing one pass over the connections per tick.
SWEEP_INTERVAL = 0.25


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        routes: Routes,
        registry: CollectorRegistry,
        sink: LogSink | None = None,
        waker: Waker | None = None,
        tasks: TaskSet | None = None,
        token: str | None = None,
    ) -> None:
        """``tasks``: the process's task set (the sweeper and the line poster run in it, so
        their death stops the process); None only when a test drives the router alone.
        ``token``: the bearer token for the logs service's platform route, with
        ``settings.logs_url``."""
        self.settings = settings
        self.routes = routes
        self.registry = registry
        self.sink: LogSink = sink or StreamSink()
        #: Lines for the logs service in another process, when there is one.
        self.poster: PlatformLogSink | None = None
        if settings.logs_url is not None:
            self.poster = PlatformLogSink(
                settings.logs_url, token=token, registry=registry, component="router"
            )
            self.sink = Tee(self.sink, PostedLines(self.poster))
        self.waker = waker
        self.activity = Activity()
        self.holder = Holder()
        self.counters = Counters()
        self.stats = RouterStats(
            lambda: {app: a.in_flight for app, a in self.activity.apps.items()},
            self.holder.counts,
            self.counters,
        )
        registry.register(self.stats)
        #: Apps gone from the route table whose series are still to go (see the docstring).
        self._gone: set[str] = set()
        routes.watch(self._replaced)
        self.port = settings.port
        self.ops_port = settings.ops_port
        self._proxy: Proxy | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ops: web.AppRunner | None = None
        self._tasks = TaskSet.of(tasks)
        self._draining = False

    @property
    def proxy(self) -> Proxy:
        assert self._proxy is not None, "Router.start() first"
        return self._proxy

    def ready(self) -> str | None:
        if self._server is None:
            return "not listening yet"
        if self._draining:
            return "draining"
        if self.waker is not None and not self.routes.synced:
            # Fed by an agent: before its first table every host would answer 404.
            return "no route table yet"
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        self._proxy = proxy = Proxy(
            settings,
            routes=self.routes,
            stats=self.counters,
            activity=self.activity,
            holder=self.holder,
            sink=self.sink,
            waker=self.waker,
        )
        self._ops = web.AppRunner(ops_app(registry=self.registry, ready=self.ready))
        await self._ops.setup()
        ops_site = web.TCPSite(
            self._ops, settings.ops_host, settings.ops_port, reuse_port=settings.reuse_port
        )
        await ops_site.start()
        self.ops_port = bound_port(ops_site)
        server = await loop.create_server(
            lambda: ClientConnection(proxy),
            settings.host,
            settings.port,
            reuse_port=settings.reuse_port or None,
            backlog=4096,
        )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._tasks.start("router-sweeper", self._sweep())
        if self.poster is not None:
            self._tasks.start("router-log-lines", self.poster.run())
        log.info(
            "router listening",
            extra={
                "port": self.port,
                "ops_port": self.ops_port,
                "apps": len(self.routes.table.apps),
            },
        )

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.proxy.sweep(loop.time())
            if self._gone:
                self._forget_gone()

    def _replaced(self, old: RouteTable, new: RouteTable) -> None:
        apps = new.apps
        self._gone.update(app for app in old.apps if app not in apps)
        # Back before its series went (a deletion and a re-creation, one poll apart).
        self._gone.difference_update([app for app in self._gone if app in apps])
        if self._gone:
            self._forget_gone()

    def _forget_gone(self) -> None:
        """Drop the state, and so the series, of every gone app with nothing in flight.

        Every request that will count against an app is in its in-flight count from
        the moment it resolves the app (held ones and tunnels included) until it has
        been counted, in one step: an app with none in flight can take no more counts,
        and no new request resolves it once the table lacks it.
        """
        for app in list(self._gone):
            entry = self.activity.apps.get(app)
            if entry is not None and entry.in_flight > 0:
                continue  # its end needs the entry: a later sweep takes it
            self.counters.forget(app)
            self.activity.forget(app)
            self.holder.forget(app)
            if self._proxy is not None:
                self._proxy.forget(app)
            self._gone.discard(app)
            log.debug("app gone from the route table; its series dropped", extra={"app": app})

    async def stop(self, grace: float | None = None) -> None:
        """Readiness off, stop accepting, let in-flight requests and tunnels finish, close."""
        grace = self.settings.drain_grace if grace is None else grace
        self._draining = True
        proxy = self._proxy
        if proxy is not None:
            proxy.draining = True
        if self.settings.drain_delay:
            await asyncio.sleep(self.settings.drain_delay)
        if self._server is not None:
            self._server.close()
        if proxy is not None:
            for conn in list(proxy.connections):
                if conn.active is None and not conn.queue:
                    conn.close()
            if proxy.connections:
                proxy.all_closed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proxy.all_closed.wait(), grace)
            left = len(proxy.connections)
            for conn in list(proxy.connections):
                if conn.transport is not None:
                    conn.transport.abort()
            proxy.pool.close()
            log.info("router drained", extra={"cut": left})
        await self._tasks.stop()
        if self.poster is not None:
            await self.poster.drain()
        if self._ops is not None:
            await self._ops.cleanup()
