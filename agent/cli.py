"""``slipway serve agent``: the agent as its own process, with routers talking to it over HTTP."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from pathlib import Path

import click
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import AppConfig, load_apps
from agent.dynolocal import LocalSource
from agent.dynowatch import DynoMonitor, DynoSettings
from agent.errors import ConfigError
from agent.kubernetes.serve import serve_kubernetes
from agent.kubernetes.settings import from_env
from agent.local import LocalRuntime
from agent.output import ConsoleSink
from agent.settings import AgentSettings
from kit import logfmt
from kit.durations import duration_option
from kit.runner import run
from kit.tasks import TaskSet

log = logging.getLogger(__name__)


@click.command("agent")
@click.argument(
    "apps_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SLIPWAY_APPS",
    required=False,
)
@click.option(
    "--runtime",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    show_default=True,
    envvar="SLIPWAY_AGENT_RUNTIME",
    help="local: child processes. kubernetes: Deployments, one leader among the replicas.",
)
@click.option(
    "--advertise-url",
    envvar="SLIPWAY_AGENT_ADVERTISE_URL",
    help="kubernetes: this replica's API URL for followers [http://$POD_IP:PORT].",
)
@click.option("--host", default="0.0.0.0", show_default=True, envvar="SLIPWAY_AGENT_HOST")
@click.option("--port", default=9081, show_default=True, envvar="SLIPWAY_AGENT_PORT")
@click.option(
    "--idle-after",
    callback=duration_option,
    envvar="SLIPWAY_IDLE_AFTER",
    help="Sleep every app after this long without requests, whatever the file says.",
)
@click.option(
    "--dyno-interval",
    callback=duration_option,
    envvar="SLIPWAY_DYNO_INTERVAL",
    help="Seconds between samples of every process (memory, CPU, R14/R15) [20s].",
)
@click.option(
    "--logs-url",
    envvar="SLIPWAY_AGENT_LOGS_URL",
    help="kubernetes: the logs service's HTTP API; R14/R15 lines reach the apps' streams "
    "through it (posted with SLIPWAY_AGENT_TOKEN) [only this agent's log].",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SLIPWAY_LOG_LEVEL")
def serve(
    apps_file: Path | None,
    runtime: str,
    advertise_url: str | None,
    host: str,
    port: int,
    idle_after: float | None,
    dyno_interval: float | None,
    logs_url: str | None,
    log_level: str,
) -> None:
    """Run the agent and its API for routers.

    Locally, the apps come from APPS_FILE and run as child processes. On
    Kubernetes, they come from the control plane (and the Deployments it
    created); APPS_FILE is optional.
    """
    logfmt.configure(log_level)
    if apps_file is None and runtime == "local":
        raise click.UsageError("the local runtime needs an APPS_FILE (or $SLIPWAY_APPS)")
    if advertise_url is not None and not advertise_url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--advertise-url")
    try:
        apps = load_apps(apps_file, idle_after=idle_after) if apps_file is not None else []
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    token = os.environ.get("SLIPWAY_AGENT_TOKEN") or None
    if token is None:
        log.warning(
            "the agent API has no token: anything that reaches it may define and run apps; "
            "set SLIPWAY_AGENT_TOKEN here and in the routers and control plane"
        )
    if logs_url and not logs_url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--logs-url")
    settings = AgentSettings(host=host, port=port, token=token, logs_url=logs_url or None)
    try:
        dynos = DynoSettings() if dyno_interval is None else DynoSettings(interval=dyno_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--dyno-interval") from exc
    if runtime == "kubernetes":
        try:
            from_env(os.environ)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        main = functools.partial(
            serve_kubernetes, settings, apps, dict(os.environ), advertise=advertise_url, dynos=dynos
        )
        sys.exit(run(main))
    sys.exit(run(functools.partial(_serve, settings, apps, dynos)))


async def _serve(
    settings: AgentSettings,
    apps: list[AppConfig],
    dynos: DynoSettings,
    tasks: TaskSet,
    stop: asyncio.Event,
) -> int:
    registry = CollectorRegistry()
    runtime = LocalRuntime()
    # No logs service in this process: R14/R15 and runtime-metrics lines go to the console.
    monitor = DynoMonitor(
        LocalSource(runtime), sink=ConsoleSink(), registry=registry, settings=dynos
    )
    agent = Agent(
        apps, runtime=runtime, registry=registry, settings=settings, tasks=tasks, dynos=monitor
    )
    await agent.start()
    runner = web.AppRunner(api_app(agent, registry=registry))
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        log.error("cannot listen", extra={"port": settings.port, "error": str(exc)})
        await agent.stop()
        await runner.cleanup()
        return 1
    log.info("agent listening", extra={"port": settings.port})
    await stop.wait()  # a signal, or a dead watch, tick or scaler (kit.runner)
    await agent.stop()
    await runner.cleanup()
    return 0
