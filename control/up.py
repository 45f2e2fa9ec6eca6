"""``slipway up``: the router, the agent, the logs service and the control plane in one process.

The embedded default: apps run as local processes (LocalRuntime), the router
proxies to them and holds requests while they wake, and the agent puts them
to sleep when idle. Apps come from the control plane (its API on
``--control-port``, state in SQLite under ``--state-dir``: create an app,
deploy a directory, set config vars, roll back) and, optionally, from a TOML
apps file read at start. The control plane hands each release to the agent
as the app's definition (``control/agent_target.py``), so the agent stays
the only one that decides replicas. Router and agent meet
in-process through ``LocalLink``: the agent's route table goes straight into
the router's ``Routes``, and the router's activity goes to the agent every
``report_interval``; the agent's HTTP API still listens, so routers in
other processes (``slipway serve router --agent-url``) can join.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import load_apps
from agent.dynolocal import LocalSource
from agent.dynowatch import DynoMonitor, DynoSettings
from agent.local import LocalRuntime
from agent.output import ConsoleSink, ProcessLogSink
from agent.settings import AgentSettings, LocalSettings
from control.agent_target import LocalAgent
from control.errors import ControlError
from control.livelogs import LogsUpstream
from control.rollup import keeper
from control.rollup.source import RollupSource
from control.rollup.store import Rollup
from control.rollup.tap import RouterLineTap, TableWatcher
from control.server import EmbeddedControl
from control.service import Control
from control.settings import (
    ControlSettings,
)
from kit.ops import bound_port
from kit.spawn import Confiner
from kit.tasks import TaskSet
from kit.wire import RouteTablePayload
from logs.component import LogsComponent
from logs.settings import LogsSettings
from router.accesslog import LogSink, StreamSink
from router.routes import Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings

log = logging.getLogger(__name__)

# In one process a report costs a dict comprehension, so it can be frequent: a
# sleeping app's processes stop within ~this long of its endpoints being withdrawn.
LOCAL_REPORT_INTERVAL = 0.05


class LocalLink:
    """Router and agent in one process: the table in, activity out, no HTTP."""

    def __init__(
        self,
        agent: Agent,
        router: Router,
        *,
        name: str = "local",
        report_interval: float = LOCAL_REPORT_INTERVAL,
    ) -> None:
        self.agent = agent
        self.router = router
        self.name = name
        self.report_interval = report_interval
        self._unsubscribe = agent.subscribe(self._apply)

    def _apply(self, table: RouteTablePayload) -> None:
        # One wire shape (kit.wire) on both sides; from_payload validates what it reads.
        self.router.routes.replace(RouteTable.from_payload(table))

    def report(self) -> None:
        now = asyncio.get_running_loop().time()
        self.agent.report(
            {
                "router": self.name,
                "version": self.router.routes.table.version,
                "apps": dict(self.router.activity.report(now)),
            }
        )

    async def run(self) -> None:
        while True:
            self.report()
            await asyncio.sleep(self.report_interval)

    def close(self) -> None:
        self._unsubscribe()


@dataclass(frozen=True, slots=True)
class UpSettings:
    #: Apps defined at start; None: only what the control plane defines.
    apps_file: Path | None
    router: RouterSettings
    agent: AgentSettings
    local: LocalSettings
    idle_after: float | None = None
    #: The logs service; None runs without it (app and router lines go to the console only).
    logs: LogsSettings | None = None
    #: The control plane; None runs without it (only the apps file's apps).
    control: ControlSettings | None = None
    #: How often every process is sampled (memory, CPU, R14/R15).
    dynos: DynoSettings = field(default_factory=DynoSettings)
    #: Where the request charts' rollup is kept across restarts; None: in memory only.
    rollup_file: Path | None = None


class Up:
    """Everything ``slipway up`` runs, started and stopped in order."""

    def __init__(
        self,
        settings: UpSettings,
        *,
        registry: CollectorRegistry | None = None,
        app_sink: ProcessLogSink | None = None,
        router_sink: LogSink | None = None,
        addon_prefix: str = "slipway_",
        tasks: TaskSet | None = None,
        confiner: Confiner | None = None,
    ) -> None:
        """``tasks``: the process's one task set (``kit.runner.run``'s); every component's
        long-lived tasks run in it, so any of them failing stops ``slipway up``."""
        self.settings = settings
        self.tasks = tasks if tasks is not None else TaskSet()
        self.registry = registry or CollectorRegistry()
        apps = (
            load_apps(settings.apps_file, idle_after=settings.idle_after)
            if settings.apps_file is not None
            else []
        )
        app_sink = app_sink or ConsoleSink()
        router_sink = router_sink or StreamSink()
        self.logs: LogsComponent | None = None
        # The logs service takes the control plane's tokens (admin, or the app's own).
        tokens = ControlTokens()
        if settings.logs is not None:
            # Every line goes to the console as before and to the logs service, which
            # keeps it for `slipway logs` / SSE and archives it.
            self.logs = LogsComponent(
                settings.logs,
                registry=self.registry,
                verifier=tokens if settings.control is not None else None,
                tasks=self.tasks,
            )
            app_sink = TeeAppLines(app_sink, self.logs.service)
            router_sink = TeeRouterLines(router_sink, self.logs.service)
        # Request charts: every router line is counted into the rollup (control/rollup/).
        self.rollup = keeper.load(settings.rollup_file) if settings.rollup_file else Rollup()
        self.keeper = (
            keeper.Keeper(self.rollup, settings.rollup_file) if settings.rollup_file else None
        )
        router_sink = TeeRouterLines(router_sink, RouterLineTap(self.rollup))
        self.runtime = LocalRuntime(settings=settings.local, sink=app_sink, confiner=confiner)
        self.dynos = DynoMonitor(
            LocalSource(self.runtime),
            sink=app_sink,
            registry=self.registry,
            settings=settings.dynos,
        )
        self.agent = Agent(
            apps,
            runtime=self.runtime,
            registry=self.registry,
            settings=settings.agent,
            tasks=self.tasks,
            dynos=self.dynos,
        )
        self.router = Router(
            settings.router,
            routes=Routes(),
            registry=self.registry,
            sink=router_sink,
            waker=self.agent,
            tasks=self.tasks,
        )
        self.link = LocalLink(self.agent, self.router)
        # Sleeps, wakes and crashes on the charts' time axis, from the route table's states.
        self._unwatch = self.agent.subscribe(TableWatcher(self.rollup))
        self.control: EmbeddedControl | None = None
        if settings.control is not None:
            self.control = EmbeddedControl(
                settings.control,
                link=LocalAgent(self.agent, idle_after=settings.idle_after),
                registry=self.registry,
                addon_prefix=addon_prefix,
                sink=app_sink,  # build and one-off lines join the apps' stream
                tasks=self.tasks,
                confiner=confiner,
                requests=RollupSource(self.rollup),
            )
            tokens.control = self.control.control
        self.api_port = settings.agent.port
        self._api: web.AppRunner | None = None
        self._tasks = self.tasks.child()

    @property
    def failed(self) -> asyncio.Event:
        """Set once any task of any component has failed."""
        return self.tasks.failed

    async def start(self) -> None:
        if self.logs is not None:  # first, so the first app line has somewhere to go
            await self.logs.start()
        await self.agent.start()
        self._api = web.AppRunner(api_app(self.agent, registry=self.registry))
        await self._api.setup()
        site = web.TCPSite(self._api, self.settings.agent.host, self.settings.agent.port)
        await site.start()
        self.api_port = bound_port(site)
        await self.router.start()
        self._tasks.start("local-link", self.link.run())
        if self.keeper is not None:
            self._tasks.start("rollup-keeper", self.keeper.run())
        if self.control is not None:  # last: its start hands every current release to the agent
            token = self.settings.control.bootstrap_admin_token if self.settings.control else None
            if self.logs is not None and self.settings.logs is not None and token:
                host, port = self.settings.logs.http_host, self.logs.http_port  # the live logs'
                self.control.dashboard.logs = LogsUpstream(f"http://{host}:{port}", token)
            await self.control.start()

    def whereabouts(self, token_file: Path | None) -> dict[str, str]:
        """Where everything listens, once started: the first thing ``slipway up`` says.

        ``login_file`` holds the admin token (not named ``token_*``: the log masks those).
        """
        host = self.settings.router.host
        hosts = [h for m in self.agent.machines.values() for h in m.config.hosts]
        found = {
            "router_url": f"http://{host}:{self.router.port}/",
            "api_url": f"http://{self.settings.control.host}:{self.control.port}"
            if self.settings.control is not None and self.control is not None
            else "",
            "logs_url": f"http://{self.settings.logs.http_host}:{self.logs.http_port}"
            if self.settings.logs is not None and self.logs is not None
            else "",
            "agent_url": f"http://{self.settings.agent.host}:{self.api_port}",
            "login_file": str(token_file) if token_file is not None else "",
            "apps": ",".join(self.agent.machines),
        }
        if hosts:
            found["app_url"] = f"http://{hosts[0]}:{self.router.port}/"
        return found

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        await self.router.stop(grace=min(5.0, self.settings.router.drain_grace))
        await self._tasks.stop()
        self.link.close()
        self._unwatch()
        if self.keeper is not None:
            await self.keeper.flush()
        await self.agent.stop()
        if self._api is not None:
            await self._api.cleanup()
        if self.logs is not None:  # last, so the apps' final lines are kept
            await self.logs.stop()


class ControlTokens:
    """The logs service's ``TokenVerifier`` over the control plane's tokens, in process."""

    def __init__(self) -> None:
        #: Set once the control plane exists (it is built after the logs service).
        self.control: Control | None = None

    async def allows(self, token: str, *, app: str) -> bool:
        if self.control is None or not token:
            return False
        try:
            principal = await self.control.authenticate(token)
        except ControlError:  # unknown token, or the store is down: no
            return False
        return principal.may_act_on(app)


class TeeAppLines:
    """App, build and release lines to several sinks (the console and the logs service)."""

    def __init__(self, *sinks: ProcessLogSink) -> None:
        self._sinks = sinks

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        for sink in self._sinks:
            sink.publish(app, source, process, text, time)


class TeeRouterLines:
    """Router lines to several sinks; each sink's ``emit`` is non-blocking already."""

    def __init__(self, *sinks: LogSink) -> None:
        self._sinks = sinks

    def emit(self, app: str, line: str) -> None:
        for sink in self._sinks:
            sink.emit(app, line)
