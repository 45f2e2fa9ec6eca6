"""``slipway pg-backups run|tick|restore``: one backup in this process, as a Kubernetes Job runs it.

The control plane's image, with the control plane's env (its Secret): the
store (SLIPWAY_DATABASE_URL), the shared server's admin DSN, SLIPWAY_BACKUP_*.
A dedicated instance's admin credentials are its add-on's URL, read from
the store like the rest of the add-on's record. The
record in the store moves exactly as it does when the control plane
captures in its own process; the exit status says how it ended (0: succeeded,
or nothing was due; 1: failed or cancelled), which the Job's status shows.
SIGTERM (the Job deleted by pg:backups:cancel) stops a restore at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable

import click

from control.backups.records import Backup, Status
from control.backups.service import Backups, backups_for
from control.backups.settings import backup_settings_from_env
from control.cli_options import DB, LOG_LEVEL, POSTGRES_ADMIN_DSN
from control.errors import ControlError
from control.store.db import Store
from kit import logfmt

log = logging.getLogger(__name__)


@click.group("pg-backups")
def pg_backups() -> None:
    """Run one backup here, as the control plane's backup Jobs do (docs/kubernetes.md)."""


@pg_backups.command("run")
@click.argument("app")
@click.argument("backup")
@DB
@POSTGRES_ADMIN_DSN
@LOG_LEVEL
def run(app: str, backup: str, db_url: str, postgres_admin_dsn: str | None, log_level: str) -> None:
    """Capture and verify BACKUP of APP, recorded running by the control plane."""
    logfmt.configure(log_level)

    async def go(store: Store) -> Backup | None:
        backups = _backups(store, postgres_admin_dsn)
        try:
            return await backups.run_recorded(app, backup)
        finally:
            await backups.close()

    _exit(_run(db_url, go))


@pg_backups.command("tick")
@click.argument("app")
@click.argument("addon")
@DB
@POSTGRES_ADMIN_DSN
@LOG_LEVEL
def tick(app: str, addon: str, db_url: str, postgres_admin_dsn: str | None, log_level: str) -> None:
    """The scheduled capture of APP's ADDON if it is due (a CronJob's command)."""
    logfmt.configure(log_level)

    async def go(store: Store) -> Backup | None:
        backups = _backups(store, postgres_admin_dsn)
        try:
            done = await backups.run_schedule(app, addon, time.time())
        finally:
            await backups.close()
        if done is None:
            log.info("no scheduled backup due", extra={"app": app, "addon": addon})
        return done

    _exit(_run(db_url, go))


@pg_backups.command("restore")
@click.argument("app")
@click.argument("backup")
@click.argument("target_app")
@click.argument("target_addon", default="DATABASE")
@click.option(
    "--record",
    type=int,
    default=None,
    help="The restore's record in the store, which this settles (the control plane's Job).",
)
@DB
@POSTGRES_ADMIN_DSN
@LOG_LEVEL
def restore(
    app: str,
    backup: str,
    target_app: str,
    target_addon: str,
    record: int | None,
    db_url: str,
    postgres_admin_dsn: str | None,
    log_level: str,
) -> None:
    """Restore APP's BACKUP into TARGET_APP's TARGET_ADDON, as pg:backups:restore does (for a
    restore too long for a request: run it as a Job of this image; the control plane's
    Jobs pass --record, whose record says what to restore)."""
    logfmt.configure(log_level)

    async def go(store: Store) -> Backup | None:
        backups = _backups(store, postgres_admin_dsn)
        # Deleting the Job (pg:backups:cancel) sends its pod SIGTERM: pg_restore, in a
        # process group of its own, is killed with its group and its backend ended.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(
            signal.SIGTERM, backups.stop_restores, "the restore's process got SIGTERM"
        )
        try:
            if record is None:
                # Recorded as this process's: its heartbeat keeps the record its own.
                async with backups.beating():
                    return await backups.restore(
                        app, backup, target_app=target_app, target=target_addon
                    )
            done = await backups.run_restore_record(target_app, record)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            await backups.close()
        if done.status is not Status.SUCCEEDED:
            log.error(
                "restore did not succeed",
                extra={"app": target_app, "status": done.status.value, "error": done.error},
            )
            raise SystemExit(1)
        return await backups.get(done.source_app, done.backup)

    done = _run(db_url, go)
    assert done is not None
    log.info("restored", extra={"app": app, "backup": done.name, "into": target_app})
    raise SystemExit(0)


class _LoggedLines:
    """What the control plane would say in the app's log stream, in this Job's log."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        log.info("backup output", extra={"app": app, "line": text})


def _backups(store: Store, admin_dsn: str | None) -> Backups:
    try:
        settings = backup_settings_from_env(os.environ)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if settings is None:
        raise click.UsageError("SLIPWAY_BACKUP_BUCKET is not set: backups are off")
    backups = backups_for(
        settings,
        store=store,
        admin_dsn=admin_dsn,
        sink=_LoggedLines(),
        registry=None,
        dedicated=True,  # which add-on it is about is in the store
    )
    assert backups is not None
    return backups


def _run(db_url: str, go: Callable[[Store], Awaitable[Backup | None]]) -> Backup | None:
    async def main() -> Backup | None:
        store = Store.open(db_url)
        try:
            return await go(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except ControlError as exc:
        log.error("backup did not run", extra={"error": str(exc)})
        raise SystemExit(1) from None


def _exit(done: Backup | None) -> None:
    if done is None or done.status is Status.SUCCEEDED:
        if done is not None:
            log.info("backup succeeded", extra={"app": done.app, "backup": done.name})
        raise SystemExit(0)
    log.error(
        "backup did not succeed",
        extra={"app": done.app, "backup": done.name, "status": done.status.value},
    )
    raise SystemExit(1)
