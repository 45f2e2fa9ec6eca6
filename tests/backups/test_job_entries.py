"""``slipway pg-backups run|tick|restore`` as processes: what backup Jobs run, and how they end."""

from __future__ import annotations

from control.backups import records
from control.backups.records import Status
from tests.backups.conftest import Env, as_tenant, control_secret, fill, query, slipway


def job_env(env: Env) -> dict[str, str]:
    """The Secret, and the settings the control plane passes as values."""
    return {
        **control_secret(env),
        "SLIPWAY_BACKUP_BUCKET": env.bucket,
        "SLIPWAY_BACKUP_S3_ENDPOINT": env.s3.meta.endpoint_url,
        "SLIPWAY_BACKUP_S3_REGION": "us-east-1",
    }


async def test_run_captures_a_recorded_backup_and_exits_by_its_outcome(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=50)
    async with env.api.control.store.tx() as tx:
        app = await tx.get_app("prod")
        recorded = await records.add_backup(
            tx, app, kind="manual", addon="DATABASE", resource=db, key_prefix="pg-backups/", now=1.0
        )
    status, out = await slipway("pg-backups", "run", "prod", recorded.name, environ=job_env(env))
    assert status == 0, out
    done = await env.backups.get("prod", recorded.name)
    assert done.status is Status.SUCCEEDED
    assert done.tables is not None
    assert done.tables["public.customers"][0] == 50
    # A backup that is no longer running is not run again: exit 1, the record unchanged.
    status, out = await slipway("pg-backups", "run", "prod", recorded.name, environ=job_env(env))
    assert status == 1
    assert "only a backup recorded running" in out
    assert (await env.backups.get("prod", recorded.name)).verified_at == done.verified_at
    # One whose database is gone fails, recorded with the reason, and the exit says so.
    async with env.api.control.store.tx() as tx:
        lost = await records.add_backup(
            tx,
            app,
            kind="manual",
            addon="DATABASE",
            resource="slipway_ctl_t_no_such_db",
            key_prefix="pg-backups/",
            now=2.0,
        )
    status, out = await slipway("pg-backups", "run", "prod", lost.name, environ=job_env(env))
    assert status == 1, out
    failed = await env.backups.get("prod", lost.name)
    assert failed.status is Status.FAILED
    assert failed.error


async def test_restore_brings_a_backup_into_another_apps_database(env: Env) -> None:
    prod = await env.app_with_db("prod")
    review = await env.app_with_db("prod-pr-3")
    await fill(prod, rows=120)
    await env.backups.capture("prod")
    await as_tenant(review, "CREATE TABLE leftover (id int)")
    status, out = await slipway(
        "pg-backups", "restore", "prod", "b001", "prod-pr-3", environ=job_env(env)
    )
    assert status == 0, out
    assert await query(review, "SELECT count(*) FROM customers") == [(120,)]
    status, out = await slipway(
        "pg-backups", "restore", "prod", "b009", "prod-pr-3", environ=job_env(env)
    )
    assert status == 1
    assert "b009" in out


async def test_without_backup_settings_the_entries_say_what_is_missing(env: Env) -> None:
    status, out = await slipway(
        "pg-backups", "tick", "prod", "DATABASE", environ=control_secret(env)
    )
    assert status == 2
    assert "SLIPWAY_BACKUP_BUCKET" in out
    no_key = {k: v for k, v in job_env(env).items() if k != "SLIPWAY_BACKUP_KEY"}
    status, out = await slipway("pg-backups", "run", "prod", "b001", environ=no_key)
    assert status == 2
    assert "SLIPWAY_BACKUP_KEY" in out
