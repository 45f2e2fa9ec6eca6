"""Backups on Kubernetes: captures as Jobs, schedules as CronJobs, against kmock and the shim.

The test plays the Job controller: it runs the Job's container command (the
control plane's image is this checkout) with the Job's env over the Secret's,
as the kubelet would, against the same store, PostgreSQL and S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import kmock
import kubernetes_validate
import psycopg
import pytest
from kubernetes_asyncio import client

from control.addons.kube_dedicated import (
    BACKUP_LABEL,
    Kind,
    KubeAddon,
    KubeAddonSettings,
    ingress_policy,
)
from control.backups import kube, records
from control.backups.kube import RBAC, KubeBackupJobs
from control.backups.records import Status
from control.backups.service import JOB_GRACE, Backups
from control.backups.settings import (
    JOB_DEADLINE,
    BackupSettings,
    KubeBackupSettings,
    backup_settings_from_env,
)
from control.errors import ControlError
from control.provisioning import backup_jobs, needs_kube_api
from control.settings import ControlSettings
from tests.backups.conftest import (  # noqa: F401  (moto_server, dedicated: fixtures)
    SLOW_ROW,
    SLOW_ROWS,
    Dedicated,
    Env,
    as_tenant,
    attach_dedicated,
    backends_of,
    backups_env,
    control_secret,
    dedicated,
    detach,
    fill,
    fill_slow,
    group_members,
    loading_slow,
    moto_server,
    processes_with,
    query,
    slipway,
    throttle,
)
from tests.control.conftest import ADMIN_DSN
from tests.helpers import eventually
from tests.kube.podlogs import LoggingApiServer
from tests.kube.test_chart import (
    CONTROL,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    assert_control_role,
    containers,
    render,
    with_required,
)
from tests.logs.conftest import Moto

PLATFORM = "slipway"
KUBE = KubeBackupSettings(
    namespace=PLATFORM,
    image="ghcr.io/slipway/slipway:test",
    env_secret="slipway-control",
    service_account="slipway-control",
)


@pytest.fixture
async def apiserver() -> AsyncIterator[LoggingApiServer]:
    async with LoggingApiServer() as server, kmock.Server(server):
        yield server


@pytest.fixture
async def kenv(tmp_path: Path, moto_server: Moto, api: client.ApiClient) -> AsyncIterator[Env]:  # noqa: F811
    def launcher(settings: BackupSettings) -> KubeBackupJobs:
        return KubeBackupJobs(api, settings=settings)

    async with backups_env(
        tmp_path,
        moto_server,
        launcher=launcher,
        endpoint_url=moto_server.url,
        region="us-east-1",
        kube=KUBE,
    ) as env:
        yield env


async def run_pod(env: Env, job_spec: dict[str, Any]) -> int:
    """Run the Job's one container as the kubelet would: its args to the image's
    entrypoint (``slipway``), its env over the Secret's."""
    [container] = job_spec["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": KUBE.env_secret}}]
    status, out = await slipway(
        *container["args"],
        environ={**control_secret(env), **{e["name"]: e["value"] for e in container["env"]}},
    )
    if status not in (0, 1):
        raise AssertionError(out)
    return status


def the_job(apiserver: LoggingApiServer) -> dict[str, Any]:
    [job] = apiserver.objects_of("jobs")
    return job


async def test_a_capture_is_a_job_that_records_the_backup_as_the_control_plane_does(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db = await kenv.app_with_db("prod")
    await fill(db, rows=200)
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 201, body
    assert body["status"] == "running"
    backup = await kenv.backups.get("prod", body["name"])
    job = the_job(apiserver)
    built = kube.job(backup, kenv.backups.settings, KUBE)
    kubernetes_validate.validate(built, KUBE_VERSION, strict=True)
    assert job["metadata"]["name"] == f"slipway-pg-backup-{backup.id}"
    assert job["metadata"]["namespace"] == PLATFORM
    assert job["spec"] == built["spec"]  # as built, through the client
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == JOB_DEADLINE
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "slipway-control"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == KUBE.image
    assert container["args"] == ["pg-backups", "run", "prod", backup.name]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    values = {e["name"]: e["value"] for e in container["env"]}
    assert "SLIPWAY_BACKUP_KEY" not in values  # the key stays in the Secret
    assert values["SLIPWAY_BACKUP_BUCKET"] == kenv.bucket
    # Its pods carry the label a dedicated add-on's NetworkPolicy admits from the
    # platform's namespace, with the add-on's name.
    labels = spec["template"]["metadata"]["labels"]
    assert labels[BACKUP_LABEL] == backup.resource
    policy = ingress_policy(
        KubeAddon(name=backup.resource, kind=Kind.POSTGRES, plan="mini", app="prod", password=""),
        KubeAddonSettings(namespace="apps", platform_namespace=PLATFORM),
    )
    [rule] = policy["spec"]["ingress"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PLATFORM}},
        "podSelector": {"matchLabels": {BACKUP_LABEL: labels[BACKUP_LABEL]}},
    } in rule["from"]
    # The controller runs it: the record moves as in-process, verified by a restore.
    assert await run_pod(kenv, spec) == 0
    status, done, _ = await kenv.api.call("GET", f"/apps/prod/pg-backups/{backup.name}")
    assert status == 200
    assert done["status"] == "succeeded", done
    found = await kenv.backups.get("prod", backup.name)
    assert found.verified_at is not None
    assert found.tables is not None
    assert found.tables["public.customers"][0] == 200
    # A second run of the same Job (a retried pod) captures nothing again.
    assert await run_pod(kenv, spec) == 1
    assert (await kenv.backups.get("prod", backup.name)).status is Status.SUCCEEDED


async def test_a_dedicated_add_ons_job_reaches_its_instance_as_its_admin_with_no_password_in_it(
    kenv: Env,
    apiserver: LoggingApiServer,
    dedicated: Dedicated,  # noqa: F811
) -> None:
    await kenv.api.call("POST", "/apps", json={"name": "shop"})
    addon = await attach_dedicated(kenv, "shop", dedicated)
    with psycopg.connect(dedicated.socket, autocommit=True) as conn:
        conn.execute("CREATE TABLE carts (id int PRIMARY KEY)")
        conn.execute("INSERT INTO carts SELECT generate_series(1, 50)")
    status, body, _ = await kenv.api.call("POST", "/apps/shop/pg-backups", json={})
    assert status == 201, body
    backup = await kenv.backups.get("shop", body["name"])
    job = the_job(apiserver)
    built = kube.job(backup, kenv.backups.settings, KUBE)
    kubernetes_validate.validate(built, KUBE_VERSION, strict=True)
    assert job["spec"] == built["spec"]
    # The instance's credentials are not in the Job: its pod reads the add-on's record.
    password = dedicated.url.split(":")[2].split("@")[0]
    assert password not in str(job)
    # Its pods pass the add-on's NetworkPolicy: the platform's namespace, the add-on's name.
    labels = job["spec"]["template"]["metadata"]["labels"]
    policy = ingress_policy(
        KubeAddon(name=addon.resource, kind=Kind.POSTGRES, plan="mini", app="shop", password=""),
        KubeAddonSettings(namespace="apps", platform_namespace=PLATFORM),
    )
    [rule] = policy["spec"]["ingress"]
    selector = {"kubernetes.io/metadata.name": PLATFORM}
    assert {
        "namespaceSelector": {"matchLabels": selector},
        "podSelector": {"matchLabels": {BACKUP_LABEL: labels[BACKUP_LABEL]}},
    } in rule["from"]
    # Run with no shared server's DSN at all: the dedicated instance is all it needs.
    [container] = job["spec"]["template"]["spec"]["containers"]
    environ = control_secret(kenv)
    del environ["SLIPWAY_ADDON_POSTGRES_DSN"]
    status, out = await slipway(
        *container["args"], environ={**environ, **{e["name"]: e["value"] for e in container["env"]}}
    )
    assert status == 0, out
    assert password not in out
    done = await kenv.backups.get("shop", backup.name)
    assert done.status is Status.SUCCEEDED
    assert done.tables is not None
    assert done.tables["public.carts"][0] == 50
    # The Job's verification (its settings' default scratch prefix) ran on the instance.
    assert 'CREATE DATABASE "slipway_verify_' in dedicated.server_log()
    await detach(kenv, addon)


async def test_a_capture_that_waits_reads_the_record_the_job_writes(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db = await kenv.app_with_db("prod")
    await fill(db, rows=20)
    call = asyncio.create_task(kenv.api.call("POST", "/apps/prod/pg-backups", json={"wait": True}))
    await eventually(lambda: apiserver.objects_of("jobs"))
    assert not call.done()
    assert await run_pod(kenv, the_job(apiserver)["spec"]) == 0
    status, body, _ = await asyncio.wait_for(call, timeout=60)
    assert status == 201
    assert body["status"] == "succeeded"


async def test_cancel_deletes_the_job_and_what_it_writes_after_is_ignored(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    await kenv.app_with_db("prod")
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 201
    spec = the_job(apiserver)["spec"]
    status, cancelled, _ = await kenv.api.call(
        "POST", "/apps/prod/pg-backups/running/actions/cancel"
    )
    assert status == 200, cancelled
    assert cancelled["status"] == "cancelled"
    assert apiserver.objects_of("jobs") == []
    job_name = f"slipway-pg-backup-{(await kenv.backups.get('prod', body['name'])).id}"
    assert apiserver.deletes == [("jobs", job_name, {"propagationPolicy": "Background"})]
    # Its pod, still running when the Job went, ends without changing the record.
    assert await run_pod(kenv, spec) == 1
    assert (await kenv.backups.get("prod", body["name"])).status is Status.CANCELLED
    assert kenv.s3.list_objects_v2(Bucket=kenv.bucket).get("Contents", []) == []


async def test_a_refused_job_fails_the_backup_with_the_reason(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    await kenv.app_with_db("prod")
    apiserver.outage = True
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 503
    assert body["id"] == "backup_jobs_unavailable"
    apiserver.outage = False
    [failed] = await kenv.backups.backups("prod")
    assert failed.status is Status.FAILED
    assert "Kubernetes API" in failed.error
    # Nothing is left running: the next capture is not refused as a second one.
    status, _, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 201


async def test_a_schedule_is_a_cronjob_in_its_zone_whose_run_captures_once(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db = await kenv.app_with_db("prod")
    await fill(db, rows=20)
    put = {"at": "02:30 Europe/Paris", "daily": 7, "weekly": 4}
    status, body, _ = await kenv.api.call("PUT", "/apps/prod/pg-backup-schedules", json=put)
    assert status == 200, body
    [cron] = apiserver.objects_of("cronjobs")
    assert cron["metadata"]["namespace"] == PLATFORM
    spec = cron["spec"]
    assert spec["schedule"] == "30 2 * * *"
    assert spec["timeZone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    async with kenv.api.control.store.tx(write=False) as tx:
        [item] = await records.list_schedules(tx)
        addon = await tx.get_addon(await tx.get_app("prod"), "DATABASE")
    built = kube.cron_job(item, addon.resource, kenv.backups.settings, KUBE)
    kubernetes_validate.validate(built, KUBE_VERSION, strict=True)
    assert spec == built["spec"]
    # A new time replaces it (one CronJob per add-on).
    put["at"] = "03:15 Europe/Paris"
    status, _, _ = await kenv.api.call("PUT", "/apps/prod/pg-backup-schedules", json=put)
    assert status == 200
    [cron] = apiserver.objects_of("cronjobs")
    assert cron["spec"]["schedule"] == "15 3 * * *"
    job_spec = cron["spec"]["jobTemplate"]["spec"]
    assert job_spec["backoffLimit"] == 0
    [container] = job_spec["template"]["spec"]["containers"]
    assert container["args"] == ["pg-backups", "tick", "prod", addon.name]
    # The control plane's own tick captures nothing: the CronJob does.
    kenv.clock.now += 3 * 86400
    assert await kenv.backups.tick(kenv.clock.now) == []
    # Its Job runs (the schedule was made on the test's clock, months before now: due).
    assert await run_pod(kenv, job_spec) == 0
    [done] = await kenv.backups.backups("prod")
    assert (done.name, done.status) == ("a001", Status.SUCCEEDED)
    # Run again the same day (a manual trigger): not due, nothing captured, no failure.
    assert await run_pod(kenv, job_spec) == 0
    assert [b.name for b in await kenv.backups.backups("prod")] == ["a001"]
    status, _, _ = await kenv.api.call("DELETE", f"/apps/prod/pg-backup-schedules/{addon.name}")
    assert status in (200, 204)
    assert apiserver.objects_of("cronjobs") == []
    # A CronJob left behind (deleted by hand too late) fails loudly, capturing nothing.
    assert await run_pod(kenv, job_spec) == 1
    assert [b.name for b in await kenv.backups.backups("prod")] == ["a001"]


async def test_a_jobs_record_left_running_past_its_deadline_is_failed(kenv: Env) -> None:
    db = await kenv.app_with_db("prod")
    async with kenv.api.control.store.tx() as tx:
        app = await tx.get_app("prod")
        dead = await records.add_backup(
            tx, app, kind="manual", addon="x", resource=db, key_prefix="p/", now=kenv.clock.now
        )
    kenv.clock.now += JOB_DEADLINE + JOB_GRACE / 2
    await kenv.backups.tick(kenv.clock.now)
    assert (await kenv.backups.get("prod", dead.name)).status is Status.RUNNING
    kenv.clock.now += JOB_GRACE
    await kenv.backups.tick(kenv.clock.now)
    failed = await kenv.backups.get("prod", dead.name)
    assert failed.status is Status.FAILED
    assert "Job" in failed.error


def test_the_rbac_it_needs_is_what_it_calls() -> None:
    text = (ROOT / "control" / "backups" / "kube.py").read_text()
    called = {
        ("batch", "jobs", "create"): "create_namespaced_job",
        ("batch", "jobs", "delete"): "delete_namespaced_job",
        ("batch", "cronjobs", "create"): "create_namespaced_cron_job",
        ("batch", "cronjobs", "update"): "replace_namespaced_cron_job",
        ("batch", "cronjobs", "delete"): "delete_namespaced_cron_job",
    }
    granted = {(g, r, v) for (g, r), verbs in RBAC.items() for v in verbs}
    assert granted == set(called)
    assert all(call in text for call in called.values())


def kube_backups(**backups: Any) -> dict[str, Any]:
    return with_required({"control": {**CONTROL, "backups": backups}})


def test_the_chart_grants_control_exactly_that_in_its_own_namespace_and_only_when_asked() -> None:
    docs = render(kube_backups(kubernetes=True))
    assert_control_role(docs, "slipway-control-backups", RBAC, namespace=None)


def control_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    [control] = [c for name, _, c in containers(docs) if name == "slipway-control"]
    return {e["name"]: e.get("value") for e in control["env"]}


def test_backup_jobs_follow_dedicated_add_ons_unless_told_and_get_controls_image_and_secret() -> (
    None
):
    addons = with_required({"control": {**CONTROL, "addons": {"kubernetes": True}}})
    env = control_env(render(addons))
    assert env["SLIPWAY_BACKUP_KUBERNETES"] == "true"
    assert env["SLIPWAY_BACKUP_KUBE_NAMESPACE"] == NAMESPACE
    # The namespace the dedicated add-ons' NetworkPolicies admit backup Jobs from.
    assert env["SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE"] == NAMESPACE
    assert env["SLIPWAY_BACKUP_KUBE_SECRET"] == CONTROL["existingSecret"]
    assert env["SLIPWAY_BACKUP_KUBE_SERVICE_ACCOUNT"] == "slipway-control"
    [control] = [c for name, _, c in containers(render(addons)) if name == "slipway-control"]
    assert env["SLIPWAY_BACKUP_KUBE_IMAGE"] == control["image"]
    settings = backup_settings_from_env(
        {**env, "SLIPWAY_BACKUP_BUCKET": "b", "SLIPWAY_BACKUP_KEY": "k"}
    )
    assert settings is not None
    assert settings.kube is not None
    assert settings.kube.image == control["image"]
    off = with_required(
        {"control": {**CONTROL, "addons": {"kubernetes": True}, "backups": {"kubernetes": False}}}
    )
    assert control_env(render(off))["SLIPWAY_BACKUP_KUBERNETES"] == "false"
    plain = control_env(render(with_required({"control": CONTROL})))
    assert plain["SLIPWAY_BACKUP_KUBERNETES"] == "false"
    assert "SLIPWAY_BACKUP_KUBE_IMAGE" not in plain
    pulled = with_required(
        {
            "control": {**CONTROL, "backups": {"kubernetes": True}},
            "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
        }
    )
    assert control_env(render(pulled))["SLIPWAY_BACKUP_KUBE_PULL_SECRETS"] == "one,two"


async def test_the_control_plane_makes_backup_jobs_only_when_its_settings_say_so(
    api: client.ApiClient,
) -> None:
    jobs = BackupSettings(bucket="b", secret="k", kube=KUBE)
    assert needs_kube_api(ControlSettings(backups=jobs))
    assert isinstance(backup_jobs(ControlSettings(backups=jobs), api), KubeBackupJobs)
    in_process = ControlSettings(backups=BackupSettings(bucket="b", secret="k"))
    assert not needs_kube_api(in_process)
    assert backup_jobs(in_process, api) is None
    with pytest.raises(ControlError, match="API client"):
        backup_jobs(ControlSettings(backups=jobs), None)


async def test_schedules_stored_before_backups_ran_as_jobs_get_their_cronjobs_at_start(
    kenv: Env, apiserver: LoggingApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="control.backups.service")
    await kenv.app_with_db("prod")
    await kenv.app_with_db("shop")
    # Stored by a control plane that captured in its own process (no CronJob made).
    in_process = Backups(
        store=kenv.api.control.store,
        admin_dsn=ADMIN_DSN,
        s3=kenv.s3,
        settings=kenv.backups.settings,
        clock=kenv.clock,
    )
    await in_process.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    await in_process.set_schedule("shop", "DATABASE", "04:45 UTC")
    assert apiserver.objects_of("cronjobs") == []
    # The API is down as the control plane starts: it keeps ticking and syncs later.
    apiserver.outage = True
    task = asyncio.create_task(kenv.backups.run(interval=0.05))
    refused = "backup schedules not synced"
    await eventually(lambda: sum(r.message == refused for r in caplog.records) >= 2)
    assert not task.done()
    apiserver.outage = False
    try:
        await eventually(lambda: len(apiserver.objects_of("cronjobs")) == 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    specs = sorted(
        (c["spec"]["schedule"], c["spec"]["timeZone"]) for c in apiserver.objects_of("cronjobs")
    )
    assert specs == [("0 2 * * *", "Europe/Paris"), ("45 4 * * *", "UTC")]
    # Idempotent: a second start (another replica) replaces them, still two.
    assert await kenv.backups.sync_schedules() == 2
    assert len(apiserver.objects_of("cronjobs")) == 2


async def test_an_add_ons_cronjob_and_schedule_go_when_it_is_destroyed_or_its_app_deleted(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    await kenv.app_with_db("prod")
    await kenv.app_with_db("stage")
    put = {"at": "02:00 UTC"}
    for app in ("prod", "stage"):
        status, body, _ = await kenv.api.call("PUT", f"/apps/{app}/pg-backup-schedules", json=put)
        assert status == 200, body
    async with kenv.api.control.store.tx(write=False) as tx:
        addon = await tx.get_addon(await tx.get_app("prod"), "DATABASE")
    prod_cron = kube.cron_job_name("prod", addon.name)
    assert prod_cron in {c["metadata"]["name"] for c in apiserver.objects_of("cronjobs")}
    # The API down: the destroy is refused before anything of the add-on is gone.
    apiserver.outage = True
    status, body, _ = await kenv.api.call("DELETE", f"/apps/prod/addons/{addon.name}")
    apiserver.outage = False
    assert status == 503, body
    assert body["id"] == "backup_jobs_unavailable"
    assert [s.addon for s in await kenv.backups.schedules("prod")] == [addon.name]
    assert addon.resource in await databases()
    status, body, _ = await kenv.api.call("DELETE", f"/apps/prod/addons/{addon.name}")
    assert status == 200, body
    assert prod_cron not in {c["metadata"]["name"] for c in apiserver.objects_of("cronjobs")}
    assert ("cronjobs", prod_cron, {"propagationPolicy": "Background"}) in apiserver.deletes
    assert await kenv.backups.schedules("prod") == []
    # Deleting an app takes its add-ons' CronJobs with it.
    status, body, _ = await kenv.api.call("DELETE", "/apps/stage")
    assert status == 200, body
    assert apiserver.objects_of("cronjobs") == []
    async with kenv.api.control.store.tx(write=False) as tx:
        assert await records.list_schedules(tx) == []


async def test_a_schedule_whose_add_on_went_before_is_dropped_with_its_cronjob_at_start(
    kenv: Env, apiserver: LoggingApiServer, api: client.ApiClient
) -> None:
    await kenv.app_with_db("prod")
    kept = await kenv.backups.set_schedule("prod", "DATABASE", "01:00 UTC")
    # What a destroy from before add-ons took their schedules along left: the add-on gone,
    # its schedule stored and its CronJob in the cluster.
    orphan = replace(kept, addon="postgres-gone")
    async with kenv.api.control.store.tx() as tx:
        await records.put_schedule(tx, await tx.get_app("prod"), orphan)
    await KubeBackupJobs(api, settings=kenv.backups.settings).schedule(orphan, "prod-gone")
    assert len(apiserver.objects_of("cronjobs")) == 2
    assert await kenv.backups.sync_schedules() == 1
    assert await kenv.backups.schedules("prod") == [kept]
    gone = kube.cron_job_name("prod", "postgres-gone")
    assert ("cronjobs", gone, {"propagationPolicy": "Background"}) in apiserver.deletes
    assert [c["metadata"]["name"] for c in apiserver.objects_of("cronjobs")] == [
        kube.cron_job_name("prod", kept.addon)
    ]


async def databases() -> set[str]:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        rows = await (await conn.execute("SELECT datname FROM pg_database")).fetchall()
    return {str(r[0]) for r in rows}


def jobs_named(apiserver: LoggingApiServer, prefix: str) -> list[dict[str, Any]]:
    return [j for j in apiserver.objects_of("jobs") if j["metadata"]["name"].startswith(prefix)]


async def test_a_restore_through_the_api_is_a_job_whose_record_the_request_answers_with(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db = await kenv.app_with_db("prod")
    await fill(db, rows=100)
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 201, body
    assert await run_pod(kenv, the_job(apiserver)["spec"]) == 0
    await as_tenant(db, "DELETE FROM customers")
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 201, body
    assert body["restore"]["status"] == "running"
    assert body["restore"]["backup"] == "b001"
    [job] = jobs_named(apiserver, "slipway-pg-backup-restore-")
    restore = await kenv.backups.get_restore("prod", body["restore"]["id"])
    async with kenv.api.control.store.tx(write=False) as tx:
        addon = await tx.get_addon(await tx.get_app("prod"), "DATABASE")
    built = kube.restore_job(restore, addon.resource, kenv.backups.settings, KUBE)
    kubernetes_validate.validate(built, KUBE_VERSION, strict=True)
    assert job["metadata"]["name"] == f"slipway-pg-backup-restore-{restore.id}"
    assert job["spec"] == built["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][BACKUP_LABEL] == addon.resource
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        *("pg-backups", "restore", "prod", "b001", "prod", addon.name),
        *("--record", str(restore.id)),
    ]
    # The kubelet runs it: the rows are back and the record says so.
    assert await run_pod(kenv, job["spec"]) == 0
    assert await query(db, "SELECT count(*) FROM customers") == [(100,)]
    done = await kenv.backups.get_restore("prod", restore.id)
    assert done.status is Status.SUCCEEDED
    assert done.finished_at is not None
    # A retried pod does nothing again.
    assert await run_pod(kenv, job["spec"]) == 1
    assert (await kenv.backups.get_restore("prod", restore.id)).status is Status.SUCCEEDED
    # Asked with wait, the request reads the record until the Job settles it.
    await as_tenant(db, "DELETE FROM customers WHERE id > 50")
    call = asyncio.create_task(
        kenv.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001", "wait": True})
    )
    await eventually(lambda: len(jobs_named(apiserver, "slipway-pg-backup-restore-")) == 2)
    assert not call.done()
    [second] = [j for j in jobs_named(apiserver, "slipway-pg-backup-restore-") if j != job]
    assert await run_pod(kenv, second["spec"]) == 0
    status, body, _ = await asyncio.wait_for(call, timeout=60)
    assert status == 201, body
    assert body["restore"]["status"] == "succeeded"
    assert await query(db, "SELECT count(*) FROM customers") == [(100,)]


async def test_a_refused_restore_job_fails_its_record_and_a_dead_one_is_failed_later(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    await kenv.app_with_db("prod")
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert await run_pod(kenv, the_job(apiserver)["spec"]) == 0
    apiserver.outage = True
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-restores", json={})
    apiserver.outage = False
    assert status == 503, body
    assert (await kenv.backups.get_restore("prod", 1)).status is Status.FAILED
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-restores", json={})
    assert status == 201, body
    # Its Job never reports (its pod evicted): past the deadline the tick fails the record.
    kenv.clock.now += JOB_DEADLINE + JOB_GRACE + 1
    await kenv.backups.tick(kenv.clock.now)
    dead = await kenv.backups.get_restore("prod", body["restore"]["id"])
    assert dead.status is Status.FAILED
    assert "deadline" in dead.error


async def restore_job_of_a_slow_backup(
    kenv: Env, apiserver: LoggingApiServer
) -> tuple[str, records.Restore, dict[str, Any]]:
    """prod's b001 (with ``slow``, throttled in prod now) asked to be restored into prod:
    the database, the restore's record (running) and its Job."""
    db = await kenv.app_with_db("prod")
    await fill_slow(db)
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups", json={})
    assert status == 201, body
    assert await run_pod(kenv, the_job(apiserver)["spec"]) == 0
    await as_tenant(db, "DELETE FROM slow WHERE id > 5")
    await throttle(db, SLOW_ROW)
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 201, body
    restore = await kenv.backups.get_restore("prod", body["restore"]["id"])
    assert restore.status is Status.RUNNING
    [job] = jobs_named(apiserver, "slipway-pg-backup-restore-")
    return db, restore, job


async def test_cancel_deletes_a_restore_job_and_neither_its_pod_nor_the_deadline_changes_it(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db, restore, job = await restore_job_of_a_slow_backup(kenv, apiserver)
    apiserver.deletes.clear()
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups/running/actions/cancel")
    assert status == 200, body
    assert body["kind"] == "restore"
    assert body["name"] == restore.name
    assert body["status"] == "cancelled"
    name = f"slipway-pg-backup-restore-{restore.id}"
    assert apiserver.deletes == [("jobs", name, {"propagationPolicy": "Background"})]
    assert jobs_named(apiserver, "slipway-pg-backup-restore-") == []
    assert any(f"Restore {restore.name} cancelled" in line for line in kenv.lines.of("prod"))
    # Its pod, started before the Job went, finds the record cancelled: it restores nothing.
    assert await run_pod(kenv, job["spec"]) == 1
    assert await query(db, "SELECT count(*) FROM slow") == [(5,)]
    # A request waiting for it has its answer; the deadline check leaves it cancelled.
    waited = await asyncio.wait_for(kenv.backups.wait_restore(restore), timeout=10)
    assert waited.status is Status.CANCELLED
    kenv.clock.now += JOB_DEADLINE + JOB_GRACE + 1
    await kenv.backups.tick(kenv.clock.now)
    assert (await kenv.backups.get_restore("prod", restore.id)).status is Status.CANCELLED
    # Nothing is running any more.
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-backups/running/actions/cancel")
    assert status == 404, body


def pod_pid(bucket: str) -> int | None:
    """The restore pod's process (its env names this test's bucket)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"--record" in (entry / "cmdline").read_bytes() and (
                f"SLIPWAY_BACKUP_BUCKET={bucket}".encode() in (entry / "environ").read_bytes()
            ):
                return int(entry.name)
    return None


async def test_a_restore_pod_running_when_its_job_is_deleted_stops_and_rolls_back(
    kenv: Env, apiserver: LoggingApiServer
) -> None:
    db, restore, job = await restore_job_of_a_slow_backup(kenv, apiserver)
    [container] = job["spec"]["template"]["spec"]["containers"]
    environ = {**control_secret(kenv), **{e["name"]: e["value"] for e in container["env"]}}
    pod = asyncio.create_task(slipway(*container["args"], environ=environ))
    tag = await eventually(lambda: loading_slow(db), what="the pod's COPY of slow")
    [pg_restore] = processes_with(tag)
    status, body, _ = await kenv.api.call(
        "POST", f"/apps/prod/pg-backups/{restore.name}/actions/cancel"
    )
    assert status == 200, body
    assert body["status"] == "cancelled"
    assert not jobs_named(apiserver, "slipway-pg-backup-restore-")
    # The kubelet stops the deleted Job's pod: SIGTERM to its process.
    pid = pod_pid(kenv.bucket)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    code, out = await asyncio.wait_for(pod, timeout=30)
    assert code == 1, out
    assert "cancelled" in out
    assert processes_with(tag) == []
    assert group_members(pg_restore) == []
    await eventually(lambda: _none(backends_of(tag)), what="the restore's backend ended")
    assert await query(db, "SELECT count(*) FROM slow") == [(5,)]
    done = await kenv.backups.get_restore("prod", restore.id)
    assert done.status is Status.CANCELLED
    # The next restore runs, and restores.
    await throttle(db, None)
    status, body, _ = await kenv.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 201, body
    [second] = jobs_named(apiserver, "slipway-pg-backup-restore-")
    assert await run_pod(kenv, second["spec"]) == 0
    assert await query(db, "SELECT count(*) FROM slow") == [(SLOW_ROWS,)]


async def _none(count: Any) -> bool:
    return await count == 0
