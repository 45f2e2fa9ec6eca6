"""Which add-on provisioners and backup launcher the settings ask for, and the Kubernetes API
client they share.

Shared Postgres and Redis servers from ``settings.addons``; with ``settings.kube_addons``,
dedicated plans as objects on a cluster (``KubeOrShared`` keeps shared plans, and add-ons
made before, on their servers); with ``settings.backups.kube``, backups as Jobs and
CronJobs. ``control.server`` composes the control plane from these.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubernetes_asyncio import client as kube_client

from control.addons import Provisioner
from control.addons.kube_dedicated import Kind
from control.addons.kube_objects import KubeAddonObjects, KubeDedicated, KubeOrShared
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.backups.kube import KubeBackupJobs
from control.errors import ControlError
from control.settings import ControlSettings, KubeAddons
from kit.kube import KubeError, api_client


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


async def kube_addons_client(config: KubeAddons | None) -> kube_client.ApiClient:
    """The API client dedicated add-ons and backup Jobs are made through (the pod's
    service account, or ``config.kubeconfig``); ControlError when neither is usable.
    The caller closes it."""
    try:
        return await api_client(config.kubeconfig if config is not None else None)
    except KubeError as exc:
        raise ControlError(
            f"dedicated add-ons or backup Jobs on Kubernetes: {exc}; run in a pod with the chart's "
            "control.addons.kubernetes on, or set SLIPWAY_ADDON_KUBECONFIG"
        ) from None


def backup_jobs(
    settings: ControlSettings, api: kube_client.ApiClient | None
) -> KubeBackupJobs | None:
    """Backups as Jobs and CronJobs when ``settings.backups.kube`` says so."""
    if settings.backups is None or settings.backups.kube is None:
        return None
    if api is None:
        raise ControlError("backups on Kubernetes need an API client (kube_api)")
    return KubeBackupJobs(api, settings=settings.backups)


def needs_kube_api(settings: ControlSettings) -> bool:
    """Whether the control plane makes objects through the Kubernetes API."""
    backups = settings.backups
    return settings.kube_addons is not None or (backups is not None and backups.kube is not None)


def kube_provisioners(
    found: Mapping[str, Provisioner], api: kube_client.ApiClient, config: KubeAddons
) -> dict[str, Provisioner]:
    """Postgres, Redis and search with their dedicated plans on Kubernetes, any shared
    plan (and any add-on made before) still on its shared server."""
    objects = KubeAddonObjects(api, settings=config.objects)
    return {
        kind.value: KubeOrShared(KubeDedicated(objects, kind=kind), shared=found.get(kind.value))
        for kind in Kind
    }
