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
import functools
import logging
import os
import secrets
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
from control.agent_target import LocalAgent
from control.errors import ControlError
from control.kit import logfmt
from control.kit.durations import duration_option
from control.kit.ops import bound_port
from control.kit.runner import run
from control.kit.tasks import TaskSet
from control.server import EmbeddedControl
from control.service import Control
from control.settings import (
    AddonServers,
    BuildServerSettings,
    ControlSettings,
    review_settings_from_env,
)
from logs.component import LogsComponent
from logs.settings import LogsSettings
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
    ) -> None:
        self.settings = settings
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
            )
            app_sink = TeeAppLines(app_sink, self.logs.service)
            router_sink = TeeRouterLines(router_sink, self.logs.service)
        self.runtime = LocalRuntime(settings=settings.local, sink=app_sink)
        self.agent = Agent(
            apps, runtime=self.runtime, registry=self.registry, settings=settings.agent
        )
        self.router = Router(
            settings.router,
            routes=Routes(),
            registry=self.registry,
            sink=router_sink,
            waker=self.agent,
        )
        self.link = LocalLink(self.agent, self.router)
        self.control: EmbeddedControl | None = None
        if settings.control is not None:
            self.control = EmbeddedControl(
                settings.control,
                link=LocalAgent(self.agent),
                registry=self.registry,
                addon_prefix=addon_prefix,
                sink=app_sink,  # build and one-off lines join the apps' stream
            )
            tokens.control = self.control.control
        self.api_port = settings.agent.port
        self._api: web.AppRunner | None = None
        self._tasks = TaskSet()

    @property
    def failed(self) -> asyncio.Event:
        return self._tasks.failed

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
        self._tasks.start("agent-watchdog", self._watch_agent())
        if self.control is not None:  # last: its start hands every current release to the agent
            await self.control.start()

    async def _watch_agent(self) -> None:
        await self.agent.failed.wait()
        raise RuntimeError("the agent stopped working")

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        await self.router.stop(grace=min(5.0, self.settings.router.drain_grace))
        await self._tasks.stop()
        self.link.close()
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


@click.command("up")
@click.argument(
    "apps_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=False,
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
    callback=duration_option,
    envvar="SLIPWAY_IDLE_AFTER",
    help="Sleep every app after this long without requests (e.g. 10s), whatever the file says.",
)
@click.option(
    "--logs-port",
    default=8082,
    show_default=True,
    envvar="SLIPWAY_LOGS_PORT",
    help="The logs service's HTTP API (`slipway logs`, SSE).",
)
@click.option(
    "--forward-port",
    default=24224,
    show_default=True,
    envvar="SLIPWAY_LOGS_FORWARD_PORT",
    help="Fluent forward protocol, for log shippers on this machine.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".slipway",
    show_default=True,
    envvar="SLIPWAY_STATE_DIR",
    help="Where the log spool and the generated token live.",
)
@click.option(
    "--control-port",
    default=8000,
    show_default=True,
    envvar="SLIPWAY_CONTROL_PORT",
    help="The control plane's API (the `slipway` CLI: apps, deploys, config, releases).",
)
@click.option(
    "--app-domain",
    default="localhost",
    show_default=True,
    envvar="SLIPWAY_APP_DOMAIN",
    help="Apps of the control plane answer at APP.DOMAIN.",
)
@click.option(
    "--postgres-admin-dsn",
    envvar="SLIPWAY_ADDON_POSTGRES_DSN",
    default=None,
    help="A PostgreSQL for postgres add-ons (superuser DSN); none: no postgres add-ons.",
)
@click.option(
    "--redis-admin-url",
    envvar="SLIPWAY_ADDON_REDIS_URL",
    default=None,
    help="A Redis for redis add-ons (a user allowed ACL SETUSER); none: no redis add-ons.",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SLIPWAY_LOG_LEVEL")
def up(
    apps_file: Path,
    host: str,
    port: int,
    ops_port: int,
    agent_port: int,
    idle_after: float | None,
    logs_port: int,
    forward_port: int,
    state_dir: Path,
    control_port: int,
    app_domain: str,
    postgres_admin_dsn: str | None,
    redis_admin_url: str | None,
    log_level: str,
) -> None:
    """Run the router, the agent, the logs service and the control plane.

    Apps come from the control plane (`slipway apps:create`, `slipway deploy`)
    and from APPS_FILE (TOML), if given.
    """
    logfmt.configure(log_level)
    state_dir.mkdir(parents=True, exist_ok=True)
    token_file = state_dir / "token"
    token = _local_token(token_file)
    settings = UpSettings(
        apps_file=apps_file,
        router=RouterSettings(host=host, port=port, ops_host=host, ops_port=ops_port),
        # Routers in other processes join with SLIPWAY_AGENT_TOKEN=$(cat .slipway/token).
        agent=AgentSettings(host=host, port=agent_port, token=token),
        local=LocalSettings(),
        idle_after=idle_after,
        logs=LogsSettings(
            http_host=host,
            http_port=logs_port,
            forward_host=host,
            forward_port=forward_port,
            admin_token=token,
            spool_dir=state_dir / "logs",
        ),
        control=ControlSettings(
            db_url=f"sqlite+aiosqlite:///{(state_dir / 'slipway.db').absolute()}",
            host=host,
            port=control_port,
            bootstrap_admin_token=token,
            addons=AddonServers(
                postgres_admin_dsn=postgres_admin_dsn, redis_admin_url=redis_admin_url
            ),
            app_domain=app_domain,
            # Builds by default, under the state directory; review apps when configured.
            builds=BuildServerSettings(
                root=os.environ.get("SLIPWAY_BUILD_ROOT") or str(state_dir / "builds"),
                logs_url=f"http://{host}:{logs_port}",
            ),
            review=review_settings_from_env(os.environ),
        ),
    )
    log.info(
        "the CLI and logs need a token: export SLIPWAY_TOKEN=$(cat FILE)",
        extra={
            "file": str(token_file),
            "api_url": f"http://{host}:{control_port}",
            "logs_url": f"http://{host}:{logs_port}",
        },
    )
    try:
        slipway = Up(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(run(functools.partial(_main, slipway)))


def _local_token(path: Path) -> str:
    """SLIPWAY_TOKEN if set; else the token kept in ``path`` (made once, readable by us only)."""
    if token := os.environ.get("SLIPWAY_TOKEN"):
        return token
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc}; remove it or fix its mode") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "slw_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


async def _main(slipway: Up, stop: asyncio.Event) -> int:
    try:
        await slipway.start()
    except OSError as exc:
        log.error("cannot listen; is another slipway running?", extra={"error": str(exc)})
        await slipway.stop()
        return 1
    except ControlError as exc:
        log.error("the control plane cannot start", extra={"error": str(exc)})
        await slipway.stop()
        return 1
    hosts = [h for m in slipway.agent.machines.values() for h in m.config.hosts]
    log.info(
        "slipway up",
        extra={
            "url": f"http://{hosts[0]}:{slipway.router.port}/" if hosts else "",
            "apps": ",".join(slipway.agent.machines),
            "agent_port": slipway.api_port,
            "control_port": slipway.control.port if slipway.control else "",
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
