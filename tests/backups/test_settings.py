"""SLIPWAY_BACKUP_* into settings, and the control plane's Backups built from them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from control.backups.service import backups_for
from control.backups.settings import KubeBackupSettings, backup_settings_from_env
from control.store.db import Store


def test_no_bucket_no_backups() -> None:
    assert backup_settings_from_env({}) is None


def test_a_bucket_without_a_key_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValueError, match="SLIPWAY_BACKUP_KEY"):
        backup_settings_from_env({"SLIPWAY_BACKUP_BUCKET": "b"})


def test_the_variables_land_in_their_fields_and_the_state_dir_key_is_a_fallback() -> None:
    settings = backup_settings_from_env(
        {
            "SLIPWAY_BACKUP_BUCKET": "b",
            "SLIPWAY_BACKUP_S3_ENDPOINT": "http://minio:9000",
            "SLIPWAY_BACKUP_S3_REGION": "eu-west-3",
            "SLIPWAY_BACKUP_PREFIX": "prod/",
        },
        secret="from-the-state-dir",
    )
    assert settings is not None
    assert (settings.bucket, settings.endpoint_url, settings.region, settings.key_prefix) == (
        "b",
        "http://minio:9000",
        "eu-west-3",
        "prod/",
    )
    assert settings.secret == "from-the-state-dir"
    env = {"SLIPWAY_BACKUP_BUCKET": "b", "SLIPWAY_BACKUP_KEY": "k"}
    chosen = backup_settings_from_env(env, secret="ignored")
    assert chosen is not None
    assert chosen.secret == "k"


ON_A_CLUSTER = {
    "SLIPWAY_BACKUP_BUCKET": "b",
    "SLIPWAY_BACKUP_KEY": "k",
    "SLIPWAY_BACKUP_KUBE_NAMESPACE": "slipway",
    "SLIPWAY_BACKUP_KUBE_IMAGE": "ghcr.io/slipway/slipway:1",
    "SLIPWAY_BACKUP_KUBE_SECRET": "slipway-control",
}


def kube_of(environ: dict[str, str]) -> KubeBackupSettings | None:
    settings = backup_settings_from_env(environ)
    assert settings is not None
    return settings.kube


def test_backup_jobs_follow_dedicated_add_ons_unless_told_otherwise() -> None:
    assert kube_of(ON_A_CLUSTER) is None
    addons = {**ON_A_CLUSTER, "SLIPWAY_ADDON_KUBERNETES": "true"}
    kube = kube_of(addons)
    assert kube is not None
    assert (kube.namespace, kube.image, kube.env_secret) == (
        "slipway",
        "ghcr.io/slipway/slipway:1",
        "slipway-control",
    )
    assert (kube.service_account, kube.pull_secrets) == (None, ())
    off = {**addons, "SLIPWAY_BACKUP_KUBERNETES": "false"}
    assert kube_of(off) is None
    on = {
        **ON_A_CLUSTER,
        "SLIPWAY_BACKUP_KUBERNETES": "true",
        "SLIPWAY_BACKUP_KUBE_SERVICE_ACCOUNT": "slipway-control",
        "SLIPWAY_BACKUP_KUBE_PULL_SECRETS": "one, two",
    }
    kube = kube_of(on)
    assert kube is not None
    assert (kube.service_account, kube.pull_secrets) == ("slipway-control", ("one", "two"))


def test_backup_jobs_without_their_image_or_secret_are_refused_naming_them() -> None:
    wanted = {k: v for k, v in ON_A_CLUSTER.items() if "KUBE_" not in k}
    with pytest.raises(ValueError, match="SLIPWAY_BACKUP_KUBE_IMAGE, SLIPWAY_BACKUP_KUBE_SECRET"):
        backup_settings_from_env(
            {**wanted, "SLIPWAY_BACKUP_KUBERNETES": "true", "SLIPWAY_BACKUP_KUBE_NAMESPACE": "x"}
        )
    with pytest.raises(ValueError, match="true or false"):
        backup_settings_from_env({**ON_A_CLUSTER, "SLIPWAY_BACKUP_KUBERNETES": "yes"})


async def test_the_control_plane_gets_backups_only_with_a_bucket_and_postgres(
    tmp_path: object,
) -> None:
    store = Store.open("sqlite+aiosqlite:///:memory:")
    settings = backup_settings_from_env({"SLIPWAY_BACKUP_BUCKET": "b", "SLIPWAY_BACKUP_KEY": "k"})
    registry = CollectorRegistry()
    assert backups_for(None, store=store, admin_dsn="x", sink=None, registry=registry) is None
    assert backups_for(settings, store=store, admin_dsn=None, sink=None, registry=registry) is None
    made = backups_for(
        settings, store=store, admin_dsn="postgresql://", sink=None, registry=registry
    )
    assert made is not None
    assert made.settings.bucket == "b"
    await store.close()
