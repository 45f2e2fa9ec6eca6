"""Long because: every pg:backups operation, the scheduler's tick and the metrics share one state.
Postgres backups: capture, verify, list, download, restore, cancel, delete, schedules.

A backup is ``succeeded`` only after its object was restored into a scratch
database and matched the source's per-table rows and checksums at dump time;
until then it is ``running`` or ``verifying``, and any failure leaves it
``failed`` with the reason. The last verified success per add-on is a metric
and, past 1.5 schedule intervals, a line in the app's log stream and a red
health (``health``).

Blocking work (pg_dump, pg_restore, boto3) runs in threads; this module is
the async shell around ``pg.py`` and ``objects.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from control.addons.instances import APP_PREFIX
from control.backups import crypto, objects, pg, records, schedule
from control.backups.pg import BackupFailed, Cancelled, Job, Stats
from control.backups.records import Backup, Restore, Schedule, Status
from control.backups.settings import BackupSettings
from control.builds.model import LogSink, NoSink
from control.errors import Conflict, ControlError, NotFound, Unprocessable
from control.models import Addon, App

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from control.store.db import Store
    from control.store.queries import Tx

log = logging.getLogger(__name__)

#: Retention when a schedule names none: Heroku's for its standard plans.
DAILY = 7
WEEKLY = 4
#: How often the scheduler looks for due schedules and stale add-ons.
TICK = 30.0
#: A CronJob's pod may start this early by its node's clock and still take the day's run.
EARLY = 300.0
#: How often a request waiting for a backup Job's result reads its record.
POLL = 2.0
#: A Job's record still running this long past its deadline belongs to a Job that died
#: (its pod evicted or deleted by hand): it is marked failed.
JOB_GRACE = 600.0
#: How often a control-plane process capturing in-process says in the store that it lives.
HEARTBEAT = 10.0
#: A backup whose owner was silent this long belongs to a process that stopped: three
#: missed beats, so a busy store or a long pause is not taken for a death.
OWNER_SILENCE = 3 * HEARTBEAT
#: An owner silent a day is forgotten (its backups were failed long before).
FORGET_OWNER = 86400.0
#: How often a running restore reads its record, to stop when a cancel marked it there
#: (asked of another replica, or of the control plane while its Job runs the restore).
RESTORE_POLL = POLL
#: How long a cancel waits for a restore of this process to stop and settle its record.
CANCEL_WAIT = 60.0


class RestoreCancelled(Conflict):
    """The restore a request was waiting for was cancelled (pg:backups:cancel)."""

    default_id = "restore_cancelled"


@dataclass(slots=True)
class _Restoring:
    """A restore running in this process: its processes, and when its record settled."""

    job: Job
    settled: asyncio.Event


def process_owner() -> str:
    """This process among the control plane's replicas: host, pid, and a nonce (a pid is
    reused after a restart, in a container nearly always)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Launcher(Protocol):
    """Where captures and schedules run instead of this process (``kube.KubeBackupJobs``)."""

    @property
    def deadline(self) -> float:
        """The longest one backup may run there, seconds."""

    async def start(self, backup: Backup) -> None:
        """Run the capture and verification of ``backup`` (recorded ``running``)."""

    async def start_restore(self, restore: Restore, resource: str) -> None:
        """Run ``restore`` (recorded ``running``) into the add-on ``resource``."""

    async def cancel(self, item: Backup | Restore) -> None:
        """Stop the capture's or the restore's Job; already gone is no error."""

    async def schedule(self, item: Schedule, resource: str) -> None:
        """Make ``item`` run at its time (replacing an earlier one for its add-on)."""

    async def unschedule(self, app: str, addon: str) -> None:
        """Stop the add-on's scheduled runs; none is no error."""


@dataclass(frozen=True, slots=True)
class Download:
    backup: Backup
    url: str
    #: The data key of this one backup (base64): the object at ``url`` is ciphertext.
    key: str


@dataclass(frozen=True, slots=True)
class Health:
    addon: str
    #: green: a verified backup within 1.5 intervals (or no schedule); red: stale.
    state: str
    last_success: float | None
    reason: str


def _clock() -> float:
    return time.time()


class Backups:
    def __init__(
        self,
        *,
        store: Store,
        admin_dsn: str | None,
        s3: S3Client,
        settings: BackupSettings,
        sink: LogSink | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = _clock,
        launcher: Launcher | None = None,
        owner: str | None = None,
    ) -> None:
        """``owner``: this process among the replicas (``process_owner()`` by default);
        ``admin_dsn``: the shared PostgreSQL's admin (None: only dedicated instances,
        each backed up as its own admin); ``launcher``: captures and schedules run as Jobs
        there; None: in this process, scheduled by ``run``."""
        self._store = store
        self._launcher = launcher
        #: Recorded on the backups this process captures; its heartbeat says it lives.
        self.owner = owner or process_owner()
        self._admin_dsn = admin_dsn
        self._s3 = s3
        self.settings = settings
        self._master = crypto.master_key(settings.secret)
        self._sink = sink or NoSink()
        self._clock = clock
        self._jobs: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[Backup]] = {}
        #: Restores running in this process, by record id (``cancel`` stops them).
        self._restores: dict[int, _Restoring] = {}
        #: Why this process stopped its restores (``stop_restores``); None: it did not.
        self._stopped: str | None = None
        #: (app, add-on) -> last verified success; refreshed by ``refresh``.
        self._last: dict[tuple[str, str], float] = {}
        self._stale: set[tuple[str, str]] = set()
        #: Capture tasks that ended in an unexpected exception (``_run``).
        self._crashes = 0
        if registry is not None:
            registry.register(_Collector(self))

    # -- capture -------------------------------------------------------------------

    async def _postgres_addon(self, tx: Tx, app: str, ref: str) -> tuple[App, Addon]:
        found = await tx.get_app(app)
        addon = await tx.get_addon(found, ref)
        if addon.service != "postgres":
            raise Unprocessable(
                f"{addon.name} is a {addon.service} add-on: only Postgres add-ons have backups",
                id="not_postgres",
            )
        return found, addon

    async def start_capture(
        self, app: str, ref: str = "DATABASE", *, kind: str = "manual"
    ) -> Backup:
        """Record the backup and start it; ``wait`` for it with ``wait``."""
        now = self._clock()
        async with self._store.tx() as tx:
            found, addon = await self._postgres_addon(tx, app, ref)
            running = [
                b for b in await records.list_backups(tx, found)
                if b.addon == addon.name and b.status in (Status.RUNNING, Status.VERIFYING)
            ]  # fmt: skip
            if running:
                raise Conflict(
                    f"{running[0].name} of {addon.name} is still running: wait for it or "
                    f"pg:backups:cancel {running[0].name}",
                    id="backup_running",
                )
            backup = await records.add_backup(
                tx,
                found,
                kind=kind,
                addon=addon.name,
                resource=addon.resource,
                key_prefix=self.settings.key_prefix,
                now=now,
                owner=self.owner if self._launcher is None else None,
            )
        if self._launcher is not None:
            try:
                await self._launcher.start(backup)
            except ControlError as exc:
                await self._update(
                    backup, status=Status.FAILED, error=str(exc), finished_at=self._clock()
                )
                raise
            self._say(app, f"Backup {backup.name} of {addon.name} started ({kind}, as a Job)")
            return backup
        job = Job()
        self._jobs[backup.id] = job
        self._tasks[backup.id] = asyncio.create_task(
            self._run(backup, job), name=f"pg-backup {app} {backup.name}"
        )
        self._say(app, f"Backup {backup.name} of {addon.name} started ({kind})")
        return backup

    async def wait(self, backup: Backup) -> Backup:
        task = self._tasks.get(backup.id)
        if task is not None:
            return await asyncio.shield(task)
        if self._launcher is None:
            return await self.get(backup.app, backup.name)
        # A Job writes the record: read it until it settles, bounded by the Job's deadline.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._launcher.deadline + JOB_GRACE
        while True:
            found = await self.get(backup.app, backup.name)
            if found.status not in (Status.RUNNING, Status.VERIFYING) or loop.time() > give_up:
                return found
            await asyncio.sleep(POLL)

    async def capture(self, app: str, ref: str = "DATABASE", *, kind: str = "manual") -> Backup:
        return await self.wait(await self.start_capture(app, ref, kind=kind))

    async def run_recorded(self, app: str, name: str) -> Backup:
        """Capture and verify a backup recorded ``running`` elsewhere (the control plane
        that started a Job for it), here and now: ``slipway pg-backups run``."""
        backup = await self.get(app, name)
        if backup.status is not Status.RUNNING or backup.tables is not None:
            raise Conflict(
                f"{backup.name} is {backup.status.value}: only a backup recorded running and "
                "not yet captured is run",
                id="not_running",
            )
        job = Job()
        self._jobs[backup.id] = job
        try:
            return await self._capture_and_verify(backup, job)
        finally:
            self._jobs.pop(backup.id, None)

    async def _run(self, backup: Backup, job: Job) -> Backup:
        # Capture tasks are per request, outside the process's task set (a crashed one must
        # not stop the control plane), so this is their supervisor: a bug is logged with its
        # traceback, counted, and leaves the backup failed, never ``running`` until restart.
        try:
            return await self._capture_and_verify(backup, job)
        except Exception as exc:
            self._crashes += 1
            fields = {"app": backup.app, "backup": backup.name, "task": "pg-backup"}
            log.error("backup task crashed", exc_info=exc, extra=fields)
            reason = f"internal error ({type(exc).__name__})"
            try:
                current = await self.get(backup.app, backup.name)
                if current.status not in (Status.RUNNING, Status.VERIFYING):
                    return current  # it had finished: the crash was past its outcome
                await self._update(backup, status=Status.FAILED, error=reason)
            except Exception as again:
                log.error("backup task crash not recorded", exc_info=again, extra=fields)
                raise exc from None
            self._say(backup.app, f"Backup {backup.name} FAILED: {reason}")
            return await self.get(backup.app, backup.name)
        finally:
            self._jobs.pop(backup.id, None)
            self._tasks.pop(backup.id, None)

    async def _where(self, backup: Backup) -> pg.Instance:
        """The server ``backup``'s add-on is on: a dedicated instance's URL is in its
        add-on's record (the control plane made the instance and its password), so its
        add-on must still exist; a shared tenant's database is the recorded resource."""
        if not backup.resource.startswith(APP_PREFIX):
            return pg.instance(backup.resource, "", shared_admin_dsn=self._admin_dsn)
        async with self._store.tx(write=False) as tx:
            addon = await tx.get_addon(await tx.get_app(backup.app), backup.addon)
        if addon.resource != backup.resource:
            raise NotFound(
                f"{backup.addon}'s instance {backup.resource} is gone", id="addon_not_found"
            )
        return pg.instance(addon.resource, addon.url, shared_admin_dsn=self._admin_dsn)

    async def _capture_and_verify(self, backup: Backup, job: Job) -> Backup:
        def run_capture(where: pg.Instance) -> pg.Captured:
            writer = objects.MultipartWriter(
                self._s3, self.settings.bucket, backup.object_key, part_size=self.settings.part_size
            )
            return pg.capture(
                admin_dsn=where.admin_dsn,
                database=where.database,
                writer=writer,
                master=self._master,
                job=job,
                compress=self.settings.compress,
            )

        try:
            where = await self._where(backup)
            captured = await asyncio.to_thread(run_capture, where)
            await self._update(
                backup,
                status=Status.VERIFYING,
                size=captured.size,
                dump_size=captured.dump_size,
                object_sha256=captured.object_sha256,
                dump_sha256=captured.dump_sha256,
                tables=captured.tables,
                finished_at=self._clock(),
            )
            await self._verify(backup, captured.tables, captured.object_sha256, job, where)
        except Cancelled:
            await self._update(backup, status=Status.CANCELLED, finished_at=self._clock())
            self._say(backup.app, f"Backup {backup.name} cancelled")
            return await self.get(backup.app, backup.name)
        except (ControlError, crypto.BackupCorrupt, psycopg.Error, OSError) as exc:
            reason = _reason(exc)
            await self._update(backup, status=Status.FAILED, error=reason)
            log.error(
                "backup failed", extra={"app": backup.app, "backup": backup.name, "error": reason}
            )
            self._say(backup.app, f"Backup {backup.name} FAILED: {reason}")
            return await self.get(backup.app, backup.name)
        now = self._clock()
        await self._update(backup, status=Status.SUCCEEDED, verified_at=now)
        self._last[(backup.app, backup.addon)] = max(
            now, self._last.get((backup.app, backup.addon), 0)
        )
        self._say(backup.app, f"Backup {backup.name} succeeded and was verified by a restore")
        return await self.get(backup.app, backup.name)

    async def _verify(
        self, backup: Backup, tables: Stats, sha: str, job: Job, where: pg.Instance
    ) -> None:
        """Restore into a scratch database on the add-on's own server (a dedicated
        instance's major version, and its admin's rights there)."""
        await asyncio.to_thread(
            pg.verify,
            objects.read_object(self._s3, self.settings.bucket, backup.object_key),
            admin_dsn=where.admin_dsn,
            master=self._master,
            expected=tables,
            object_sha256=sha,
            job=job,
            scratch_prefix=self.settings.scratch_prefix,
        )

    async def reverify(self, app: str, name: str) -> Backup:
        """Verify a stored backup again (its object may have changed since)."""
        backup = await self.get(app, name)
        if backup.tables is None or backup.object_sha256 is None:
            raise Conflict(f"{backup.name} has no completed capture to verify", id="not_captured")
        # Outside the try: an instance destroyed since says so, and the backup stays as it is.
        where = await self._where(backup)
        try:
            await self._verify(backup, backup.tables, backup.object_sha256, Job(), where)
        except (ControlError, crypto.BackupCorrupt, psycopg.Error, OSError) as exc:
            reason = _reason(exc)
            await self._update(backup, status=Status.FAILED, error=f"verification: {reason}")
            self._say(app, f"Backup {backup.name} FAILED verification: {reason}")
        else:
            await self._update(backup, verified_at=self._clock())
        return await self.get(app, name)

    async def _update(self, backup: Backup, **values: object) -> None:
        async with self._store.tx() as tx:
            await records.update_backup(tx, backup, **values)

    def _say(self, app: str, text: str) -> None:
        self._sink.publish(app, "dyno", "pg-backups", text, self._clock())

    # -- reading -----------------------------------------------------------------------

    async def backups(self, app: str) -> list[Backup]:
        async with self._store.tx(write=False) as tx:
            return await records.list_backups(tx, await tx.get_app(app))

    async def get(self, app: str, name: str | None = None) -> Backup:
        """A backup by name (b001), or the newest succeeded one."""
        async with self._store.tx(write=False) as tx:
            found = await tx.get_app(app)
            if name is not None:
                return await records.get_backup(tx, found, name)
            done = [
                b for b in await records.list_backups(tx, found) if b.status is Status.SUCCEEDED
            ]
        if not done:
            raise NotFound(f"{app} has no succeeded backup: pg:backups:capture", id="no_backup")
        return done[-1]

    async def download(self, app: str, name: str | None = None) -> Download:
        backup = await self.get(app, name)
        if backup.status is not Status.SUCCEEDED:
            raise Conflict(f"{backup.name} is {backup.status.value}, not succeeded", id="not_ready")

        def sign() -> tuple[str, bytes]:
            head = self._s3.get_object(
                Bucket=self.settings.bucket,
                Key=backup.object_key,
                Range=f"bytes=0-{crypto.HEADER_SIZE - 1}",
            )["Body"].read()
            header = crypto.read_header(head, master=self._master)
            url = objects.presign(
                self._s3, self.settings.bucket, backup.object_key, expires=self.settings.url_expires
            )
            return url, header.data_key

        url, key = await asyncio.to_thread(sign)
        return Download(backup, url, base64.b64encode(key).decode())

    # -- restore, cancel, delete ---------------------------------------------------

    async def _restorable(self, app: str, name: str | None) -> Backup:
        backup = await self.get(app, name)
        if backup.status is not Status.SUCCEEDED:
            raise Conflict(
                f"{backup.name} is {backup.status.value}: only a verified backup is restored",
                id="not_ready",
            )
        return backup

    async def restore(
        self, app: str, name: str | None, *, target_app: str, target: str = "DATABASE"
    ) -> Backup:
        """Restore ``app``'s backup into ``target_app``'s add-on (the same app or another)
        in this process, recorded (``pg_restores``, owned by this process) so that
        ``cancel`` finds and stops it. Raises unless it succeeded: BackupFailed, or
        RestoreCancelled."""
        backup = await self._restorable(app, name)
        async with self._store.tx() as tx:
            found, addon = await self._postgres_addon(tx, target_app, target)
            # Refused here, before any record, when this process cannot reach it.
            pg.instance(addon.resource, addon.url, shared_admin_dsn=self._admin_dsn)
            restore = await records.add_restore(
                tx,
                found,
                addon=addon.name,
                source_app=app,
                backup=backup.name,
                now=self._clock(),
                owner=self.owner,
            )
        done = await self._run_restore(restore)
        if done.status is Status.CANCELLED:
            raise RestoreCancelled(
                f"the restore {done.name} of {app}'s {backup.name} into {addon.name} was "
                f"cancelled: {done.error or ROLLED_BACK}"
            )
        if done.status is not Status.SUCCEEDED:
            raise BackupFailed(done.error)
        return backup

    async def _run_restore(self, restore: Restore) -> Restore:
        """Run ``restore`` (recorded running) here, stoppable by ``cancel``, and settle its
        record; the record as it then is."""
        running = _Restoring(Job(), asyncio.Event())
        self._restores[restore.id] = running
        status, error = Status.SUCCEEDED, ""
        try:
            try:
                await self._restore_watched(restore, running.job)
            except Cancelled:
                # Stopped with its process (SIGTERM, shutdown) and not asked: a failure.
                status, error = (
                    (Status.FAILED, f"{self._stopped}: {ROLLED_BACK}")
                    if self._stopped is not None
                    else (Status.CANCELLED, "")
                )
            except ControlError as exc:
                status, error = Status.FAILED, str(exc)
            except (crypto.BackupCorrupt, psycopg.Error, OSError) as exc:
                status, error = Status.FAILED, f"restoring {restore.backup} failed: {_reason(exc)}"
            async with self._store.tx() as tx:
                mine = await records.finish_restore(
                    tx, restore, status=status, error=error, now=self._clock()
                )
                if not mine and status is Status.SUCCEEDED:
                    # Cancelled in the store (by another replica, or by the control plane
                    # while this is its Job) after pg_restore had committed.
                    await records.note_cancelled_restore(tx, restore, error=COMMITTED)
        finally:
            self._restores.pop(restore.id, None)
            running.settled.set()
        done = await self.get_restore(restore.app, restore.id)
        what = f"Restore {done.name} of {done.source_app}'s {done.backup} into {done.addon}"
        if done.status is Status.SUCCEEDED:
            self._say(
                restore.app,
                f"Restored {done.source_app}'s {done.backup} into {done.addon} ({done.name})",
            )
        elif done.status is Status.CANCELLED:
            self._say(restore.app, f"{what} cancelled: {done.error or ROLLED_BACK}")
        else:
            self._say(restore.app, f"{what} FAILED: {done.error}")
        return done

    async def _restore_watched(self, restore: Restore, job: Job) -> None:
        """pg_restore in a thread; meanwhile the record is read every ``RESTORE_POLL``: a
        cancel written there by another process stops it too."""
        backup = await self._restorable(restore.source_app, restore.backup)
        async with self._store.tx(write=False) as tx:
            _, addon = await self._postgres_addon(tx, restore.app, restore.addon)
        where = pg.instance(addon.resource, addon.url, shared_admin_dsn=self._admin_dsn)
        self._say(
            restore.app,
            f"Restoring {restore.source_app}'s {backup.name} into {addon.name} ({restore.name})",
        )
        work = asyncio.ensure_future(
            asyncio.to_thread(
                pg.restore,
                objects.read_object(self._s3, self.settings.bucket, backup.object_key),
                admin_dsn=where.admin_dsn,
                database=where.database,
                master=self._master,
                job=job,
                role=where.role,
            )
        )
        try:
            # Bounded by the restore: once cancelled, pg_restore is killed at once.
            while not work.done():
                await asyncio.wait({work}, timeout=RESTORE_POLL)
                if work.done() or job.cancelled.is_set():
                    continue
                if (await self.get_restore(restore.app, restore.id)).status is Status.CANCELLED:
                    job.cancel()
        finally:
            if not work.done():  # this task was cancelled: pg_restore must not go on alone
                job.cancel()
                await asyncio.wait({work})
        work.result()

    @property
    def restores_as_jobs(self) -> bool:
        """Whether a restore asked through the API runs as a Job (``start_restore``)."""
        return self._launcher is not None

    async def start_restore(
        self, app: str, name: str | None, *, target_app: str, target: str = "DATABASE"
    ) -> Restore:
        """Record a restore as ``restore`` would run it and start its Job; ``wait_restore``
        reads the record the Job settles. Only with a launcher (backups on Kubernetes)."""
        if self._launcher is None:
            raise Conflict("restores run in this process here: restore", id="not_jobs")
        backup = await self._restorable(app, name)
        async with self._store.tx() as tx:
            found, addon = await self._postgres_addon(tx, target_app, target)
            restore = await records.add_restore(
                tx,
                found,
                addon=addon.name,
                source_app=app,
                backup=backup.name,
                now=self._clock(),
            )
        try:
            await self._launcher.start_restore(restore, addon.resource)
        except ControlError as exc:
            async with self._store.tx() as tx:
                await records.finish_restore(
                    tx, restore, status=Status.FAILED, error=str(exc), now=self._clock()
                )
            raise
        self._say(target_app, f"Restoring {app}'s {backup.name} into {addon.name} (as a Job)")
        return restore

    async def get_restore(self, app: str, restore_id: int) -> Restore:
        async with self._store.tx(write=False) as tx:
            return await records.get_restore(tx, await tx.get_app(app), restore_id)

    async def wait_restore(self, restore: Restore) -> Restore:
        """Read the record until its Job settles it, bounded by the Job's deadline."""
        assert self._launcher is not None
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._launcher.deadline + JOB_GRACE
        while True:
            found = await self.get_restore(restore.app, restore.id)
            if found.status is not Status.RUNNING or loop.time() > give_up:
                return found
            await asyncio.sleep(POLL)

    async def run_restore_record(self, app: str, restore_id: int) -> Restore:
        """Run the restore recorded ``running`` for ``app`` here and settle its record
        (``slipway pg-backups restore ... --record ID``, its Job's command)."""
        restore = await self.get_restore(app, restore_id)
        if restore.status is not Status.RUNNING:
            raise Conflict(
                f"restore {restore.id} is {restore.status.value}: only a running one is run",
                id="not_running",
            )
        return await self._run_restore(restore)

    async def cancel(self, app: str, name: str | None = None) -> Backup | Restore:
        """Stop the app's running capture or restore (Heroku's pg:backups:cancel): the one
        named (b003, r007), or the newest started."""
        async with self._store.tx(write=False) as tx:
            found = await tx.get_app(app)
            backups = await records.list_backups(tx, found)
            restores = await records.running_restores(tx, found)
        running = [b for b in backups if b.status in (Status.RUNNING, Status.VERIFYING)]
        if name is not None:
            restore_id = records.parse_restore_name(name)
            running = [b for b in running if b.num == records.parse_name(name)]
            restores = [r for r in restores if restore_id is not None and r.id == restore_id]
        if not running and not restores:
            raise NotFound(
                f"{app} has no running {'backup or restore' if name is None else name}",
                id="not_running",
            )
        candidates: list[Backup | Restore] = [*running, *restores]
        newest = max(candidates, key=lambda item: item.started_at)
        if isinstance(newest, Restore):
            return await self._cancel_restore(newest)
        backup = newest
        if self._launcher is not None:
            # The record first: whatever the Job writes before it dies is then ignored.
            await self._update(backup, status=Status.CANCELLED, finished_at=self._clock())
            await self._launcher.cancel(backup)
            # A capture killed mid-upload leaves no object (the multipart upload is never
            # completed); one killed while verifying leaves a whole one: removed.
            await asyncio.to_thread(
                objects.delete_object, self._s3, self.settings.bucket, backup.object_key
            )
            self._say(app, f"Backup {backup.name} cancelled")
            return await self.get(app, backup.name)
        job = self._jobs.get(backup.id)
        if job is not None:
            job.cancel()
            task = self._tasks.get(backup.id)
            if task is not None:
                return await asyncio.shield(task)
        # Running in no process here (another replica stopped): mark it.
        await self._update(backup, status=Status.CANCELLED, finished_at=self._clock())
        return await self.get(app, backup.name)

    async def _cancel_restore(self, restore: Restore) -> Restore:
        here = self._restores.get(restore.id)
        if here is not None:
            # Its run settles the record: cancelled, or succeeded if it had committed.
            here.job.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT):
                    await here.settled.wait()
        # Elsewhere (its Job, another replica's process, or one that stopped): the record
        # first, which that run reads while it restores, and whatever it writes after is
        # ignored; then its Job goes.
        async with self._store.tx() as tx:
            marked = await records.finish_restore(
                tx, restore, status=Status.CANCELLED, error="", now=self._clock()
            )
        if marked and restore.owner is None:  # a Job's: its pod cannot say it in the app's log
            if self._launcher is not None:
                await self._launcher.cancel(restore)
            self._say(restore.app, f"Restore {restore.name} cancelled: its Job is deleted")
        return await self.get_restore(restore.app, restore.id)

    async def delete(self, app: str, name: str) -> Backup:
        backup = await self.get(app, name)
        if backup.status in (Status.RUNNING, Status.VERIFYING):
            raise Conflict(
                f"{backup.name} is running: pg:backups:cancel it first", id="backup_running"
            )
        await asyncio.to_thread(
            objects.delete_object, self._s3, self.settings.bucket, backup.object_key
        )
        async with self._store.tx() as tx:
            await records.delete_backup(tx, backup)
        return backup

    # -- schedules ---------------------------------------------------------------------

    async def set_schedule(
        self, app: str, ref: str, at: str, *, daily: int = DAILY, weekly: int = WEEKLY
    ) -> Schedule:
        when = schedule.parse_at(at)
        if not (1 <= daily <= 31 and 0 <= weekly <= 52):
            raise Unprocessable("retention: --daily 1..31, --weekly 0..52", id="invalid_retention")
        async with self._store.tx() as tx:
            found, addon = await self._postgres_addon(tx, app, ref)
            item = Schedule(
                app=app,
                addon=addon.name,
                hour=when.hour,
                minute=when.minute,
                timezone=when.timezone,
                daily=daily,
                weekly=weekly,
                created_at=self._clock(),
            )
            await records.put_schedule(tx, found, item)
            if self._launcher is not None:  # refused: the schedule is not stored either
                await self._launcher.schedule(item, addon.resource)
        return item

    async def unschedule(self, app: str, ref: str = "DATABASE") -> None:
        async with self._store.tx() as tx:
            found, addon = await self._postgres_addon(tx, app, ref)
            if not await records.remove_schedule(tx, found, addon.name):
                raise NotFound(f"{addon.name} has no backup schedule", id="no_schedule")
            if self._launcher is not None:
                await self._launcher.unschedule(app, addon.name)

    async def forget_addon(self, addon: Addon) -> None:
        """``addon`` is about to be destroyed (or its app deleted): its schedule and its
        CronJob go first, so no run fails on it later. A CronJob the API does not delete
        refuses the destroy (JobsUnavailable) while nothing of the add-on is gone yet."""
        if addon.service != "postgres":
            return
        if self._launcher is not None:
            await self._launcher.unschedule(addon.app, addon.name)
        async with self._store.tx() as tx:
            await records.remove_schedule(tx, await tx.get_app(addon.app), addon.name)

    async def schedules(self, app: str) -> list[Schedule]:
        async with self._store.tx(write=False) as tx:
            return await records.list_schedules(tx, await tx.get_app(app))

    async def tick(self, now: float) -> list[Backup]:
        """Run due schedules (one at a time), prune, refresh staleness; what ran.

        With a launcher the schedules are its (CronJobs): the tick only fails the records
        of Jobs that died and refreshes staleness.
        """
        async with self._store.tx(write=False) as tx:
            items = await records.list_schedules(tx)
        ran = []
        if self._launcher is None:
            for item in items:
                done = await self._run_due(item, now)
                if done is not None:
                    ran.append(done)
        else:
            async with self._store.tx() as tx:
                await records.fail_interrupted(
                    tx,
                    now=now,
                    started_before=now - self._launcher.deadline - JOB_GRACE,
                    error="the backup Job ended without a result (past its deadline)",
                )
                await records.fail_dead_restores(
                    tx, now=now, started_before=now - self._launcher.deadline - JOB_GRACE
                )
        await self.refresh(now, items)
        return ran

    async def run_schedule(self, app: str, ref: str, now: float) -> Backup | None:
        """The scheduled capture of one add-on if it is due, here and now (``slipway
        pg-backups tick``, its CronJob's command); None when it is not due or another
        run took it."""
        async with self._store.tx(write=False) as tx:
            found, addon = await self._postgres_addon(tx, app, ref)
            items = [s for s in await records.list_schedules(tx, found) if s.addon == addon.name]
        if not items:
            raise NotFound(f"{addon.name} of {app} has no backup schedule", id="no_schedule")
        return await self._run_due(items[0], now, early=EARLY)

    async def _run_due(self, item: Schedule, now: float, *, early: float = 0.0) -> Backup | None:
        at = schedule.At(item.hour, item.minute, item.timezone)
        when = schedule.next_run(at, item.last_run_at or item.created_at)
        if when > now + early:
            return None
        # Several control replicas tick the same schedules: the one whose claim changes
        # the row runs it, the others read a new last run and skip. An early run is
        # recorded at the time it stands for, so that time is not due again.
        async with self._store.tx() as tx:
            claimed = await records.claim_run(tx, item, now=max(now, when))
        if not claimed:
            log.info("scheduled backup taken by another run", extra={"app": item.app})
            return None
        try:
            done = await self.capture(item.app, item.addon, kind="scheduled")
        except ControlError as exc:
            self._say(item.app, f"Scheduled backup of {item.addon} did not start: {exc}")
            return None
        await self.prune(item)
        return done

    async def prune(self, item: Schedule) -> list[str]:
        """Delete the scheduled backups retention no longer keeps; their names."""
        backups = [
            b
            for b in await self.backups(item.app)
            if b.addon == item.addon and b.kind == "scheduled"
        ]
        done = [b for b in backups if b.status is Status.SUCCEEDED and b.finished_at is not None]
        keep = schedule.retained(
            [schedule.Kept(str(b.id), b.finished_at or 0.0) for b in done],
            daily=item.daily,
            weekly=item.weekly,
            timezone=item.timezone,
        )
        newest = max((b.started_at for b in done), default=0.0)
        gone = []
        for b in backups:
            settled = b.status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
            # Failures stay visible until a newer success replaces them.
            old_failure = b.status is not Status.SUCCEEDED and b.started_at < newest
            if settled and str(b.id) not in keep and (b.status is Status.SUCCEEDED or old_failure):
                await self.delete(item.app, b.name)
                gone.append(b.name)
        if gone:
            self._say(item.app, f"Retention removed {', '.join(gone)}")
        return gone

    async def refresh(self, now: float, items: Iterable[Schedule] | None = None) -> None:
        """Read the last successes; say once when an add-on's backups become stale."""
        async with self._store.tx(write=False) as tx:
            self._last = await records.last_successes(tx)
            if items is None:
                items = await records.list_schedules(tx)
        stale = set()
        for item in items:
            key = (item.app, item.addon)
            if schedule.stale(last_success=self._last.get(key), since=item.created_at, now=now):
                stale.add(key)
                if key not in self._stale:
                    last = self._last.get(key)
                    since = (
                        "ever"
                        if last is None
                        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last))
                    )
                    self._say(
                        item.app,
                        f"Backups of {item.addon} are STALE: no verified backup since {since}",
                    )
                    log.warning("backups stale", extra={"app": item.app, "addon": item.addon})
        self._stale = stale

    async def health(self, app: str) -> list[Health]:
        """Each Postgres add-on's backup health, read now (not from the last tick)."""
        now = self._clock()
        async with self._store.tx(write=False) as tx:
            found = await tx.get_app(app)
            addons = [a for a in await tx.list_addons(found) if a.service == "postgres"]
            items = {s.addon: s for s in await records.list_schedules(tx, found)}
            last = await records.last_successes(tx)
        out = []
        for addon in addons:
            when = last.get((app, addon.name))
            item = items.get(addon.name)
            red = item is not None and schedule.stale(
                last_success=when, since=item.created_at, now=now
            )
            reason = (
                "no verified backup within 1.5 schedule intervals" if red else
                "backups verified on schedule" if item is not None else "no backup schedule"
            )  # fmt: skip
            out.append(Health(addon.name, "red" if red else "green", when, reason))
        return out

    async def drop_orphans(self) -> int:
        """Remove the schedules (and CronJobs) of add-ons that are gone: left by destroys
        from before an add-on took its schedule with it (``forget_addon``). How many."""
        async with self._store.tx(write=False) as tx:
            orphans = []
            for item in await records.list_schedules(tx):
                app = await tx.get_app(item.app)
                try:
                    await tx.get_addon(app, item.addon)
                except NotFound:
                    orphans.append((app, item))
        for app, item in orphans:
            if self._launcher is not None:
                await self._launcher.unschedule(item.app, item.addon)
            async with self._store.tx() as tx:
                await records.remove_schedule(tx, app, item.addon)
            log.info("orphan backup schedule removed", extra={"app": item.app, "addon": item.addon})
        return len(orphans)

    async def sync_schedules(self) -> int:
        """Give every stored schedule its launcher's object (a CronJob), made again or
        replaced: schedules stored before backups ran as Jobs, or a CronJob deleted by
        hand, run again; orphans go (``drop_orphans``). How many were synced."""
        if self._launcher is None:
            return 0
        await self.drop_orphans()
        async with self._store.tx(write=False) as tx:
            items = await records.list_schedules(tx)
            found = []
            for item in items:
                addon = await tx.get_addon(await tx.get_app(item.app), item.addon)
                found.append((item, addon.resource))
        for item, resource in found:
            await self._launcher.schedule(item, resource)
        return len(found)

    async def heartbeat(self) -> None:
        """Say in the store that this process lives (its running backups are its own)."""
        now = self._clock()
        async with self._store.tx() as tx:
            await records.heartbeat(tx, self.owner, now=now, forget_before=now - FORGET_OWNER)

    async def fail_orphaned(self) -> int:
        """Fail the running backups of control-plane processes that stopped (silent past
        ``OWNER_SILENCE``); those of the replicas still beating go on. How many."""
        now = self._clock()
        async with self._store.tx() as tx:
            failed = await records.fail_orphaned(
                tx, now=now, alive_since=now - OWNER_SILENCE, me=self.owner
            )
        if failed:
            log.warning("backups of a stopped control plane marked failed", extra={"count": failed})
        return failed

    async def run(self, *, interval: float = TICK, heartbeat: float = HEARTBEAT) -> None:
        """The scheduler: a tick every ``interval`` until cancelled (a supervised task);
        capturing in-process, also this process's heartbeat every ``heartbeat``."""
        if self._launcher is not None:  # a Job outlives the control plane's restart
            await self._loop(interval)
            return
        await self.heartbeat()  # first: a replica starting now must not take ours for dead
        await self.fail_orphaned()
        await self.drop_orphans()
        async with asyncio.TaskGroup() as group:
            # Its own task: a scheduled capture holds the tick for its whole length.
            group.create_task(self._beat(heartbeat), name="pg-backups heartbeat")
            await self._loop(interval)

    @contextlib.asynccontextmanager
    async def beating(self, every: float = HEARTBEAT) -> AsyncIterator[None]:
        """This process's heartbeat while the block runs: a process outside the control
        plane restoring in-process (``slipway pg-backups restore`` with no record) keeps
        its restore's record its own, as ``run`` does for the control plane's."""
        await self.heartbeat()
        task = asyncio.create_task(self._beat(every), name="pg-backups heartbeat")
        task.add_done_callback(_said_if_it_died)
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.heartbeat()

    async def _loop(self, interval: float) -> None:
        synced = self._launcher is None
        while True:
            if not synced:  # until it worked once: the API may be down a while
                try:
                    count = await self.sync_schedules()
                except ControlError as exc:
                    log.warning("backup schedules not synced", extra={"error": str(exc)})
                else:
                    synced = True
                    log.info("backup schedules synced", extra={"count": count})
            if self._launcher is None:  # a replica that stopped since: its backups fail
                await self.fail_orphaned()
            await self.tick(self._clock())
            await asyncio.sleep(interval)

    def stop_restores(self, reason: str) -> None:
        """Stop the restores running in this process (it is stopping: SIGTERM to a restore
        Job's pod, or the control plane's shutdown): each not cancelled already is failed
        with ``reason``."""
        self._stopped = reason
        for running in list(self._restores.values()):
            running.job.cancel()

    async def close(self) -> None:
        self.stop_restores("the process running the restore stopped")
        for job in list(self._jobs.values()):
            job.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: What a cancelled restore leaves: pg_restore runs in one transaction (pg.restore).
ROLLED_BACK = (
    "pg_restore was stopped before its COMMIT, so its one transaction rolled back and the "
    "database keeps the data it had"
)
#: What a restore that had committed before its cancel reached it says on its record.
COMMITTED = "cancelled after pg_restore had committed: the database holds the backup's data"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        return f"PostgreSQL: {exc.sqlstate or type(exc).__name__}"
    return str(exc) or type(exc).__name__


class _Collector(Collector):
    """Reads the snapshot ``refresh`` keeps; never queries on a scrape."""

    def __init__(self, backups: Backups) -> None:
        self._backups = backups

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        last = GaugeMetricFamily(
            "slipway_backup_last_success_timestamp_seconds",
            "When the add-on's newest verified backup finished (epoch seconds).",
            labels=["app", "addon"],
        )
        stale = GaugeMetricFamily(
            "slipway_backup_stale",
            "1 when a scheduled add-on has no verified backup within 1.5 intervals.",
            labels=["app", "addon"],
        )
        for (app, addon), when in sorted(self._backups._last.items()):
            last.add_metric([app, addon], when)
        for app, addon in sorted(self._backups._stale):
            stale.add_metric([app, addon], 1.0)
        yield last
        yield stale
        yield CounterMetricFamily(
            "slipway_backup_task_crashes",
            "Backup capture tasks that ended in an unexpected exception (a bug).",
            value=self._backups._crashes,
        )


def backups_for(
    settings: BackupSettings | None,
    *,
    store: Store,
    admin_dsn: str | None,
    sink: LogSink | None,
    registry: CollectorRegistry | None,
    launcher: Launcher | None = None,
    dedicated: bool = False,
) -> Backups | None:
    """The control plane's Backups: None unless a bucket is set and there are Postgres
    add-ons, on the shared server (``admin_dsn``) or ``dedicated`` instances."""
    if settings is None or (admin_dsn is None and not dedicated):
        return None
    import boto3  # noqa: PLC0415  (only a control plane with backups loads it)

    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    return Backups(
        store=store,
        admin_dsn=admin_dsn,
        s3=s3,
        settings=settings,
        sink=sink,
        registry=registry,
        launcher=launcher,
    )


def _said_if_it_died(task: asyncio.Task[None]) -> None:
    """The heartbeat of a ``beating`` block ended by an error: said at once, since the block
    goes on without it and another replica may take its restore for orphaned."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error(
            "backup heartbeat stopped: another replica may fail this process's restore; "
            "check the store's reachability",
            extra={"error": repr(exc)},
        )
