"""``slipway up``: the router and the agent (and later the logs service) in one process.

The embedded default: apps from a TOML file run as local processes
(LocalRuntime), the router proxies to them and holds requests while they
wake, and the agent puts them to sleep when idle. Router and agent meet
in-process through ``LocalLink``: the agent's route table goes straight into
the router's ``Routes``, and the router's activity goes to the agent every
``report_interval``; the agent's HTTP API still listens, so routers in
other processes (``slipway serve router --agent-url``) can join.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import click
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import load_apps
from agent.errors import ConfigError
from agent.local import LocalRuntime
from agent.output import ConsoleSink, ProcessLogSink
from agent.settings import AgentSettings, LocalSettings
from agent.table import RouteTableWire
from control.kit import logfmt
from control.kit.durations import parse_duration
from control.kit.runner import run
from control.kit.tasks import TaskSet
from router.accesslog import LogSink, StreamSink
from router.routes import Routes, RouteTable, RouteTablePayload
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

    def _apply(self, table: RouteTableWire) -> None:
        # Same JSON shape on both sides (tests/agent check it); the cast only crosses the
        # two packages' TypedDicts, and from_payload validates what it reads.
        self.router.routes.replace(RouteTable.from_payload(cast(RouteTablePayload, table)))

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
    apps_file: Path
    router: RouterSettings
    agent: AgentSettings
    local: LocalSettings
    idle_after: float | None = None


class Up:
    """Everything ``slipway up`` runs, started and stopped in order."""

    def __init__(
        self,
        settings: UpSettings,
        *,
        registry: CollectorRegistry | None = None,
        app_sink: ProcessLogSink | None = None,
        router_sink: LogSink | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        apps = load_apps(settings.apps_file, idle_after=settings.idle_after)
        # Hook for the logs service: when logs/ lands, build it here and pass it as both
        # sinks (it implements ProcessLogSink.publish and LogSink.emit), then start it in
        # start() before the runtime and stop it last in stop().
        self.runtime = LocalRuntime(settings=settings.local, sink=app_sink or ConsoleSink())
        self.agent = Agent(
            apps, runtime=self.runtime, registry=self.registry, settings=settings.agent
        )
        self.router = Router(
            settings.router,
            routes=Routes(),
            registry=self.registry,
            sink=router_sink or StreamSink(),
            waker=self.agent,
        )
        self.link = LocalLink(self.agent, self.router)
        self.api_port = settings.agent.port
        self._api: web.AppRunner | None = None
        self._tasks = TaskSet()

    @property
    def failed(self) -> asyncio.Event:
        return self._tasks.failed

    async def start(self) -> None:
        await self.agent.start()
        self._api = web.AppRunner(api_app(self.agent, registry=self.registry))
        await self._api.setup()
        site = web.TCPSite(self._api, self.settings.agent.host, self.settings.agent.port)
        await site.start()
        server = site._server  # aiohttp keeps the bound server here; port 0 in tests
        sockets = list(getattr(server, "sockets", None) or [])
        self.api_port = sockets[0].getsockname()[1]
        await self.router.start()
        self._tasks.start("local-link", self.link.run())
        self._tasks.start("agent-watchdog", self._watch_agent())

    async def _watch_agent(self) -> None:
        await self.agent.failed.wait()
        raise RuntimeError("the agent stopped working")

    async def stop(self) -> None:
        await self.router.stop(grace=min(5.0, self.settings.router.drain_grace))
        await self._tasks.stop()
        self.link.close()
        await self.agent.stop()
        if self._api is not None:
            await self._api.cleanup()


def _duration(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command("up")
@click.argument(
    "apps_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default="apps.toml",
    envvar="SLIPWAY_APPS",
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="SLIPWAY_HOST")
@click.option("--port", default=8080, show_default=True, envvar="SLIPWAY_PORT")
@click.option("--ops-port", default=9080, show_default=True, envvar="SLIPWAY_OPS_PORT")
@click.option(
    "--agent-port",
    default=9081,
    show_default=True,
    envvar="SLIPWAY_AGENT_PORT",
    help="The agent's API, for routers in other processes.",
)
@click.option(
    "--idle-after",
    callback=_duration,
    envvar="SLIPWAY_IDLE_AFTER",
    help="Sleep every app after this long without requests (e.g. 10s), whatever the file says.",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SLIPWAY_LOG_LEVEL")
def up(
    apps_file: Path,
    host: str,
    port: int,
    ops_port: int,
    agent_port: int,
    idle_after: float | None,
    log_level: str,
) -> None:
    """Run the router and the agent with the apps in APPS_FILE (TOML) on this machine."""
    logfmt.configure(log_level)
    settings = UpSettings(
        apps_file=apps_file,
        router=RouterSettings(host=host, port=port, ops_host=host, ops_port=ops_port),
        agent=AgentSettings(host=host, port=agent_port),
        local=LocalSettings(),
        idle_after=idle_after,
    )
    try:
        slipway = Up(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(run(functools.partial(_main, slipway)))


async def _main(slipway: Up, stop: asyncio.Event) -> int:
    try:
        await slipway.start()
    except OSError as exc:
        log.error("cannot listen; is another slipway running?", extra={"error": str(exc)})
        await slipway.stop()
        return 1
    hosts = [h for m in slipway.agent.machines.values() for h in m.config.hosts]
    log.info(
        "slipway up",
        extra={
            "url": f"http://{hosts[0]}:{slipway.router.port}/" if hosts else "",
            "apps": ",".join(slipway.agent.machines),
            "agent_port": slipway.api_port,
        },
    )
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(slipway.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    log.info("stopping")
    await slipway.stop()
    return 1 if slipway.failed.is_set() else 0
