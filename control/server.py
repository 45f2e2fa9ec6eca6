"""``slipway serve control``: the control API as its own process.

Settings come from flags or ``SLIPWAY_*`` variables, once, here. Migrations
run at start; /readyz turns ready once they did and the store answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import click
from aiohttp import web
from prometheus_client import CollectorRegistry

from control import exporter_targets
from control.addons import Provisioner
from control.addons.dedicated import DedicatedRedis
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.agent_target import AgentClient, AgentLink, AgentTarget, LocalAgent
from control.api.app import build_app
from control.building import Builder, Builds
from control.builds.kube import KubernetesBuilder
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import LogSink
from control.builds.settings import BuildSettings
from control.detached import DetachedTarget
from control.errors import ControlError
from control.kit import logfmt, runner
from control.kit.durations import parse_duration
from control.kit.tasks import TaskSet
from control.models import Addon
from control.releasing import ReleaseTarget
from control.review.apply import ControlReviewApps
from control.review.github import MemoryDeliveries
from control.review.plan import Pipeline
from control.review.source import GitAppJson
from control.review.stale import StaleReviewApps
from control.review.webhook import WebhookConfig, webhook_app
from control.service import Control
from control.settings import (
    DEFAULT_DB_URL,
    AddonServers,
    ControlSettings,
    ReviewSettings,
    build_settings_from_env,
    review_settings_from_env,
)
from control.store.db import Store, safe_url

log = logging.getLogger(__name__)


def provisioners(settings: ControlSettings, *, prefix: str) -> dict[str, Provisioner]:
    servers = settings.addons
    found: dict[str, Provisioner] = {}
    if servers.postgres_admin_dsn:
        found["postgres"] = PostgresAddons(
            admin_dsn=servers.postgres_admin_dsn,
            public_host=servers.postgres_public_host,
            public_port=servers.postgres_public_port,
            prefix=prefix,
        )
    if servers.redis_admin_url:
        found["redis"] = RedisAddons(
            admin_url=servers.redis_admin_url,
            public_host=servers.redis_public_host,
            public_port=servers.redis_public_port,
            prefix=prefix,
        )
    return found


def build_control(
    settings: ControlSettings, *, target: ReleaseTarget, addon_prefix: str = "slipway_"
) -> Control:
    """The service as ``slipway up`` and ``serve control`` both wire it."""
    targets_dir = settings.exporter_targets_dir
    writer = None
    if targets_dir is not None:
        directory = Path(targets_dir)

        servers = exporter_targets.Servers(
            postgres_dsn_env=settings.exporter_postgres_dsn_env,
            redis_dsn_env=settings.exporter_redis_dsn_env,
        )

        async def writer(addons: list[Addon]) -> None:
            await exporter_targets.write(directory, addons, servers)

    found = provisioners(settings, prefix=addon_prefix)
    if isinstance(target, AgentTarget) and isinstance(target.link, LocalAgent):
        # Dedicated instances are redis-server processes of the local agent; on Kubernetes
        # they need an image, a Service and a NetworkPolicy (docs/control.md, design).
        found["redis"] = DedicatedRedis(target.link, shared=found.get("redis"))
    return Control(
        store=Store.open(settings.db_url),
        target=target,
        provisioners=found,
        targets_writer=writer,
        app_domain=settings.app_domain,
    )


class ControlServer:
    """The API listening, the store migrated, the target resumed; started and stopped in order."""

    def __init__(
        self,
        control: Control,
        settings: ControlSettings,
        *,
        registry: CollectorRegistry,
        builds: Builds | None = None,
        subapps: Mapping[str, web.Application] | None = None,
    ) -> None:
        self.control = control
        self.settings = settings
        self.port = settings.port
        self._started = False
        app = build_app(control, registry=registry, ready=self._ready, builds=builds)
        for prefix, subapp in (subapps or {}).items():
            # No bearer token there: such an app checks its callers itself (a signature).
            app.add_subapp(prefix, subapp)
        self._runner = web.AppRunner(app, access_log=None)

    def _ready(self) -> str | None:
        return None if self._started else "migrating the state store"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        # Port 0 (tests) binds a free one: read back which.
        self.port = self._runner.addresses[0][1]
        await self.control.start(bootstrap_admin_token=self.settings.bootstrap_admin_token)
        self._started = True
        log.info(
            "control API listening",
            extra={
                "host": self.settings.host,
                "port": self.port,
                "db": safe_url(self.settings.db_url),
            },
        )

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self.control.store.close()


class ControlPlane:
    """Everything the control plane runs: the API, builds, review apps and their scheduler.

    One composition for both entry points: ``slipway up`` (``EmbeddedControl``, over the
    agent in the same process) and ``slipway serve control`` (over an agent's HTTP API, or
    detached). ``start()`` migrates the store, hands every current release to the target
    and serves the API; ``stop()`` closes it all.
    """

    def __init__(
        self,
        settings: ControlSettings,
        *,
        target: ReleaseTarget,
        registry: CollectorRegistry,
        addon_prefix: str = "slipway_",
        sink: LogSink | None = None,
    ) -> None:
        self.target = target
        self.control = build_control(settings, target=self.target, addon_prefix=addon_prefix)
        self.builds = build_builds(self.control, settings, sink=sink, registry=registry)
        self.review: ControlReviewApps | None = None
        self.stale: StaleReviewApps | None = None
        subapps: dict[str, web.Application] = {}
        if settings.review is not None and self.builds is None:
            raise ControlError(
                "review apps need a builder: set SLIPWAY_BUILD_ROOT (local builds) or "
                "SLIPWAY_BUILDER=kubernetes, or unset SLIPWAY_GITHUB_WEBHOOK_SECRET"
            )
        if settings.review is not None and self.builds is not None:
            self.review, self.stale, subapps["/github"] = build_review(
                self.builds, settings.review, sink=sink or _NoSink(), registry=registry
            )
        self.server = ControlServer(
            self.control, settings, registry=registry, builds=self.builds, subapps=subapps
        )
        #: Its own long-lived tasks (the stale review apps' scheduler).
        self.tasks = TaskSet()

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()
        if self.stale is not None:
            self.tasks.start("review-stale", self.stale.run())

    async def stop(self) -> None:
        await self.tasks.stop()
        if self.review is not None:
            await self.review.close()
        if self.builds is not None:
            await self.builds.close()
        await self.server.stop()


class EmbeddedControl(ControlPlane):
    """The control plane inside ``slipway up``, over the agent in the same process."""

    def __init__(
        self,
        settings: ControlSettings,
        *,
        link: AgentLink,
        registry: CollectorRegistry,
        addon_prefix: str = "slipway_",
        sink: LogSink | None = None,
    ) -> None:
        super().__init__(
            settings,
            target=AgentTarget(link, release_timeout=settings.release_timeout),
            registry=registry,
            addon_prefix=addon_prefix,
            sink=sink,
        )


class _NoSink:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass


class LoggedLines:
    """Build lines into this process's own log, where no logs service runs beside it."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        log.info("build output", extra={"app": app, "line": text})


def build_builds(
    control: Control,
    settings: ControlSettings,
    *,
    sink: LogSink | None,
    registry: CollectorRegistry,
) -> Builds | None:
    """The builder behind POST /apps/{app}/builds: local with a build root, or CNB Jobs."""
    if settings.builds is None:
        return None
    root = Path(settings.builds.root).resolve() if settings.builds.root else None
    sink = sink or _NoSink()
    builder: Builder
    if settings.builds.cnb is not None:
        builder = KubernetesBuilder(
            settings.builds.cnb,
            sink=sink,
            metrics=BuildMetrics(registry),
            timeout=settings.builds.timeout,
            buildpacks=lambda app: buildpacks_of(control, app),
        )
    else:
        assert root is not None, "the local builder needs a build root"
        builder = LocalBuilder(
            BuildSettings(
                root=root,
                concurrency=settings.builds.concurrency,
                timeout=settings.builds.timeout,
            ),
            sink=sink,
            metrics=BuildMetrics(registry),
        )
    return Builds(
        control,
        builder=builder,
        sink=sink,
        logs_url=settings.builds.logs_url,
        # Uploads are unpacked by the local builder; a Job fetches its source with git.
        uploads=root / "uploads" if root is not None and settings.builds.cnb is None else None,
    )


#: The app's config var naming its buildpacks, in order (``id`` or ``id@version``, separated
#: by commas or spaces); unset, the builder image's own detection chooses.
BUILDPACKS_VAR = "BUILDPACKS"


async def buildpacks_of(control: Control, app: str) -> tuple[str, ...]:
    config = await control.config(app)
    return tuple(config.get(BUILDPACKS_VAR, "").replace(",", " ").split())


def build_review(
    builds: Builds,
    settings: ReviewSettings,
    *,
    sink: LogSink,
    registry: CollectorRegistry,
) -> tuple[ControlReviewApps, StaleReviewApps, web.Application]:
    """Review apps: their ReviewApps, the stale-app task, and the webhook app for /github."""
    pipeline = Pipeline(
        name=settings.pipeline,
        domain=settings.domain,
        staging_app=settings.staging_app,
        stale_after_days=settings.stale_after_days,
    )
    review = ControlReviewApps(builds.control, builds, sink=sink)
    stale = StaleReviewApps(builds, review, pipeline=pipeline)
    webhook = webhook_app(
        WebhookConfig(secret=settings.webhook_secret.encode(), pipeline=pipeline),
        deliveries=MemoryDeliveries(),
        review_apps=review,
        app_json=GitAppJson(),
        registry=registry,
    )
    return review, stale, webhook


@click.command("control")
@click.option(
    "--db",
    "db_url",
    envvar="SLIPWAY_DB_URL",
    default=DEFAULT_DB_URL,
    show_default=True,
    help="State store: sqlite+aiosqlite:///FILE or postgresql+psycopg://...",
)
@click.option("--host", envvar="SLIPWAY_CONTROL_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="SLIPWAY_CONTROL_PORT", default=8000, show_default=True, type=int)
@click.option(
    "--postgres-admin-dsn",
    envvar="SLIPWAY_ADDON_POSTGRES_DSN",
    default=None,
    help="Admin DSN of the shared PostgreSQL for add-ons.",
)
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
@click.option("--log-level", envvar="SLIPWAY_LOG_LEVEL", default="info", show_default=True)
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
    )
    logfmt.configure(log_level)

    async def main(stop: asyncio.Event) -> int:
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
        # No logs service in this process: build lines go to this process's own log (on a
        # cluster, Fluent Bit brings a build Job's pod output to the logs service).
        try:
            plane = ControlPlane(
                settings,
                target=target,
                registry=CollectorRegistry(),
                addon_prefix=addon_prefix,
                sink=LoggedLines(),
            )
        except ControlError as exc:
            log.error("control plane cannot start", extra={"error": str(exc)})
            return 1
        try:
            await plane.start()
            await stop.wait()
        except ControlError as exc:
            log.error("control plane failed", extra={"error": str(exc)})
            return 1
        finally:
            await plane.stop()
            if client is not None:
                await client.close()
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(runner.run(main))
