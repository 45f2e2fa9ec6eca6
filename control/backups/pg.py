"""pg_dump into an encrypted S3 object, and back out through pg_restore (blocking; run in a thread).

Capture exports a snapshot from a REPEATABLE READ transaction, counts and
checksums every table in it, and has pg_dump read the same snapshot
(``--snapshot``): the figures describe exactly the rows in the dump.
Verification restores the object into a scratch database and compares.

Both sides connect as the add-on admin (a tenant role is held to its plan's
statement_timeout by the watchdog, which a long dump would pass); a restore
into an app's database runs ``SET ROLE`` to the tenant (``--role``), so what
it creates belongs to the tenant. Which admin is ``instance``'s answer: the
shared server's, or a dedicated instance's own (``Instance``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from control.addons.instances import APP_PREFIX
from control.backups.crypto import BackupCorrupt, Decryptor, Encryptor
from control.backups.objects import MultipartWriter
from control.errors import ControlError, Unprocessable

log = logging.getLogger(__name__)

#: Bytes read from pg_dump's stdout at a time.
PIPE_CHUNK = 1024 * 1024
#: What a table's checksum is: independent of row order, so a restore that loads rows
#: in another order still matches; hashtext of the row's text form catches any changed value.
_STATS = "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {} AS t"
_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1, 2
"""

Stats = dict[str, list[int]]


class BackupFailed(ControlError):
    """pg_dump, pg_restore or a check failed; the message says which and why."""


class Cancelled(ControlError):
    """The backup was cancelled (pg:backups:cancel)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """The server an add-on's database is on, as its admin sees it."""

    #: The admin's DSN on that server (it carries the password: never logged).
    admin_dsn: str
    #: The add-on's database there.
    database: str
    #: The role a restore creates objects as (``--role``); None: the admin, who owns them.
    role: str | None

    def __repr__(self) -> str:
        return f"Instance(database={self.database!r}, role={self.role!r})"


def instance(resource: str, url: str, *, shared_admin_dsn: str | None) -> Instance:
    """Where the add-on ``resource`` (its URL ``url``) is backed up and restored (pure).

    A dedicated instance (``addon-...``, a StatefulSet on Kubernetes) has one user, the
    image's ``POSTGRES_USER``, which is its superuser and the owner of its one database:
    its URL is its admin's DSN (``sslmode=require`` and all), and no watchdog holds it to
    a timeout. A tenant of the shared server is reached as the server's admin, its
    database and role both named ``resource``.
    """
    if resource.startswith(APP_PREFIX):
        database = conninfo_to_dict(url).get("dbname")
        if not database:
            raise Unprocessable(f"the URL of {resource} names no database", id="no_database")
        return Instance(admin_dsn=url, database=str(database), role=None)
    if shared_admin_dsn is None:
        raise Unprocessable(
            f"{resource} is on the shared PostgreSQL, whose admin DSN is not set here "
            "(SLIPWAY_ADDON_POSTGRES_DSN)",
            id="no_shared_postgres",
        )
    return Instance(admin_dsn=shared_admin_dsn, database=resource, role=resource)


def database_dsn(admin_dsn: str, database: str) -> str:
    return make_conninfo(admin_dsn, dbname=database)


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupFailed(
            f"{name} is not installed where the control plane runs: install PostgreSQL's "
            "client (apt-get install postgresql-client) matching the server's major version"
        )
    return path


def table_stats(conn: psycopg.Connection[tuple[object, ...]]) -> Stats:
    """Rows and an order-independent checksum of every table the connection sees."""
    stats: Stats = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        query = sql.SQL(_STATS).format(sql.Identifier(str(schema), str(table)))
        row = conn.execute(query).fetchone()
        assert row is not None
        stats[f"{schema}.{table}"] = [int(str(row[0])), int(str(row[1]))]
    return stats


def compare(expected: Stats, found: Stats) -> list[str]:
    """What differs between the source at dump time and the restored copy (pure)."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            problems.append(f"{table} is missing from the restore")
        elif table not in expected:
            problems.append(f"{table} was not in the source")
        elif expected[table][0] != found[table][0]:
            problems.append(
                f"{table} has {found[table][0]} rows, the source had {expected[table][0]}"
            )
        elif expected[table][1] != found[table][1]:
            problems.append(f"{table}'s checksum differs from the source's")
    return problems


@dataclass(frozen=True, slots=True)
class Captured:
    size: int
    dump_size: int
    object_sha256: str
    dump_sha256: str
    tables: Stats


class Job:
    """One running capture or restore: its processes, so ``cancel`` can stop them.

    A process attached with ``group=True`` leads a session of its own
    (``start_new_session``): cancel kills its whole process group.
    """

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        #: The ``application_name`` a restore's pg_restore connects with: its server
        #: backend is found, and ended, by it when the restore is cancelled.
        self.tag = f"slipway-restore-{secrets.token_hex(6)}"
        self._processes: list[tuple[subprocess.Popen[bytes], bool]] = []
        self._lock = threading.Lock()

    def attach(self, process: subprocess.Popen[bytes], *, group: bool = False) -> None:
        with self._lock:
            self._processes.append((process, group))
            if self.cancelled.is_set():
                _kill(process, group=group)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            for process, group in self._processes:
                _kill(process, group=group)

    @property
    def pids(self) -> list[int]:
        """The processes attached so far (the tests look for them after a cancel)."""
        with self._lock:
            return [process.pid for process, _ in self._processes]


def _kill(process: subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGKILL it (and its group), unless it was reaped already (as Popen.send_signal
    checks: its pid is not another process's)."""
    if process.poll() is not None:
        return
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()


def _stderr(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    text = process.stderr.read().decode(errors="replace").strip()
    return " | ".join(text.splitlines()[-3:])


def capture(
    *,
    admin_dsn: str,
    database: str,
    writer: MultipartWriter,
    master: bytes,
    job: Job,
    compress: int | None = None,
    stats: bool = True,
) -> Captured:
    """Stream ``pg_dump -Fc`` of ``database`` through the encryptor into ``writer``.

    ``stats=False`` skips the per-table figures (verification then has nothing to
    compare with): only the bench uses it, to show what they cost.
    """
    dsn = database_dsn(admin_dsn, database)
    encryptor = Encryptor(master)
    object_hash, dump_hash = hashlib.sha256(), hashlib.sha256()
    dump_size = 0
    with (
        psycopg.connect(dsn, autocommit=False) as snap,
        concurrent.futures.ThreadPoolExecutor(1, "backup-stats") as pool,
    ):
        snap.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = snap.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        argv = [program("pg_dump"), "-Fc", f"--snapshot={row[0]}", "--dbname", dsn]
        if compress is not None:
            argv.insert(2, f"--compress={compress}")
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        job.attach(process)
        # Counted in the exported snapshot while pg_dump reads it: both see the same rows.
        figures = pool.submit(table_stats if stats else lambda _: {}, snap)
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(PIPE_CHUNK):
                dump_size += len(chunk)
                dump_hash.update(chunk)
                if out := encryptor.update(chunk):
                    object_hash.update(out)
                    writer.write(out)
            code = process.wait()
            if job.cancelled.is_set():
                raise Cancelled("the backup was cancelled")
            if code != 0:
                raise BackupFailed(f"pg_dump exited with {code}: {_stderr(process)}")
            tail = encryptor.finish()
            object_hash.update(tail)
            writer.write(tail)
            tables = figures.result()
            writer.complete()
        except BaseException:
            if process.poll() is None:
                process.kill()
            process.wait()
            writer.abort()
            raise
        finally:
            assert process.stderr is not None
            process.stderr.close()
            if process.stdout is not None:
                process.stdout.close()
    return Captured(writer.size, dump_size, object_hash.hexdigest(), dump_hash.hexdigest(), tables)


@dataclass(frozen=True, slots=True)
class Restored:
    object_sha256: str
    dump_sha256: str


def restore(
    chunks: Iterable[bytes],
    *,
    admin_dsn: str,
    database: str,
    master: bytes,
    job: Job,
    role: str | None = None,
) -> Restored:
    """Decrypt ``chunks`` into ``pg_restore --clean --if-exists`` in one transaction.

    A corrupt or truncated object, or a cancel (``job.cancel``: pg_restore's process
    group is killed), stops pg_restore before it commits, so the database keeps what it
    had; its server backend, found by ``job.tag``, is ended too, so no statement it had
    started goes on holding the tables' locks. A cancel that comes after the COMMIT
    finds the restore done: it returns as restored.
    """
    argv = [
        program("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-acl",
        "--single-transaction",
        "--exit-on-error",
        "--dbname",
        make_conninfo(database_dsn(admin_dsn, database), application_name=job.tag),
    ]
    if role is not None:
        argv.append(f"--role={role}")
    decryptor = Decryptor(master=master)
    object_hash, dump_hash = hashlib.sha256(), hashlib.sha256()
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a cancel kills all of it
    )
    job.attach(process, group=True)
    stdin: IO[bytes] | None = process.stdin
    assert stdin is not None
    try:
        try:
            for chunk in chunks:
                if job.cancelled.is_set():
                    raise Cancelled("the restore was cancelled")
                object_hash.update(chunk)
                plain = decryptor.update(chunk)
                dump_hash.update(plain)
                stdin.write(plain)
            decryptor.finish()
        except BrokenPipeError:
            pass  # pg_restore stopped: its exit code and stderr say why
        except (BackupCorrupt, Cancelled):
            _kill(process, group=True)  # before its COMMIT: the transaction rolls back
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        code = process.wait()
        if code != 0 and job.cancelled.is_set():
            raise Cancelled("the restore was cancelled")
        if code != 0:
            raise BackupFailed(f"pg_restore exited with {code}: {_stderr(process)}")
    except Cancelled:
        process.wait()
        end_backends(admin_dsn, job.tag)
        raise
    finally:
        if process.poll() is None:
            _kill(process, group=True)
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
    return Restored(object_hash.hexdigest(), dump_hash.hexdigest())


def end_backends(admin_dsn: str, tag: str) -> int:
    """End the server backends that connected as ``tag`` (a killed pg_restore's: the
    server notices its client is gone only when the statement it runs ends). Best
    effort: a failure is logged, the restore is stopped either way. How many."""
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (tag,),
            ).fetchall()
    except psycopg.Error as exc:
        log.warning("restore backend not ended", extra={"tag": tag, "error": str(exc)})
        return 0
    return len(rows)


def verify(
    chunks: Iterator[bytes],
    *,
    admin_dsn: str,
    master: bytes,
    expected: Stats,
    object_sha256: str,
    job: Job,
    scratch_prefix: str = "slipway_verify_",
) -> None:
    """Restore into a scratch database and compare with the source at dump time."""
    scratch = f"{scratch_prefix}{secrets.token_hex(6)}"
    name = sql.Identifier(scratch)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        restored = restore(chunks, admin_dsn=admin_dsn, database=scratch, master=master, job=job)
        if restored.object_sha256 != object_sha256:
            raise BackupFailed("the stored object's sha256 differs from the one recorded")
        with psycopg.connect(database_dsn(admin_dsn, scratch), autocommit=True) as conn:
            found = table_stats(conn)
        problems = compare(expected, found)
        if problems:
            raise BackupFailed("the restore differs from the source: " + "; ".join(problems[:5]))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
