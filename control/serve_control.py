"""``slipway serve control``: the control API as its own process.

Settings come from flags or ``SLIPWAY_*`` variables, once, here; what they
run is composed in ``control/server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import click
from prometheus_client import CollectorRegistry

from control.agent_target import AgentClient, AgentTarget
from control.backups.settings import BackupSettings, backup_settings_from_env
from control.builders import LoggedLines
from control.cli_options import DB, LOG_LEVEL, POSTGRES_ADMIN_DSN
from control.detached import DetachedTarget
from control.errors import ControlError
from control.provisioning import kube_addons_client, needs_kube_api
from control.releasing import ReleaseTarget
from control.rollup.prometheus import PrometheusSource
from control.server import ControlPlane
from control.settings import (
    AddonServers,
    ControlSettings,
    KubeAddons,
    build_settings_from_env,
    kube_addons_from_env,
    limits_from_env,
    review_settings_from_env,
)
from kit import logfmt, runner
from kit.durations import parse_duration
from kit.tasks import TaskSet

log = logging.getLogger(__name__)


@click.command("control")
@DB
@click.option("--host", envvar="SLIPWAY_CONTROL_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="SLIPWAY_CONTROL_PORT", default=8000, show_default=True, type=int)
@POSTGRES_ADMIN_DSN
@click.option("--postgres-public-host", envvar="SLIPWAY_ADDON_POSTGRES_HOST", default="127.0.0.1")
@click.option(
    "--postgres-public-port", envvar="SLIPWAY_ADDON_POSTGRES_PORT", default=5432, type=int
)
@click.option(
    "--redis-admin-url",
    envvar="SLIPWAY_ADDON_REDIS_URL",
    default=None,
    help="Admin URL of the shared Redis for add-ons.",
)
@click.option("--redis-public-host", envvar="SLIPWAY_ADDON_REDIS_HOST", default="127.0.0.1")
@click.option("--redis-public-port", envvar="SLIPWAY_ADDON_REDIS_PORT", default=6379, type=int)
@click.option(
    "--addon-prefix",
    envvar="SLIPWAY_ADDON_PREFIX",
    default="slipway_",
    show_default=True,
    help="Prefix of add-on role, database and ACL user names on the shared servers.",
)
@click.option(
    "--exporter-targets-dir",
    envvar="SLIPWAY_EXPORTER_TARGETS_DIR",
    default=None,
    help="Where to write the exporters' targets files.",
)
@click.option(
    "--exporter-postgres-dsn-env",
    envvar="SLIPWAY_EXPORTER_POSTGRES_DSN_ENV",
    default=None,
    help="Variable holding a monitoring DSN of the shared PostgreSQL in the exporter's env.",
)
@click.option(
    "--exporter-redis-dsn-env",
    envvar="SLIPWAY_EXPORTER_REDIS_DSN_ENV",
    default=None,
    help="Variable holding a monitoring URL of the shared Redis in the exporter's env.",
)
@click.option(
    "--app-domain",
    envvar="SLIPWAY_APP_DOMAIN",
    default=None,
    help="Every app answers at APP.DOMAIN (e.g. apps.example.com), besides its custom domains.",
)
@click.option(
    "--agent-url",
    envvar="SLIPWAY_AGENT_URL",
    default=None,
    help="The agent that runs the apps (http://agent:9081); without it releases are recorded only.",
)
@click.option(
    "--release-timeout",
    envvar="SLIPWAY_RELEASE_TIMEOUT",
    default="5m",
    show_default=True,
    help="How long a release command may run.",
)
@LOG_LEVEL
def serve(
    *, db_url: str, host: str, port: int, postgres_admin_dsn: str | None,
    postgres_public_host: str, postgres_public_port: int, redis_admin_url: str | None,
    redis_public_host: str, redis_public_port: int, addon_prefix: str,
    exporter_targets_dir: str | None, exporter_postgres_dsn_env: str | None,
    exporter_redis_dsn_env: str | None, app_domain: str | None, agent_url: str | None,
    release_timeout: str, log_level: str,
) -> None:  # fmt: skip
    """The control plane's HTTP API (the admin token comes from SLIPWAY_ADMIN_TOKEN)."""
    try:
        timeout = parse_duration(release_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--release-timeout") from exc
    settings = ControlSettings(
        db_url=db_url,
        host=host,
        port=port,
        bootstrap_admin_token=os.environ.get("SLIPWAY_ADMIN_TOKEN") or None,
        addons=AddonServers(
            postgres_admin_dsn=postgres_admin_dsn,
            postgres_public_host=postgres_public_host,
            postgres_public_port=postgres_public_port,
            redis_admin_url=redis_admin_url,
            redis_public_host=redis_public_host,
            redis_public_port=redis_public_port,
        ),
        exporter_targets_dir=exporter_targets_dir,
        exporter_postgres_dsn_env=exporter_postgres_dsn_env,
        exporter_redis_dsn_env=exporter_redis_dsn_env,
        release_timeout=timeout,
        app_domain=app_domain,
        agent_url=agent_url,
        builds=build_settings_from_env(os.environ),
        review=review_settings_from_env(os.environ),
        backups=_backup_settings(),
        limits=limits_from_env(os.environ),
        kube_addons=_kube_addons(),
    )
    logfmt.configure(log_level)

    async def main(tasks: TaskSet, stop: asyncio.Event) -> int:
        client = (
            AgentClient(settings.agent_url, token=os.environ.get("SLIPWAY_AGENT_TOKEN") or None)
            if settings.agent_url
            else None
        )
        target: ReleaseTarget = (
            AgentTarget(client, release_timeout=settings.release_timeout)
            if client is not None
            else DetachedTarget(release_timeout=settings.release_timeout)
        )
        # Request charts read Prometheus when it is configured (the routers' own series).
        prometheus_url = os.environ.get("SLIPWAY_PROMETHEUS_URL") or None
        prometheus = PrometheusSource(prometheus_url) if prometheus_url else None
        # No logs service in this process: build lines go to this process's own log (on a
        # cluster, Fluent Bit brings a build Job's pod output to the logs service).
        kube_api = None
        try:
            kube_api = (
                await kube_addons_client(settings.kube_addons) if needs_kube_api(settings) else None
            )
            plane = ControlPlane(
                settings,
                target=target,
                registry=CollectorRegistry(),
                addon_prefix=addon_prefix,
                sink=LoggedLines(),
                tasks=tasks,
                requests=prometheus,
                kube_api=kube_api,  # the plane closes it at stop
            )
        except ControlError as exc:
            log.error("control plane cannot start", extra={"error": str(exc)})
            if kube_api is not None:
                await kube_api.close()
            return 1
        try:
            await plane.start()
            await stop.wait()  # a signal, or a failed task (kit.runner)
        except ControlError as exc:
            log.error("control plane failed", extra={"error": str(exc)})
            return 1
        finally:
            await plane.stop()
            if client is not None:
                await client.close()
            if prometheus is not None:
                await prometheus.close()
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(runner.run(main))


def _backup_settings() -> BackupSettings | None:
    try:
        return backup_settings_from_env(os.environ)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _kube_addons() -> KubeAddons | None:
    try:
        return kube_addons_from_env(os.environ)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
