"""Settings of the control plane, built once at the entry point from flags and ``SLIPWAY_*``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default_field

from control.addons.kube_dedicated import Kind, KubeAddonSettings
from control.backups.settings import BackupSettings
from control.builds.egress import Egress
from control.builds.settings import CNBSettings
from control.rules import MAX_QUANTITY
from kit.durations import parse_duration

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
class Limits:
    """What one app may ask of the platform through the API, by token kind.

    An app token is a tenant's: its ceilings keep one app from taking the
    machine; an admin's are higher, but still bounded.
    """

    #: Processes one app may run with an app token: the sum over its process types of
    #: quantity (or min_scale, when higher), and any max_scale (SLIPWAY_MAX_PROCESSES_PER_APP).
    processes_per_app: int = 10
    #: The same ceiling for an admin token (SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN), at most
    #: MAX_QUANTITY.
    processes_per_app_admin: int = MAX_QUANTITY
    #: Bytes of a source tarball uploaded with an app token (SLIPWAY_MAX_UPLOAD_BYTES):
    #: 500 MiB is Heroku's slug limit, far past any source worth building.
    upload_bytes: int = 500 * 1024**2
    #: The same for an admin token (SLIPWAY_MAX_UPLOAD_BYTES_ADMIN).
    upload_bytes_admin: int = 2 * 1024**3

    def __post_init__(self) -> None:
        if not 1 <= self.processes_per_app <= self.processes_per_app_admin <= MAX_QUANTITY:
            raise ValueError(
                "process ceilings must be 1 <= SLIPWAY_MAX_PROCESSES_PER_APP <= "
                f"SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN <= {MAX_QUANTITY}, not "
                f"{self.processes_per_app} and {self.processes_per_app_admin}"
            )
        if not 1 <= self.upload_bytes <= self.upload_bytes_admin:
            raise ValueError(
                "upload caps must be 1 <= SLIPWAY_MAX_UPLOAD_BYTES <= "
                "SLIPWAY_MAX_UPLOAD_BYTES_ADMIN"
            )

    def processes(self, *, admin: bool) -> tuple[int, str]:
        """The process ceiling for a token kind, and the variable that raises it."""
        if admin:
            return self.processes_per_app_admin, "SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN"
        return self.processes_per_app, "SLIPWAY_MAX_PROCESSES_PER_APP"

    def upload(self, *, admin: bool) -> tuple[int, str]:
        """The upload cap for a token kind, and the variable that raises it."""
        if admin:
            return self.upload_bytes_admin, "SLIPWAY_MAX_UPLOAD_BYTES_ADMIN"
        return self.upload_bytes, "SLIPWAY_MAX_UPLOAD_BYTES"


def limits_from_env(environ: Mapping[str, str]) -> Limits:
    """Limits as ``SLIPWAY_MAX_*`` set them; unset ones keep the defaults."""
    defaults = Limits()
    values: dict[str, int] = {}
    for field, variable in (
        ("processes_per_app", "SLIPWAY_MAX_PROCESSES_PER_APP"),
        ("processes_per_app_admin", "SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN"),
        ("upload_bytes", "SLIPWAY_MAX_UPLOAD_BYTES"),
        ("upload_bytes_admin", "SLIPWAY_MAX_UPLOAD_BYTES_ADMIN"),
    ):
        raw = environ.get(variable) or str(getattr(defaults, field))
        if not raw.isascii() or not raw.isdigit():
            raise ValueError(f"{variable} must be a whole number, not {raw!r}")
        values[field] = int(raw)
    return Limits(**values)


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
    #: Seconds an interactive ``slipway run`` may go with no byte either way (Heroku: 1 h),
    #: and may last in all (a one-off's day); control/api/terminal.py.
    run_idle_timeout: float = 3600.0
    run_tty_timeout: float = 86400.0
    #: Builds by this control plane; None: POST /apps/{app}/builds answers 503.
    builds: BuildServerSettings | None = None
    #: Review apps from a GitHub webhook (needs builds); None: no /github/webhooks.
    review: ReviewSettings | None = None
    #: Ceilings on what one app may ask for, by token kind.
    limits: Limits = Limits()
    #: Why app tokens are refused (their app's processes would run unconfined, see
    #: kit/spawn.py); None: they work. The admin token works either way.
    app_tokens_refused: str | None = None
    #: Postgres backups (docs/backups.md); None: off, the pg:backups routes answer 503.
    backups: BackupSettings | None = None
    #: Dedicated add-ons as StatefulSets on Kubernetes; None: off (the chart's
    #: ``control.addons.kubernetes``).
    kube_addons: KubeAddons | None = None


@dataclass(frozen=True, slots=True)
class KubeAddons:
    """Dedicated add-ons on Kubernetes (docs/control.md, "Dedicated instances on Kubernetes")."""

    #: Where they run and who may reach them.
    objects: KubeAddonSettings
    #: A kubeconfig to reach the API with; None: the pod's service account (or $KUBECONFIG
    #: outside a pod).
    kubeconfig: str | None = None
    #: Service (postgres, redis) -> the Secret in the platform's namespace its exporter
    #: mounts as its add-on targets (addons/kube_targets.py); a service absent: not written.
    exporter_secrets: Mapping[str, str] = default_field(default_factory=dict)


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
    #: A token that may write commit statuses (SLIPWAY_GITHUB_TOKEN); None: no statuses sent.
    github_token: str | None = None
    #: GitHub's REST API (SLIPWAY_GITHUB_API_URL), for GitHub Enterprise Server.
    github_api_url: str = "https://api.github.com"
    #: The branch whose pushes deploy staging; None: the repository's default branch
    #: (a repository connected from the dashboard names it).
    branch: str | None = None


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
    #: Inward addresses a tenant's source may still be fetched from
    #: (SLIPWAY_SOURCES_ALLOW_PRIVATE, SLIPWAY_SOURCES_ALLOW; control/builds/egress.py).
    egress: Egress = default_field(default_factory=Egress)


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
        github_token=environ.get("SLIPWAY_GITHUB_TOKEN") or None,
        github_api_url=environ.get("SLIPWAY_GITHUB_API_URL") or "https://api.github.com",
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
        egress=Egress.from_env(environ),
    )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = (environ.get(name) or "false").lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value == "true"


def cnb_settings_from_env(environ: Mapping[str, str], *, timeout: float) -> CNBSettings:
    """The build Jobs' settings from ``SLIPWAY_CNB_*``; unset ones keep CNBSettings' defaults."""
    defaults = CNBSettings()
    return CNBSettings(
        namespace=environ.get("SLIPWAY_CNB_NAMESPACE") or defaults.namespace,
        builder_image=environ.get("SLIPWAY_CNB_BUILDER_IMAGE") or defaults.builder_image,
        registry=environ.get("SLIPWAY_CNB_REGISTRY") or defaults.registry,
        pull_registry=environ.get("SLIPWAY_CNB_PULL_REGISTRY") or None,
        insecure_registry=_flag(environ, "SLIPWAY_CNB_INSECURE_REGISTRY"),
        # Set and empty: a registry without credentials (unset keeps the default Secret).
        registry_secret=environ.get("SLIPWAY_CNB_REGISTRY_SECRET", defaults.registry_secret)
        or None,
        run_image=environ.get("SLIPWAY_CNB_RUN_IMAGE") or None,
        git_image=environ.get("SLIPWAY_CNB_GIT_IMAGE") or defaults.git_image,
        service_account=environ.get("SLIPWAY_CNB_SERVICE_ACCOUNT") or defaults.service_account,
        # Kubernetes' own deadline backs up the builder's: a control plane that died
        # mid-build still leaves no build running for ever.
        active_deadline=max(1, int(timeout)),
    )


#: The exporters that scrape dedicated add-ons, by the variable holding their pod labels.
_EXPORTER_LABELS = {
    Kind.POSTGRES: "SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_POSTGRES",
    Kind.REDIS: "SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_REDIS",
}
_EXPORTER_SECRETS = {
    Kind.POSTGRES: "SLIPWAY_ADDON_KUBE_EXPORTER_SECRET_POSTGRES",
    Kind.REDIS: "SLIPWAY_ADDON_KUBE_EXPORTER_SECRET_REDIS",
}


def _labels(environ: Mapping[str, str], name: str) -> dict[str, str]:
    """``k=v,k=v`` (as ``kubectl -l`` takes a selector) into labels."""
    out: dict[str, str] = {}
    for pair in filter(None, (environ.get(name) or "").split(",")):
        key, sep, value = pair.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"{name} must be key=value pairs separated by commas, not {pair!r}")
        out[key] = value
    return out


def kube_addons_from_env(environ: Mapping[str, str]) -> KubeAddons | None:
    """Dedicated add-ons on Kubernetes from ``SLIPWAY_ADDON_KUBE*``; None unless switched on."""
    if not _flag(environ, "SLIPWAY_ADDON_KUBERNETES"):
        return None
    namespace = environ.get("SLIPWAY_ADDON_KUBE_NAMESPACE") or ""
    platform = environ.get("SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE") or ""
    if not namespace or not platform:
        raise ValueError(
            "SLIPWAY_ADDON_KUBERNETES=true needs SLIPWAY_ADDON_KUBE_NAMESPACE (the apps' "
            "namespace) and SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE (the exporters' namespace)"
        )
    return KubeAddons(
        objects=KubeAddonSettings(
            namespace=namespace,
            platform_namespace=platform,
            exporter_labels={
                kind: labels
                for kind, name in _EXPORTER_LABELS.items()
                if (labels := _labels(environ, name))
            },
            storage_class=environ.get("SLIPWAY_ADDON_KUBE_STORAGE_CLASS") or None,
        ),
        kubeconfig=environ.get("SLIPWAY_ADDON_KUBECONFIG") or None,
        exporter_secrets={
            kind.value: secret
            for kind, name in _EXPORTER_SECRETS.items()
            if (secret := environ.get(name, "").strip())
        },
    )
