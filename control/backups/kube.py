"""Backups on Kubernetes: a capture is a Job, a schedule a CronJob, of the control plane's image.

The Job runs ``slipway pg-backups run APP BACKUP``, a restore's Job
``slipway pg-backups restore ... --record ID`` and the CronJob's Jobs
``slipway pg-backups tick APP ADDON`` (``control/backups/cli.py``): the same
capture, verification, retention and records as in the control plane's
process, with its Secret as their env, so a control-plane restart or a
second replica neither interrupts nor repeats a backup. The manifests are
pure functions of the settings and the backup; ``KubeBackupJobs`` sends
them through kubernetes-asyncio and needs exactly ``RBAC`` in the control
plane's namespace (the chart's ``slipway-control-backups`` Role).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from control.addons.kube_dedicated import BACKUP_LABEL
from control.backups.records import Backup, Restore, Schedule
from control.backups.settings import BackupSettings, KubeBackupSettings
from control.errors import ApiError

log = logging.getLogger(__name__)

Manifest = dict[str, Any]

#: (apiGroup, resource) -> verbs: what this module calls, and nothing else.
RBAC: dict[tuple[str, str], tuple[str, ...]] = {
    ("batch", "jobs"): ("create", "delete"),
    ("batch", "cronjobs"): ("create", "update", "delete"),
}
#: Every backup object's ``app.kubernetes.io/name``.
NAME = "slipway-pg-backup"
#: Which app and backup (or add-on) an object is about, for people reading the cluster.
APP_ANNOTATION = "slipway.dev/backup-app"
BACKUP_ANNOTATION = "slipway.dev/backup"
#: A finished Job stays a day, for its pod's log; the record in the store is the history.
TTL_AFTER_FINISHED = 86400
#: A scheduled run the CronJob controller missed (it was down) still starts within an
#: hour; past that the day is skipped and the staleness alarm says so.
STARTING_DEADLINE = 3600
#: One API call's bound, seconds: a request must not hang on an unanswering apiserver.
CALL_TIMEOUT = 30
#: The pods' non-root identity: the chart's podSecurityContext.
UID = 10001


class JobsUnavailable(ApiError):
    """The Kubernetes API refused or did not answer a backup Job's call."""

    status = 503
    default_id = "backup_jobs_unavailable"


def job_name(backup: Backup) -> str:
    """One Job per backup record: its id is unique in the store."""
    return f"{NAME}-{backup.id}"


def restore_job_name(restore: Restore) -> str:
    """One Job per restore record."""
    return f"{NAME}-restore-{restore.id}"


def cron_job_name(app: str, addon: str) -> str:
    """One CronJob per (app, add-on); a digest keeps it within the 52 characters a
    CronJob's name may have, whatever the names."""
    digest = hashlib.sha256(f"{app}/{addon}".encode()).hexdigest()[:12]
    return f"{NAME}s-{digest}"


def cron_spec(hour: int, minute: int) -> str:
    return f"{minute} {hour} * * *"


def _labels(resource: str) -> dict[str, str]:
    # The dedicated add-ons' NetworkPolicy admits pods of the platform's namespace that
    # carry BACKUP_LABEL with the add-on's resource name (kube_dedicated.ingress_policy).
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/managed-by": "slipway",
        BACKUP_LABEL: resource,
    }


def _env(settings: BackupSettings) -> list[Manifest]:
    """What the control plane holds outside its Secret, given to the Job as values; the
    Secret (envFrom) brings the store's URL, the admin DSN, the backup key and S3's
    credentials."""
    values = {
        "SLIPWAY_BACKUP_BUCKET": settings.bucket,
        "SLIPWAY_BACKUP_PREFIX": settings.key_prefix,
        "SLIPWAY_BACKUP_S3_ENDPOINT": settings.endpoint_url or "",
        "SLIPWAY_BACKUP_S3_REGION": settings.region or "",
        # The Job captures in its own process: it makes no Jobs.
        "SLIPWAY_BACKUP_KUBERNETES": "false",
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def _job_spec(
    settings: BackupSettings, kube: KubeBackupSettings, args: list[str], resource: str
) -> Manifest:
    pod: Manifest = {
        "restartPolicy": "Never",
        # No API access: the Job talks to the store, Postgres and S3 only.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "pg-backup",
                "image": kube.image,
                "args": args,
                "env": _env(settings),
                "envFrom": [{"secretRef": {"name": kube.env_secret}}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                # A capture's memory is flat (docs/backups.md: about 110 MB at any size).
                "resources": {
                    "requests": {"cpu": "250m", "memory": "256Mi"},
                    "limits": {"memory": "512Mi"},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if kube.service_account:
        pod["serviceAccountName"] = kube.service_account
    if kube.pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in kube.pull_secrets]
    return {
        # A failed capture is a failed record, not a retry: a new one is a new backup.
        "backoffLimit": 0,
        "activeDeadlineSeconds": kube.deadline,
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
        "template": {"metadata": {"labels": _labels(resource)}, "spec": pod},
    }


def job(backup: Backup, settings: BackupSettings, kube: KubeBackupSettings) -> Manifest:
    """The Job that captures and verifies ``backup`` (recorded ``running``)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(backup),
            "namespace": kube.namespace,
            "labels": _labels(backup.resource),
            "annotations": {APP_ANNOTATION: backup.app, BACKUP_ANNOTATION: backup.name},
        },
        "spec": _job_spec(
            settings, kube, ["pg-backups", "run", backup.app, backup.name], backup.resource
        ),
    }


def restore_job(
    restore: Restore, resource: str, settings: BackupSettings, kube: KubeBackupSettings
) -> Manifest:
    """The Job that restores into ``restore``'s add-on (``resource``, whose NetworkPolicy
    its label passes) and settles the record."""
    args = ["pg-backups", "restore", restore.source_app, restore.backup, restore.app]
    args += [restore.addon, "--record", str(restore.id)]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": restore_job_name(restore),
            "namespace": kube.namespace,
            "labels": _labels(resource),
            "annotations": {
                APP_ANNOTATION: restore.app,
                BACKUP_ANNOTATION: f"{restore.source_app}::{restore.backup}",
            },
        },
        "spec": _job_spec(settings, kube, args, resource),
    }


def cron_job(
    item: Schedule, resource: str, settings: BackupSettings, kube: KubeBackupSettings
) -> Manifest:
    """The CronJob of ``item``: at its wall-clock time in its zone, one run at a time."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cron_job_name(item.app, item.addon),
            "namespace": kube.namespace,
            "labels": _labels(resource),
            "annotations": {APP_ANNOTATION: item.app, BACKUP_ANNOTATION: item.addon},
        },
        "spec": {
            "schedule": cron_spec(item.hour, item.minute),
            "timeZone": item.timezone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": _labels(resource)},
                "spec": _job_spec(
                    settings, kube, ["pg-backups", "tick", item.app, item.addon], resource
                ),
            },
        },
    }


class KubeBackupJobs:
    """Starts, cancels and schedules backups and restores as Jobs (the ``Launcher`` of
    ``Backups``)."""

    def __init__(self, api: client.ApiClient, *, settings: BackupSettings) -> None:
        if settings.kube is None:
            raise ValueError("KubeBackupJobs needs settings.kube")
        # Any: the manifests are plain dicts, which the client sends as they are.
        self._batch: Any = client.BatchV1Api(api)
        self._settings = settings
        self._kube = settings.kube

    @property
    def deadline(self) -> float:
        return float(self._kube.deadline)

    async def start(self, backup: Backup) -> None:
        manifest = job(backup, self._settings, self._kube)
        async with _refused(f"the backup Job {manifest['metadata']['name']}"):
            await self._batch.create_namespaced_job(
                self._kube.namespace, manifest, _request_timeout=CALL_TIMEOUT
            )
        log.info("backup job created", extra={"app": backup.app, "backup": backup.name})

    async def start_restore(self, restore: Restore, resource: str) -> None:
        manifest = restore_job(restore, resource, self._settings, self._kube)
        async with _refused(f"the restore Job {manifest['metadata']['name']}"):
            await self._batch.create_namespaced_job(
                self._kube.namespace, manifest, _request_timeout=CALL_TIMEOUT
            )
        log.info("restore job created", extra={"app": restore.app, "backup": restore.backup})

    async def cancel(self, item: Backup | Restore) -> None:
        """Delete the capture's or restore's Job and its pod (which gets SIGTERM); gone
        already is fine."""
        name = restore_job_name(item) if isinstance(item, Restore) else job_name(item)
        what = "restore" if isinstance(item, Restore) else "backup"
        async with _refused(f"deleting the {what} Job {name}", missing_ok=True):
            await self._batch.delete_namespaced_job(
                name,
                self._kube.namespace,
                propagation_policy="Background",
                _request_timeout=CALL_TIMEOUT,
            )

    async def schedule(self, item: Schedule, resource: str) -> None:
        """Create the schedule's CronJob, or replace it (a new time or retention)."""
        manifest = cron_job(item, resource, self._settings, self._kube)
        name = manifest["metadata"]["name"]
        try:
            async with _refused(f"the backup CronJob {name}", exists=True):
                await self._batch.create_namespaced_cron_job(
                    self._kube.namespace, manifest, _request_timeout=CALL_TIMEOUT
                )
        except _Exists:
            async with _refused(f"the backup CronJob {name}"):
                await self._batch.replace_namespaced_cron_job(
                    name, self._kube.namespace, manifest, _request_timeout=CALL_TIMEOUT
                )

    async def unschedule(self, app: str, addon: str) -> None:
        name = cron_job_name(app, addon)
        async with _refused(f"deleting the backup CronJob {name}", missing_ok=True):
            await self._batch.delete_namespaced_cron_job(
                name,
                self._kube.namespace,
                propagation_policy="Background",
                _request_timeout=CALL_TIMEOUT,
            )


class _Exists(Exception):
    pass


class _refused:
    """The one place kubernetes-asyncio's errors become JobsUnavailable."""

    def __init__(self, what: str, *, missing_ok: bool = False, exists: bool = False) -> None:
        self._what = what
        self._missing_ok = missing_ok
        self._exists = exists

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, ApiException):
            if exc.status == 404 and self._missing_ok:
                return True
            if exc.status == 409 and self._exists:
                raise _Exists from None
            raise JobsUnavailable(
                f"{self._what} was refused by the Kubernetes API ({exc.status} {exc.reason})"
            ) from exc
        if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
            raise JobsUnavailable(
                f"{self._what}: the Kubernetes API did not answer ({type(exc).__name__})"
            ) from exc
        return False
