"""``slipway serve router``: the router as its own process (or N processes on one port)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from kit import logfmt
from kit.durations import duration_option
from kit.runner import run
from kit.tasks import TaskSet
from router.errors import RouteTableError
from router.feed import AgentClient
from router.routes import Routes, load_file
from router.server import Router
from router.settings import RouterSettings
from router.supervisor import fork_workers

log = logging.getLogger(__name__)


@click.command("router")
@click.option("--host", default="0.0.0.0", show_default=True, envvar="SLIPWAY_ROUTER_HOST")
@click.option("--port", default=8080, show_default=True, envvar="SLIPWAY_ROUTER_PORT")
@click.option("--ops-host", default="0.0.0.0", show_default=True, envvar="SLIPWAY_ROUTER_OPS_HOST")
@click.option(
    "--ops-port",
    default=9080,
    show_default=True,
    envvar="SLIPWAY_ROUTER_OPS_PORT",
    help="/healthz /readyz /metrics (with --workers: all workers', merged).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    envvar="SLIPWAY_ROUTER_WORKERS",
    help="Processes sharing the port through SO_REUSEPORT.",
)
@click.option(
    "--routes",
    "routes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="SLIPWAY_ROUTER_ROUTES",
    help="A static route table (JSON, the agent's wire form).",
)
@click.option(
    "--upstream-timeout",
    callback=duration_option,
    envvar="SLIPWAY_ROUTER_UPSTREAM_TIMEOUT",
    help="Time to the app's first byte before 504 H12 [30s].",
)
@click.option(
    "--drain-grace",
    callback=duration_option,
    envvar="SLIPWAY_ROUTER_DRAIN_GRACE",
    help="Time in-flight requests get after SIGTERM [25s].",
)
@click.option(
    "--agent-url",
    envvar="SLIPWAY_AGENT_URL",
    help="The agent's API (http://agent:9081): route feed, activity reports, wakes.",
)
@click.option(
    "--logs-url",
    envvar="SLIPWAY_ROUTER_LOGS_URL",
    help="The logs service's HTTP API (http://logs:8082): router lines reach the apps' "
    "streams through it, posted with SLIPWAY_AGENT_TOKEN [only this router's log].",
)
@click.option(
    "--underscores-in-headers/--no-underscores-in-headers",
    default=False,
    show_default=True,
    envvar="SLIPWAY_ROUTER_UNDERSCORES_IN_HEADERS",
    help="Forward request headers with '_' in their names (dropped by default, as nginx does).",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SLIPWAY_LOG_LEVEL")
def serve(
    host: str,
    port: int,
    ops_host: str,
    ops_port: int,
    workers: int,
    routes_file: Path | None,
    upstream_timeout: float | None,
    drain_grace: float | None,
    agent_url: str | None,
    logs_url: str | None,
    underscores_in_headers: bool,
    log_level: str,
) -> None:
    """Run the router: the host-based reverse proxy in front of every app."""
    logfmt.configure(log_level)
    settings = RouterSettings(
        host=host,
        port=port,
        ops_host=ops_host,
        ops_port=ops_port,
        workers=workers,
        reuse_port=workers > 1,
        routes_file=routes_file,
        underscores_in_headers=underscores_in_headers,
        logs_url=logs_url or None,
    )
    if upstream_timeout is not None:
        settings = replace(settings, upstream_timeout=upstream_timeout)
    if drain_grace is not None:
        settings = replace(settings, drain_grace=drain_grace)
    try:
        routes = Routes(load_file(routes_file)) if routes_file else Routes()
    except RouteTableError as exc:
        raise click.ClickException(f"{exc}; fix the file or drop --routes") from exc
    if agent_url is not None and not agent_url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--agent-url")
    if logs_url and not logs_url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--logs-url")
    if workers <= 1:
        sys.exit(run(functools.partial(_serve, settings, routes, agent_url)))
    sys.exit(
        fork_workers(settings, lambda own: run(functools.partial(_serve, own, routes, agent_url)))
    )


async def _serve(
    settings: RouterSettings,
    routes: Routes,
    agent_url: str | None,
    tasks: TaskSet,
    stop: asyncio.Event,
) -> int:
    token = os.environ.get("SLIPWAY_AGENT_TOKEN") or None
    agent = AgentClient(agent_url, routes=routes, token=token, tasks=tasks) if agent_url else None
    router = Router(
        settings, routes=routes, registry=CollectorRegistry(), waker=agent, tasks=tasks, token=token
    )
    if agent is not None:
        agent.activity = router.activity
        await agent.start()
    try:
        await router.start()
    except OSError as exc:
        log.error(
            "cannot listen; is another process on the port?",
            extra={"port": settings.port, "error": str(exc)},
        )
        if agent is not None:
            await agent.stop()
        return 1
    await stop.wait()  # a signal, or a dead feed, report loop or sweeper (kit.runner)
    log.info("draining", extra={"grace": settings.drain_grace})
    await router.stop()
    if agent is not None:
        await agent.stop()
    return 0
