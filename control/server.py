"""The control plane composed: store, add-on servers, builds, review apps, dashboard, API.

One composition for both entry points, ``slipway serve control``
(``control/serve_control.py``) and ``slipway up`` (``EmbeddedControl``).
Migrations run at start; /readyz turns ready once they did and the store answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from kubernetes_asyncio import client as kube_client
from prometheus_client import CollectorRegistry

from control import exporter_targets
from control.addons.dedicated import DedicatedRedis
from control.addons.kube_objects import KubeOrShared
from control.addons.kube_targets import KubeExporterTargets
from control.addons.postgres import PostgresAddons
from control.addons.search import SearchAddons
from control.addons.watchdog import PostgresWatchdog, registry_tenants
from control.agent_target import AgentLink, AgentTarget, LocalAgent
from control.api.app import build_app
from control.api.terminal import Limits as TerminalLimits
from control.attachments import TargetsWriter
from control.backups.service import Backups, backups_for
from control.builders import build_builds
from control.building import Builds
from control.builds.model import LogSink, NoSink
from control.dashboard.addon_health import HealthSources
from control.dashboard.app import ROOT as DASHBOARD_ROOT
from control.dashboard.app import Dashboard, build_dashboard
from control.dashboard.live import AgentStates
from control.dashboard.users import Users
from control.dashboard.web import ReviewBoard
from control.errors import Conflict, ControlError
from control.livelogs import upstream_from_settings
from control.models import Addon
from control.provisioning import backup_jobs, kube_provisioners, provisioners
from control.releasing import ReleaseTarget
from control.review.apply import ControlReviewApps
from control.review.deliveries import DeliveryRunner
from control.review.github import PushEvent, Repository
from control.review.pipelines import StoredPipeline, StoredPipelines, branch_head
from control.review.plan import Pipeline
from control.review.records import ReviewRecords
from control.review.source import GitAppJson
from control.review.stale import StaleReviewApps
from control.review.statuses import GitHubStatuses
from control.review.webhook import WebhookConfig, WebhookSlot, slot_webhook_app
from control.rollup.source import RequestSource
from control.service import Control
from control.settings import (
    ControlSettings,
    ReviewSettings,
)
from control.store.db import Store, safe_url
from kit.spawn import Confiner
from kit.tasks import TaskSet

log = logging.getLogger(__name__)


def _both(first: TargetsWriter, second: TargetsWriter) -> TargetsWriter:
    async def write(addons: list[Addon]) -> None:
        await first(addons)
        await second(addons)

    return write


def build_control(
    settings: ControlSettings,
    *,
    target: ReleaseTarget,
    addon_prefix: str = "slipway_",
    sink: LogSink | None = None,
    kube_api: kube_client.ApiClient | None = None,
) -> Control:
    """The service as ``slipway up`` and ``serve control`` both wire it."""
    targets_dir = settings.exporter_targets_dir
    writer: TargetsWriter | None = None
    if targets_dir is not None:
        directory = Path(targets_dir)

        servers = exporter_targets.Servers(
            postgres_dsn_env=settings.exporter_postgres_dsn_env,
            redis_dsn_env=settings.exporter_redis_dsn_env,
            kubernetes=settings.kube_addons is not None,
        )

        async def to_files(addons: list[Addon]) -> None:
            await exporter_targets.write(directory, addons, servers)

        writer = to_files
    kube = settings.kube_addons
    if kube is not None and kube.exporter_secrets and kube_api is not None:
        secrets = KubeExporterTargets(
            kube_api, namespace=kube.objects.platform_namespace, secrets=kube.exporter_secrets
        )
        writer = secrets if writer is None else _both(writer, secrets)

    found = provisioners(settings, prefix=addon_prefix)
    if isinstance(target, AgentTarget) and isinstance(target.link, LocalAgent):
        # Dedicated instances are redis-server processes of the local agent; on Kubernetes
        # they need an image, a Service and a NetworkPolicy (docs/control.md, design).
        found["redis"] = DedicatedRedis(target.link, shared=found.get("redis"))
        found["search"] = SearchAddons(target.link)
    if settings.kube_addons is not None:
        if kube_api is None:
            raise ControlError("dedicated add-ons on Kubernetes need an API client (kube_api)")
        found.update(kube_provisioners(found, kube_api, settings.kube_addons))
    return Control(
        store=Store.open(settings.db_url),
        target=target,
        provisioners=found,
        targets_writer=writer,
        app_domain=settings.app_domain,
        reserved_domains=[settings.review.domain] if settings.review else [],
        limits=settings.limits,
        app_tokens_refused=settings.app_tokens_refused,
        sink=sink,  # the release phase's lines join the app's log stream
    )


async def _to_dashboard(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(DASHBOARD_ROOT + "/")


class ControlServer:
    """The API listening, the store migrated, the target resumed; started and stopped in order."""

    def __init__(
        self,
        control: Control,
        settings: ControlSettings,
        *,
        registry: CollectorRegistry,
        builds: Builds | None = None,
        sink: LogSink | None = None,
        subapps: Mapping[str, web.Application] | None = None,
        requests: RequestSource | None = None,
        backups: Backups | None = None,
    ) -> None:
        self.control = control
        self.settings = settings
        self.port = settings.port
        self._builds = builds
        self._started = False
        app = build_app(
            control,
            registry=registry,
            ready=self._ready,
            builds=builds,
            sink=sink,
            requests=requests,
            backups=backups,
            terminals=TerminalLimits(
                idle=settings.run_idle_timeout, total=settings.run_tty_timeout
            ),
        )
        for prefix, subapp in (subapps or {}).items():
            # No bearer token there: such an app checks its callers itself (a signature,
            # the dashboard's session cookie).
            app.add_subapp(prefix, subapp)
        if DASHBOARD_ROOT in (subapps or {}):
            app.router.add_get("/", _to_dashboard)
            app.router.add_get(DASHBOARD_ROOT, _to_dashboard)
        self._runner = web.AppRunner(app, access_log=None)

    def _ready(self) -> str | None:
        return None if self._started else "migrating the state store"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        # Port 0 (tests) binds a free one: read back which.
        self.port = self._runner.addresses[0][1]
        await self.control.start(
            bootstrap_admin_token=self.settings.bootstrap_admin_token,
            fail_builds=self._builds is None,
        )
        if self._builds is not None:
            await self._builds.resume()
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
        tasks: TaskSet | None = None,
        confiner: Confiner | None = None,
        requests: RequestSource | None = None,
        kube_api: kube_client.ApiClient | None = None,
    ) -> None:
        """``tasks``: the process's task set (the review apps' scheduler runs there);
        ``requests``: what the request charts read (the rollup, or Prometheus);
        ``kube_api``: the client dedicated add-ons are made through when
        ``settings.kube_addons`` is set (``kube_addons_client``); closed at ``stop()``."""
        self.target = target
        self.kube_api = kube_api
        self.control = build_control(
            settings, target=self.target, addon_prefix=addon_prefix, sink=sink, kube_api=kube_api
        )
        self.builds = build_builds(
            self.control, settings, sink=sink, registry=registry, confiner=confiner
        )
        self.review: ControlReviewApps | None = None
        self.deliveries: DeliveryRunner | None = None
        self.stale: StaleReviewApps | None = None
        subapps: dict[str, web.Application] = {}
        if settings.review is not None and self.builds is None:
            raise ControlError(
                "review apps need a builder: set SLIPWAY_BUILD_ROOT (local builds) or "
                "SLIPWAY_BUILDER=kubernetes, or unset SLIPWAY_GITHUB_WEBHOOK_SECRET"
            )
        #: The connected pipeline's secret and runner, which /github/webhooks reads: the
        #: environment's (set here), else the one connected from the dashboard (stored).
        self.webhook = WebhookSlot()
        self._review_sink = sink or NoSink()
        self._pipelines = StoredPipelines(self.control.store)
        self._started = False
        if self.builds is not None:
            subapps["/github"] = slot_webhook_app(self.webhook, registry=registry)
        self.dashboard = Dashboard(
            control=self.control,
            users=Users(store=self.control.store),
            logs=upstream_from_settings(settings),
            requests=requests,
            # The exporters' /probe, else Prometheus (docs/dashboard.md, "Add-on health").
            addon_health=HealthSources.from_env(os.environ),
            # The environment's pipeline wins: no form to connect another then.
            connect=self.connect if settings.review is None and self.builds is not None else None,
            builds=self.builds,
        )
        if settings.review is not None:
            self._attach(settings.review)
        subapps[DASHBOARD_ROOT] = build_dashboard(self.dashboard)
        #: pg:backups and its scheduler (docs/backups.md); None without a bucket.
        self.backups = backups_for(
            settings.backups,
            store=self.control.store,
            admin_dsn=settings.addons.postgres_admin_dsn,
            sink=sink,
            registry=registry,
            launcher=backup_jobs(settings, kube_api),
            # Dedicated Postgres instances are backed up as their own admin, shared or not.
            dedicated=settings.kube_addons is not None,
        )
        self.dashboard.addon_health.backups = self.backups
        if self.backups is not None:  # an add-on's schedule and CronJob go with it
            self.control.addons.before_destroy.append(self.backups.forget_addon)
        self.server = ControlServer(
            self.control,
            settings,
            registry=registry,
            builds=self.builds,
            subapps=subapps,
            sink=sink,  # detached one-off runs' output (`slipway run --detach`)
            requests=requests,
            backups=self.backups,
        )
        #: Its own long-lived tasks (the stale review apps' scheduler, the postgres watchdog),
        #: in the process's set.
        self.tasks = TaskSet.of(tasks)
        self.watchdog: PostgresWatchdog | None = None
        postgres = self.control.provisioners.get("postgres")
        if isinstance(postgres, KubeOrShared):
            postgres = postgres.shared  # the watchdog is the shared server's
        if settings.addons.postgres_admin_dsn and isinstance(postgres, PostgresAddons):
            self.watchdog = PostgresWatchdog(
                admin_dsn=settings.addons.postgres_admin_dsn,
                tenants=registry_tenants(self.control.store, postgres.plans),
            )

    @property
    def port(self) -> int:
        return self.server.port

    def _attach(self, review: ReviewSettings) -> ReviewBoard:
        """Review apps for ``review``, whichever way it came: the webhook, board and scheduler."""
        assert self.builds is not None
        self.review, self.deliveries, self.stale = build_review(
            self.builds, review, sink=self._review_sink, slot=self.webhook
        )
        domains = self.control.domains
        if review.domain not in domains.reserved_domains:  # pr-N.DOMAIN is no tenant's to claim
            domains.reserved_domains = (*domains.reserved_domains, review.domain)
        records = ReviewRecords(self.control.store)
        board = ReviewBoard(review, review_pipeline(review), records, self.deliveries, self.builds)
        self.dashboard.review = board
        return board

    async def connect(self, stored: StoredPipeline, actor: str) -> None:
        """Connect a repository from the dashboard: store it, attach its review apps, and
        deploy its branch's head to the staging app as a push to it would.

        The branch is asked for first (Unprocessable when it cannot be read), so nothing is
        stored for a repository this control plane cannot build from.
        """
        if self.dashboard.review is not None:
            raise Conflict("a repository is connected already", id="conflict")
        head = await branch_head(stored.repo_url, stored.branch)
        await self._pipelines.add(stored)
        self._attach(stored.settings())
        assert self.deliveries is not None
        assert self.stale is not None
        if self._started:
            self.tasks.start("review-stale", self.stale.run())
        with contextlib.suppress(Conflict):  # an app of that name already: it becomes staging
            await self.control.create_app(stored.staging_app, actor=actor)
        push = PushEvent(
            branch=stored.branch,
            after=head,
            repository=Repository(stored.name, stored.repo_url, default_branch=stored.branch),
        )
        await self.deliveries.accept(f"connect-{uuid.uuid4()}", "push", push)

    async def start(self) -> None:
        started = time.time()
        await self.server.start()  # the store is migrated from here on
        if self.builds is not None and self.dashboard.review is None:
            stored = await self._pipelines.get()
            if stored is not None:
                self._attach(stored.settings())
        self._started = True
        if self.deliveries is not None:
            await self.deliveries.start(since=started)
        if self.stale is not None:
            self.tasks.start("review-stale", self.stale.run())
        if self.watchdog is not None:
            self.tasks.start("postgres-watchdog", self.watchdog.run())
        if self.backups is not None:
            self.tasks.start("pg-backups", self.backups.run())

    async def stop(self) -> None:
        await self.tasks.stop()
        search = self.control.provisioners.get("search")
        if isinstance(search, SearchAddons):
            await search.close()  # its proxies listen in this process
        if self.backups is not None:
            await self.backups.close()
        if self.review is not None:
            await self.review.close()
        if self.deliveries is not None:
            await self.deliveries.close()
        if self.builds is not None:
            await self.builds.close()
        await self.server.stop()
        if self.kube_api is not None:
            await self.kube_api.close()


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
        tasks: TaskSet | None = None,
        confiner: Confiner | None = None,
        requests: RequestSource | None = None,
    ) -> None:
        super().__init__(
            settings,
            target=AgentTarget(link, release_timeout=settings.release_timeout),
            registry=registry,
            addon_prefix=addon_prefix,
            sink=sink,
            tasks=tasks,
            confiner=confiner,  # builds run confined as their app's processes do
            requests=requests,
        )
        self.dashboard.live = (
            AgentStates(link.agent) if isinstance(link, LocalAgent) else (self.dashboard.live)
        )
        #: The first admin's password when this start made them (shown once by `slipway up`).
        self.first_admin_password: str | None = None

    async def start(self) -> None:
        await super().start()
        self.first_admin_password = await self.dashboard.users.ensure_first_admin()


def review_pipeline(settings: ReviewSettings) -> Pipeline:
    return Pipeline(
        name=settings.pipeline,
        domain=settings.domain,
        staging_app=settings.staging_app,
        stale_after_days=settings.stale_after_days,
        branch=settings.branch,
    )


def build_review(
    builds: Builds,
    settings: ReviewSettings,
    *,
    sink: LogSink,
    slot: WebhookSlot,
) -> tuple[ControlReviewApps, DeliveryRunner, StaleReviewApps]:
    """Review apps: the plans' runner, the deliveries', the stale-app task; ``slot`` (what
    /github/webhooks reads) gets the secret and the deliveries' runner. One path for the
    environment's pipeline and a stored one (``StoredPipeline.settings``)."""
    pipeline = review_pipeline(settings)
    review = ControlReviewApps(builds.control, builds, sink=sink)
    records = ReviewRecords(builds.control.store)
    deliveries = DeliveryRunner(
        review,
        records,
        pipeline=pipeline,
        app_json=GitAppJson(),
        sink=sink,
        statuses=(
            GitHubStatuses(settings.github_token, api_url=settings.github_api_url)
            if settings.github_token
            else None
        ),
    )
    stale = StaleReviewApps(builds, deliveries, pipeline=pipeline, records=records)
    slot.config = WebhookConfig(secret=settings.webhook_secret.encode(), branch=settings.branch)
    slot.deliveries = deliveries
    return review, deliveries, stale
