"""Settings of the control plane, built once at the entry point from flags and ``SLIPWAY_*``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from control.builds.settings import CNBSettings
from control.kit.durations import parse_duration

#: The embedded default: one file beside where slipway runs.
DEFAULT_DB_URL = "sqlite+aiosqlite:///slipway.db"


@dataclass(frozen=True, slots=True)
class AddonServers:
    """The shared servers add-ons are carved out of."""

    #: Admin DSN of the shared PostgreSQL (a superuser or CREATEROLE+CREATEDB role);
    #: None disables the postgres add-on.
    postgres_admin_dsn: str | None = None
    #: Host and port apps use to reach that server (may differ from the admin's view).
    postgres_public_host: str = "127.0.0.1"
    postgres_public_port: int = 5432
    #: Admin URL of the shared Redis (a user allowed ACL SETUSER/DELUSER);
    #: None disables the redis add-on.
    redis_admin_url: str | None = None
    redis_public_host: str = "127.0.0.1"
    redis_public_port: int = 6379


@dataclass(frozen=True, slots=True)
class ControlSettings:
    #: SQLAlchemy async URL of the state store: ``sqlite+aiosqlite:///path`` on one
    #: machine, ``postgresql+psycopg://...`` on a cluster.
    db_url: str = DEFAULT_DB_URL
    host: str = "127.0.0.1"
    #: 8000: the conventional port of an HTTP API behind an ingress.
    port: int = 8000
    #: An admin token to make sure exists at start (its hash is stored, never the token);
    #: how the first operator gets in. None: mint one with ``slipway tokens:create``.
    bootstrap_admin_token: str | None = None
    addons: AddonServers = AddonServers()
    #: Every app answers at ``{app}.{app_domain}`` (``localhost`` under ``slipway up``).
    app_domain: str | None = None
    #: The agent that runs the apps (``http://agent:9081``); None: releases are recorded only.
    agent_url: str | None = None
    #: Directory where the exporters' targets files (and the DSN files they refer to)
    #: are rewritten after every add-on change. None: not written.
    exporter_targets_dir: str | None = None
    #: Names of the variables that hold monitoring DSNs of the shared servers in the
    #: exporters' environment; with one, add-ons are polled through the server target.
    exporter_postgres_dsn_env: str | None = None
    exporter_redis_dsn_env: str | None = None
    #: Seconds a ``release:`` command may run before the release fails.
    release_timeout: float = 300.0
    #: Builds by this control plane; None: POST /apps/{app}/builds answers 503.
    builds: BuildServerSettings | None = None
    #: Review apps from a GitHub webhook (needs builds); None: no /github/webhooks.
    review: ReviewSettings | None = None


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """One pipeline's review apps, fed by one GitHub webhook."""

    #: The webhook's shared secret (SLIPWAY_GITHUB_WEBHOOK_SECRET); deliveries not signed
    #: with it are refused.
    webhook_secret: str
    #: Review apps are ``{pipeline}-pr-{N}`` (SLIPWAY_REVIEW_PIPELINE).
    pipeline: str
    #: Review apps answer at ``pr-{N}.{domain}`` (SLIPWAY_REVIEW_DOMAIN).
    domain: str
    #: What a push to the default branch deploys (SLIPWAY_REVIEW_STAGING_APP).
    staging_app: str
    #: A review app with no push for this many days is destroyed (SLIPWAY_REVIEW_STALE_DAYS).
    stale_after_days: float = 5.0


@dataclass(frozen=True, slots=True)
class BuildServerSettings:
    """Builds run by the control plane: the local builder, or CNB Jobs on Kubernetes."""

    #: Build work, slugs and caches (SLIPWAY_BUILD_ROOT); with the Kubernetes builder only
    #: uploads go there, and None means no uploads.
    root: str | None
    #: Builds at once (SLIPWAY_BUILD_CONCURRENCY); the rest queue.
    concurrency: int = 2
    #: Seconds one build may take before it is killed (SLIPWAY_BUILD_TIMEOUT, Heroku: 15 min).
    timeout: float = 900.0
    #: The logs service's base URL, for a build's ``output_stream_url`` (SLIPWAY_LOGS_URL).
    logs_url: str | None = None
    #: Build as Kubernetes Jobs running the CNB lifecycle (SLIPWAY_BUILDER=kubernetes).
    cnb: CNBSettings | None = None


def review_settings_from_env(environ: Mapping[str, str]) -> ReviewSettings | None:
    """Review apps as the environment configures them; None unless a secret and domain are set."""
    secret = environ.get("SLIPWAY_GITHUB_WEBHOOK_SECRET")
    domain = environ.get("SLIPWAY_REVIEW_DOMAIN")
    if not secret or not domain:
        return None
    pipeline = environ.get("SLIPWAY_REVIEW_PIPELINE") or "review"
    return ReviewSettings(
        webhook_secret=secret,
        pipeline=pipeline,
        domain=domain,
        staging_app=environ.get("SLIPWAY_REVIEW_STAGING_APP") or f"{pipeline}-staging",
        stale_after_days=float(environ.get("SLIPWAY_REVIEW_STALE_DAYS") or 5.0),
    )


def build_settings_from_env(environ: Mapping[str, str]) -> BuildServerSettings | None:
    """Builds as the environment configures them.

    ``SLIPWAY_BUILDER`` is ``local`` (the default; needs ``SLIPWAY_BUILD_ROOT``, else
    None: no builds) or ``kubernetes`` (CNB Jobs, ``SLIPWAY_CNB_*``).
    """
    builder = environ.get("SLIPWAY_BUILDER") or "local"
    if builder not in ("local", "kubernetes"):
        raise ValueError(f"SLIPWAY_BUILDER must be local or kubernetes, not {builder!r}")
    root = environ.get("SLIPWAY_BUILD_ROOT") or None
    if builder == "local" and root is None:
        return None
    timeout = parse_duration(environ.get("SLIPWAY_BUILD_TIMEOUT") or "15m")
    return BuildServerSettings(
        root=root,
        concurrency=int(environ.get("SLIPWAY_BUILD_CONCURRENCY") or 2),
        timeout=timeout,
        logs_url=environ.get("SLIPWAY_LOGS_URL") or None,
        cnb=cnb_settings_from_env(environ, timeout=timeout) if builder == "kubernetes" else None,
    )


def cnb_settings_from_env(environ: Mapping[str, str], *, timeout: float) -> CNBSettings:
    """The build Jobs' settings from ``SLIPWAY_CNB_*``; unset ones keep CNBSettings' defaults."""
    defaults = CNBSettings()
    return CNBSettings(
        namespace=environ.get("SLIPWAY_CNB_NAMESPACE") or defaults.namespace,
        builder_image=environ.get("SLIPWAY_CNB_BUILDER_IMAGE") or defaults.builder_image,
        registry=environ.get("SLIPWAY_CNB_REGISTRY") or defaults.registry,
        registry_secret=environ.get("SLIPWAY_CNB_REGISTRY_SECRET") or defaults.registry_secret,
        run_image=environ.get("SLIPWAY_CNB_RUN_IMAGE") or None,
        git_image=environ.get("SLIPWAY_CNB_GIT_IMAGE") or defaults.git_image,
        service_account=environ.get("SLIPWAY_CNB_SERVICE_ACCOUNT") or defaults.service_account,
        # Kubernetes' own deadline backs up the builder's: a control plane that died
        # mid-build still leaves no build running for ever.
        active_deadline=max(1, int(timeout)),
    )
