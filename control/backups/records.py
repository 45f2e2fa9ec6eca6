"""Backups, schedules and restores in the state store: their queries (the tables are in
``control/store/schema.py`` with every other, migrations 0010 and 0012).

Queries run on a store ``Tx``'s connection, so a backup's record and the
app lookup that authorises it commit together.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from control.errors import NotFound
from control.models import App
from control.store.queries import Tx
from control.store.schema import (
    apps,
    pg_backup_owners,
    pg_backup_schedules,
    pg_backups,
    pg_restores,
)

# Declared here before they joined the others in schema.py: importable from here still.
__all__ = ["pg_backup_owners", "pg_backup_schedules", "pg_backups", "pg_restores"]


class Status(enum.Enum):
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Backup:
    id: int
    app: str
    num: int
    kind: str
    addon: str
    resource: str
    status: Status
    error: str
    object_key: str
    size: int | None
    dump_size: int | None
    object_sha256: str | None
    dump_sha256: str | None
    tables: dict[str, list[int]] | None
    started_at: float
    finished_at: float | None
    verified_at: float | None
    #: The control-plane process capturing it; None for a backup Job's.
    owner: str | None = None

    @property
    def name(self) -> str:
        return f"{'a' if self.kind == 'scheduled' else 'b'}{self.num:03d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    app: str
    addon: str
    hour: int
    minute: int
    timezone: str
    daily: int
    weekly: int
    created_at: float
    last_run_at: float | None = field(default=None)


def _backup(row: sa.Row[Any], app: str) -> Backup:
    return Backup(
        id=row.id,
        app=app,
        num=row.num,
        kind=row.kind,
        addon=row.addon,
        resource=row.resource,
        status=Status(row.status),
        error=row.error,
        object_key=row.object_key,
        size=row.size,
        dump_size=row.dump_size,
        object_sha256=row.object_sha256,
        dump_sha256=row.dump_sha256,
        tables=row.tables,
        started_at=row.started_at,
        finished_at=row.finished_at,
        verified_at=row.verified_at,
        owner=row.owner,
    )


def parse_name(text: str) -> int | None:
    """b001 / a012 / 12 -> 12; None when it is no backup name."""
    digits = text[1:] if text[:1] in ("a", "b") else text
    return int(digits) if digits.isdigit() and len(digits) <= 9 else None


async def add_backup(
    tx: Tx,
    app: App,
    *,
    kind: str,
    addon: str,
    resource: str,
    key_prefix: str,
    now: float,
    owner: str | None = None,
) -> Backup:
    last = await tx.conn.scalar(
        sa.select(sa.func.max(pg_backups.c.num)).where(pg_backups.c.app_id == app.id)
    )
    num = (last or 0) + 1
    letter = "a" if kind == "scheduled" else "b"
    key = f"{key_prefix}{app.id}/{letter}{num:03d}-{int(now)}.dump.enc"
    result = await tx.conn.execute(
        pg_backups.insert().values(
            app_id=app.id,
            num=num,
            kind=kind,
            addon=addon,
            resource=resource,
            status=Status.RUNNING.value,
            object_key=key,
            started_at=now,
            owner=owner,
        )
    )
    inserted = result.inserted_primary_key
    assert inserted is not None
    return await get_backup(tx, app, str(num), backup_id=int(inserted[0]))


async def get_backup(tx: Tx, app: App, name: str, *, backup_id: int | None = None) -> Backup:
    where = pg_backups.c.app_id == app.id
    if backup_id is not None:
        where = sa.and_(where, pg_backups.c.id == backup_id)
    else:
        num = parse_name(name)
        if num is None:
            raise NotFound(f"{name!r} is no backup name (like b001)", id="backup_not_found")
        where = sa.and_(where, pg_backups.c.num == num)
    row = (await tx.conn.execute(pg_backups.select().where(where))).first()
    if row is None:
        raise NotFound(f"{app.name} has no backup {name}", id="backup_not_found")
    return _backup(row, app.name)


async def list_backups(tx: Tx, app: App) -> list[Backup]:
    query = pg_backups.select().where(pg_backups.c.app_id == app.id).order_by(pg_backups.c.num)
    return [_backup(row, app.name) for row in await tx.conn.execute(query)]


async def update_backup(tx: Tx, backup: Backup, **values: Any) -> None:
    """Change a backup's record; a cancelled one is final and keeps what it says (a backup
    Job killed by its cancel may still write before it dies)."""
    if "status" in values and isinstance(values["status"], Status):
        values["status"] = values["status"].value
    await tx.conn.execute(
        pg_backups.update()
        .where(pg_backups.c.id == backup.id, pg_backups.c.status != Status.CANCELLED.value)
        .values(**values)
    )


async def delete_backup(tx: Tx, backup: Backup) -> None:
    await tx.conn.execute(pg_backups.delete().where(pg_backups.c.id == backup.id))


async def last_successes(tx: Tx) -> dict[tuple[str, str], float]:
    """(app, add-on) -> finish time of its newest verified backup."""
    query = (
        sa.select(apps.c.name, pg_backups.c.addon, sa.func.max(pg_backups.c.finished_at))
        .join(apps, apps.c.id == pg_backups.c.app_id)
        .where(pg_backups.c.status == Status.SUCCEEDED.value)
        .group_by(apps.c.name, pg_backups.c.addon)
    )
    return {(row[0], row[1]): float(row[2]) for row in await tx.conn.execute(query)}


async def fail_interrupted(
    tx: Tx,
    *,
    now: float,
    started_before: float | None = None,
    error: str = "the control plane stopped during the backup",
) -> int:
    """Backups left running by a stopped control plane (or, ``started_before`` a time no
    backup Job outlives, by a Job that died): failed, with the reason."""
    where: sa.ColumnElement[bool] = pg_backups.c.status.in_(
        [Status.RUNNING.value, Status.VERIFYING.value]
    )
    if started_before is not None:
        where = sa.and_(where, pg_backups.c.started_at < started_before)
    result = await tx.conn.execute(
        pg_backups.update()
        .where(where)
        .values(status=Status.FAILED.value, error=error, finished_at=now)
    )
    return int(result.rowcount or 0)


async def heartbeat(tx: Tx, owner: str, *, now: float, forget_before: float) -> None:
    """``owner`` lives at ``now``; owners silent since ``forget_before`` are forgotten."""
    await tx.conn.execute(
        pg_backup_owners.delete().where(
            sa.or_(pg_backup_owners.c.owner == owner, pg_backup_owners.c.seen_at < forget_before)
        )
    )
    await tx.conn.execute(pg_backup_owners.insert().values(owner=owner, seen_at=now))


async def fail_orphaned(tx: Tx, *, now: float, alive_since: float, me: str) -> int:
    """Backups and restores running in a control-plane process that stopped (no
    heartbeat since ``alive_since``, or, for a backup, none recorded: a record from
    before owners): failed. How many.

    Backup Jobs' records (no owner) are left to the deadline check: ``fail_interrupted``
    with ``started_before``; restores with no owner (Jobs') to ``fail_dead_restores``.
    This is only called where captures run in-process.
    """
    alive = sa.select(pg_backup_owners.c.owner).where(pg_backup_owners.c.seen_at >= alive_since)
    result = await tx.conn.execute(
        pg_backups.update()
        .where(
            pg_backups.c.status.in_([Status.RUNNING.value, Status.VERIFYING.value]),
            sa.or_(
                pg_backups.c.owner.is_(None),
                # The caller lives, whatever its last beat says.
                sa.and_(pg_backups.c.owner != me, pg_backups.c.owner.not_in(alive)),
            ),
        )
        .values(
            status=Status.FAILED.value,
            error="the control plane stopped during the backup",
            finished_at=now,
        )
    )
    restores = await tx.conn.execute(
        pg_restores.update()
        .where(
            pg_restores.c.status == Status.RUNNING.value,
            pg_restores.c.owner.is_not(None),
            pg_restores.c.owner != me,
            pg_restores.c.owner.not_in(alive),
        )
        .values(
            status=Status.FAILED.value,
            error="the process running the restore stopped before recording how it ended",
            finished_at=now,
        )
    )
    return int(result.rowcount or 0) + int(restores.rowcount or 0)


def _schedule(row: sa.Row[Any], app: str) -> Schedule:
    return Schedule(
        app=app,
        addon=row.addon,
        hour=row.hour,
        minute=row.minute,
        timezone=row.timezone,
        daily=row.daily,
        weekly=row.weekly,
        created_at=row.created_at,
        last_run_at=row.last_run_at,
    )


async def put_schedule(tx: Tx, app: App, schedule: Schedule) -> None:
    await tx.conn.execute(
        pg_backup_schedules.delete().where(
            pg_backup_schedules.c.app_id == app.id, pg_backup_schedules.c.addon == schedule.addon
        )
    )
    await tx.conn.execute(
        pg_backup_schedules.insert().values(
            app_id=app.id,
            addon=schedule.addon,
            hour=schedule.hour,
            minute=schedule.minute,
            timezone=schedule.timezone,
            daily=schedule.daily,
            weekly=schedule.weekly,
            created_at=schedule.created_at,
            last_run_at=schedule.last_run_at,
        )
    )


async def remove_schedule(tx: Tx, app: App, addon: str) -> bool:
    result = await tx.conn.execute(
        pg_backup_schedules.delete().where(
            pg_backup_schedules.c.app_id == app.id, pg_backup_schedules.c.addon == addon
        )
    )
    return bool(result.rowcount)


async def list_schedules(tx: Tx, app: App | None = None) -> list[Schedule]:
    query = sa.select(pg_backup_schedules, apps.c.name.label("app_name")).join(
        apps, apps.c.id == pg_backup_schedules.c.app_id
    )
    if app is not None:
        query = query.where(pg_backup_schedules.c.app_id == app.id)
    return [_schedule(row, row.app_name) for row in await tx.conn.execute(query)]


async def claim_run(tx: Tx, item: Schedule, *, now: float) -> bool:
    """Take ``item``'s due run: True for exactly one of the callers that read the same
    ``last_run_at`` (control replicas ticking together), False for the others.

    A compare-and-set in one statement, its app found by a sub-select so the UPDATE is
    the transaction's first statement: PostgreSQL re-checks the WHERE on the row the
    winner committed, and SQLite takes its write lock before reading anything.
    """
    last = pg_backup_schedules.c.last_run_at
    seen = last.is_(None) if item.last_run_at is None else last == item.last_run_at
    app_id = sa.select(apps.c.id).where(apps.c.name == item.app).scalar_subquery()
    result = await tx.conn.execute(
        pg_backup_schedules.update()
        .where(
            pg_backup_schedules.c.app_id == app_id,
            pg_backup_schedules.c.addon == item.addon,
            # The same schedule, not one put again since it was read.
            pg_backup_schedules.c.created_at == item.created_at,
            seen,
        )
        .values(last_run_at=now)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Restore:
    """A restore, in the control plane's process or as a Job: ``source_app``'s ``backup``
    into ``app``'s ``addon``."""

    id: int
    app: str
    addon: str
    source_app: str
    backup: str
    #: running, then succeeded, failed or cancelled.
    status: Status
    error: str
    started_at: float
    finished_at: float | None
    #: The control-plane process running it in its own process; None for a Job's.
    owner: str | None = None

    @property
    def name(self) -> str:
        """r007: ids count restores of every app, so an app's names may skip numbers."""
        return f"r{self.id:03d}"


def parse_restore_name(text: str) -> int | None:
    """r007 / r7 -> 7; None when it is no restore name."""
    digits = text[1:] if text[:1] == "r" else ""
    return int(digits) if digits.isdigit() and len(digits) <= 9 else None


def _restore(row: sa.Row[Any], app: str) -> Restore:
    return Restore(
        id=row.id,
        app=app,
        addon=row.addon,
        source_app=row.source_app,
        backup=row.backup,
        status=Status(row.status),
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        owner=row.owner,
    )


async def add_restore(
    tx: Tx,
    app: App,
    *,
    addon: str,
    source_app: str,
    backup: str,
    now: float,
    owner: str | None = None,
) -> Restore:
    result = await tx.conn.execute(
        pg_restores.insert().values(
            app_id=app.id,
            addon=addon,
            source_app=source_app,
            backup=backup,
            status=Status.RUNNING.value,
            started_at=now,
            owner=owner,
        )
    )
    inserted = result.inserted_primary_key
    assert inserted is not None
    return await get_restore(tx, app, int(inserted[0]))


async def get_restore(tx: Tx, app: App, restore_id: int) -> Restore:
    row = (
        await tx.conn.execute(
            pg_restores.select().where(
                pg_restores.c.app_id == app.id, pg_restores.c.id == restore_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"{app.name} has no restore {restore_id}", id="restore_not_found")
    return _restore(row, app.name)


async def running_restores(tx: Tx, app: App) -> list[Restore]:
    """The app's restores still running, oldest first."""
    query = (
        pg_restores.select()
        .where(pg_restores.c.app_id == app.id, pg_restores.c.status == Status.RUNNING.value)
        .order_by(pg_restores.c.id)
    )
    return [_restore(row, app.name) for row in await tx.conn.execute(query)]


async def finish_restore(
    tx: Tx, restore: Restore, *, status: Status, error: str, now: float
) -> bool:
    """Settle a running restore; False when it was settled already (a retried pod, or a
    cancel: a cancelled restore's record is final, whatever its Job writes after)."""
    result = await tx.conn.execute(
        pg_restores.update()
        .where(pg_restores.c.id == restore.id, pg_restores.c.status == Status.RUNNING.value)
        .values(status=status.value, error=error, finished_at=now)
    )
    return result.rowcount == 1


async def note_cancelled_restore(tx: Tx, restore: Restore, *, error: str) -> None:
    """Say on a cancelled restore's record what its run found (it had committed before
    the cancel reached it); its status stays cancelled."""
    await tx.conn.execute(
        pg_restores.update()
        .where(pg_restores.c.id == restore.id, pg_restores.c.status == Status.CANCELLED.value)
        .values(error=error)
    )


async def fail_dead_restores(tx: Tx, *, now: float, started_before: float) -> int:
    """Restores still running past the time no Job outlives: failed."""
    result = await tx.conn.execute(
        pg_restores.update()
        .where(
            pg_restores.c.status == Status.RUNNING.value,
            pg_restores.c.started_at < started_before,
        )
        .values(
            status=Status.FAILED.value,
            error="the restore Job ended without a result (past its deadline)",
            finished_at=now,
        )
    )
    return int(result.rowcount or 0)
