"""Backups' settings, built once at the entry point from ``SLIPWAY_BACKUP_*``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from control.backups import objects

#: How long one backup Job may run (its activeDeadlineSeconds): a capture plus its
#: verification of the largest database the shared server is meant for, with room.
JOB_DEADLINE = 6 * 3600


@dataclass(frozen=True, slots=True)
class KubeBackupSettings:
    """Captures and schedules as Jobs and CronJobs of the control plane's image
    (docs/kubernetes.md, "Backup Jobs")."""

    #: Where the Jobs run: the control plane's namespace (SLIPWAY_BACKUP_KUBE_NAMESPACE).
    namespace: str
    #: The control plane's own image (SLIPWAY_BACKUP_KUBE_IMAGE): the same code runs there.
    image: str
    #: The Secret the control plane's env comes from (SLIPWAY_BACKUP_KUBE_SECRET): the
    #: store's URL, the add-on admin DSN, the backup key, S3 credentials.
    env_secret: str
    #: The pods' service account (SLIPWAY_BACKUP_KUBE_SERVICE_ACCOUNT): the control plane's,
    #: for its cloud identity to S3; its API token is never mounted. None: the default.
    service_account: str | None = None
    #: Image pull Secrets (SLIPWAY_BACKUP_KUBE_PULL_SECRETS, comma-separated).
    pull_secrets: tuple[str, ...] = ()
    #: activeDeadlineSeconds of each Job.
    deadline: int = JOB_DEADLINE


@dataclass(frozen=True, slots=True)
class BackupSettings:
    #: The S3 bucket backups go to (SLIPWAY_BACKUP_BUCKET); unset: backups are off.
    bucket: str
    #: Object keys start with this (SLIPWAY_BACKUP_PREFIX): one bucket may hold other things.
    key_prefix: str = "pg-backups/"
    #: Any S3-compatible endpoint (SLIPWAY_BACKUP_S3_ENDPOINT: MinIO, R2, moto); None: AWS.
    endpoint_url: str | None = None
    #: SLIPWAY_BACKUP_S3_REGION; None: boto3's own lookup (AWS_REGION, ...).
    region: str | None = None
    #: The secret the backup master key derives from (SLIPWAY_BACKUP_KEY; ``slipway up``:
    #: backup.key in the state directory). Lose it and no backup can be read.
    secret: str = ""
    #: S3 part size: memory per capture is about (objects.IN_FLIGHT + 2) of these.
    part_size: int = objects.PART_SIZE
    #: Lifetime of a download URL, seconds.
    url_expires: int = 600
    #: Scratch databases of verification start with this.
    scratch_prefix: str = "slipway_verify_"
    #: pg_dump's --compress; None: its default.
    compress: int | None = None
    #: Captures as Kubernetes Jobs, schedules as CronJobs; None: in the control plane's
    #: process, its scheduler ticking (SLIPWAY_BACKUP_KUBERNETES).
    kube: KubeBackupSettings | None = None


def backup_settings_from_env(
    environ: Mapping[str, str], *, secret: str | None = None
) -> BackupSettings | None:
    """None without SLIPWAY_BACKUP_BUCKET; ``secret`` when the caller keeps one (``up``)."""
    bucket = environ.get("SLIPWAY_BACKUP_BUCKET") or None
    if bucket is None:
        return None
    key = environ.get("SLIPWAY_BACKUP_KEY") or secret
    if not key:
        raise ValueError(
            "SLIPWAY_BACKUP_BUCKET is set but SLIPWAY_BACKUP_KEY is not: set it to a long "
            "random secret (and keep a copy: without it no backup can be read)"
        )
    return BackupSettings(
        bucket=bucket,
        key_prefix=environ.get("SLIPWAY_BACKUP_PREFIX") or "pg-backups/",
        endpoint_url=environ.get("SLIPWAY_BACKUP_S3_ENDPOINT") or None,
        region=environ.get("SLIPWAY_BACKUP_S3_REGION") or None,
        secret=key,
        kube=kube_backups_from_env(environ),
    )


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = (environ.get(name) or str(default)).lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value == "true"


def kube_backups_from_env(environ: Mapping[str, str]) -> KubeBackupSettings | None:
    """Jobs and CronJobs when SLIPWAY_BACKUP_KUBERNETES is true; unset, it follows
    SLIPWAY_ADDON_KUBERNETES (a control plane on a cluster already)."""
    on = _flag(
        environ,
        "SLIPWAY_BACKUP_KUBERNETES",
        _flag(environ, "SLIPWAY_ADDON_KUBERNETES", False),
    )
    if not on:
        return None
    wanted = (
        "SLIPWAY_BACKUP_KUBE_NAMESPACE",
        "SLIPWAY_BACKUP_KUBE_IMAGE",
        "SLIPWAY_BACKUP_KUBE_SECRET",
    )
    missing = [name for name in wanted if not environ.get(name)]
    if missing:
        raise ValueError(
            f"backups on Kubernetes need {', '.join(missing)} (the control plane's namespace, "
            "image and env Secret: the Jobs run the same code with the same settings); "
            "or set SLIPWAY_BACKUP_KUBERNETES=false"
        )
    pull = environ.get("SLIPWAY_BACKUP_KUBE_PULL_SECRETS") or ""
    return KubeBackupSettings(
        namespace=environ["SLIPWAY_BACKUP_KUBE_NAMESPACE"],
        image=environ["SLIPWAY_BACKUP_KUBE_IMAGE"],
        env_secret=environ["SLIPWAY_BACKUP_KUBE_SECRET"],
        service_account=environ.get("SLIPWAY_BACKUP_KUBE_SERVICE_ACCOUNT") or None,
        pull_secrets=tuple(n.strip() for n in pull.split(",") if n.strip()),
    )
