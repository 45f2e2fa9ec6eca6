"""A control API with backups on loopback: real PostgreSQL add-ons, moto's S3 server.

Add-on databases and verification scratch databases are named
``slipway_ctl_t_*`` like the control tests' (other helpers share the server).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import psycopg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg import sql

from control import exporter_targets
from control.addons.kube_dedicated import TLS_CERT_KEY, TLS_KEY_KEY
from control.addons.kube_tls import server_certificate
from control.api.app import build_app
from control.backups.service import Backups, Launcher
from control.backups.settings import BackupSettings
from control.models import Addon
from control.service import Control
from control.store.db import Store
from kit import command
from tests.conftest import free_port
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, TEST_PREFIX, Api, shared_provisioners
from tests.control.targets import RecordingTarget
from tests.logs.conftest import Moto
from tests.pgserver import postgres, scratch

SECRET = "slwbk_test-backup-secret"
#: The checkout: what the subprocesses import.
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Lines:
    """The app log stream, as the logs service would get it."""

    lines: list[tuple[str, str, str, str]] = field(default_factory=list)

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        self.lines.append((app, source, process, text))

    def of(self, app: str) -> list[str]:
        return [text for a, _, _, text in self.lines if a == app]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    api: Api
    backups: Backups
    s3: Any
    bucket: str
    lines: Lines
    registry: CollectorRegistry
    clock: Clock
    #: The store's URL: another process (a second replica, a backup Job) opens it too.
    db_url: str = ""

    async def app_with_db(self, name: str) -> str:
        """An app with a Postgres add-on; its database's name (the tenant role too)."""
        status, _, _ = await self.api.call("POST", "/apps", json={"name": name})
        assert status == 201
        status, body, _ = await self.api.call(
            "POST", f"/apps/{name}/addons", json={"plan": "postgres:mini"}
        )
        assert status == 201, body
        async with self.api.control.store.tx(write=False) as tx:
            addon = await tx.get_addon(await tx.get_app(name), "DATABASE")
        return addon.resource


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = Moto(free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@contextlib.asynccontextmanager
async def backups_env(
    tmp_path: Path,
    moto: Moto,
    *,
    db_url: str | None = None,
    launcher: Callable[[BackupSettings], Launcher] | None = None,
    **settings: Any,
) -> AsyncIterator[Env]:
    """``db_url``: the store (a SQLite file in ``tmp_path`` by default); ``launcher``:
    what runs captures and schedules instead of this process, made for the settings."""
    s3 = s3_client(moto.url)
    bucket = f"backups-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    db_url = db_url or f"sqlite+aiosqlite:///{tmp_path}/state.db"
    store = Store.open(db_url)
    target = RecordingTarget()
    control = Control(
        store=store,
        target=target,
        provisioners=shared_provisioners(),
        targets_writer=lambda addons: exporter_targets.write(tmp_path / "exporters", addons),
    )
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    lines = Lines()
    registry = CollectorRegistry()
    clock = Clock(1_780_000_000.0)
    backup_settings = BackupSettings(
        bucket=bucket,
        scratch_prefix=f"{TEST_PREFIX}v",
        part_size=5 * 1024 * 1024,
        secret=SECRET,
        **settings,
    )
    backups = Backups(
        store=store,
        admin_dsn=ADMIN_DSN,
        s3=s3,
        settings=backup_settings,
        sink=lines,
        registry=registry,
        clock=clock,
        launcher=launcher(backup_settings) if launcher is not None else None,
    )
    control.addons.before_destroy.append(backups.forget_addon)  # as ControlPlane wires it
    app = build_app(control, registry=CollectorRegistry(), ready=lambda: None, backups=backups)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    api = Api(f"http://127.0.0.1:{port}", session, control, target, tmp_path)
    try:
        yield Env(api, backups, s3, bucket, lines, registry, clock, db_url)
    finally:
        await backups.close()
        await session.close()
        async with store.tx() as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:
            await control.provisioners[addon.service].destroy(addon.resource)
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def env(tmp_path: Path, moto_server: Moto) -> AsyncIterator[Env]:
    async with backups_env(tmp_path, moto_server) as running:
        yield running


async def fill(database: str, rows: int = 2000, marker: str = "PLAINTEXT-MARKER") -> None:
    """Tables owned by the tenant, with a recognisable string in every row."""
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + database
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(database)))
        await conn.execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text, note text, at timestamptz)"
        )
        await conn.execute(
            "INSERT INTO customers SELECT i, 'customer ' || i, %s || '-' || i,"
            " '2026-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, %s) i",
            (marker, rows),
        )
        await conn.execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, total numeric)"
        )
        await conn.execute(
            "INSERT INTO orders (customer, total) SELECT i %% 100, i * 1.5"
            " FROM generate_series(1, %s) i",
            (rows * 2,),
        )


async def query(database: str, text: str) -> list[tuple[Any, ...]]:
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + database
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await (await conn.execute(text)).fetchall()


async def as_tenant(database: str, *statements: str) -> None:
    """Run ``statements`` as the add-on's own role (what the app would do)."""
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + database
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(database)))
        for statement in statements:
            await conn.execute(statement)


def control_secret(env: Env) -> dict[str, str]:
    """What the control plane's Secret holds for backups (on a cluster, the Jobs' envFrom)."""
    return {
        "SLIPWAY_DATABASE_URL": env.db_url,
        "SLIPWAY_ADDON_POSTGRES_DSN": ADMIN_DSN,
        "SLIPWAY_BACKUP_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


async def slipway(*args: str, environ: dict[str, str]) -> tuple[int, str]:
    """``slipway ARGS`` as its own process with exactly ``environ`` (plus PATH, for
    pg_dump); its exit status and output."""
    # kit.command reaps the child on every way out, cancellation included: a child left
    # behind surfaces as a ResourceWarning in some later test.
    code, out = await command.output(
        [sys.executable, "-m", "control", *args],
        timeout=120,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **environ},
    )
    return code, out.decode()


@dataclass(frozen=True)
class Dedicated:
    """A PostgreSQL playing a dedicated add-on's StatefulSet (kube_dedicated.py): its one
    superuser ``addon`` with a password of its own, database ``addon``, TLS on."""

    #: What the control plane records as the add-on's URL (the Service's name aside).
    url: str
    #: Its server log: ``log_statement=ddl`` shows which server a statement ran on.
    log: Path
    #: The test's own way in (the socket, trusted): what the app would do as ``addon``.
    socket: str

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def dedicated() -> Iterator[Dedicated]:
    password = secrets.token_urlsafe(24)
    with scratch("kb2-dedicated-pg") as where:
        pair = server_certificate("addon-kb2", "apps", now=datetime.datetime.now(datetime.UTC))
        for key, text in ((TLS_CERT_KEY, pair.cert), (TLS_KEY_KEY, pair.key)):
            path = where.base / key
            path.write_text(text)
            path.chmod(0o600)
            where.own(path)
        options = [
            *("-c", "ssl=on", "-c", f"ssl_cert_file={where.base / TLS_CERT_KEY}"),
            *("-c", f"ssl_key_file={where.base / TLS_KEY_KEY}", "-c", "log_statement=ddl"),
        ]
        with postgres(where, user="addon", password=password, options=options) as port:
            socket = f"host={where.base} port={port} user=addon connect_timeout=5"
            with psycopg.connect(f"{socket} dbname=postgres", autocommit=True) as conn:
                conn.execute("CREATE DATABASE addon")  # the image's POSTGRES_DB
            yield Dedicated(
                url=f"postgres://addon:{password}@127.0.0.1:{port}/addon?sslmode=require",
                log=where.base / "server.log",
                socket=f"{socket} dbname=addon",
            )


async def attach_dedicated(env: Env, app: str, instance: Dedicated) -> Addon:
    """Record ``instance`` as ``app``'s DATABASE, as the control plane records a dedicated
    add-on it made on Kubernetes (``KubeDedicated.create_for``: resource ``addon-...``)."""
    addon = Addon(
        id=secrets.token_hex(8),
        app=app,
        name=f"postgres-{secrets.token_hex(4)}",
        service="postgres",
        plan="mini",
        attachment="DATABASE",
        url=instance.url,
        resource=f"addon-{secrets.token_hex(6)}",
        created_at=env.clock(),
    )
    async with env.api.control.store.tx() as tx:
        await tx.add_addon(await tx.get_app(app), addon)
    return addon


async def detach(env: Env, addon: Addon) -> None:
    """Forget the record (the instance is the fixture's to stop)."""
    async with env.api.control.store.tx() as tx:
        await tx.remove_addon(addon)


#: Seconds each row of ``slow`` takes to load into a database that ``throttle`` slowed.
SLOW_ROW = 0.002
#: Rows of ``slow``: a throttled restore loads them for more than 6 s.
SLOW_ROWS = 3000


async def fill_slow(database: str, rows: int = SLOW_ROWS) -> None:
    """A tenant table ``slow`` whose CHECK sleeps ``slipway_test.slow`` seconds a row where
    that is set: a restore into a database ``throttle`` slowed loads it for rows times
    that, in pg_restore's COPY, whatever the machine; the capture's verification (into a
    scratch database, where it is not set) does not wait."""
    await as_tenant(
        database,
        "CREATE FUNCTION throttle() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN"
        " PERFORM pg_sleep(coalesce(nullif(current_setting('slipway_test.slow', true), ''),"
        " '0')::float8); RETURN true; END $$",
        "CREATE TABLE slow (id int PRIMARY KEY, CHECK (throttle()))",
        f"INSERT INTO slow SELECT generate_series(1, {int(rows)})",
    )


async def throttle(database: str, seconds: float | None) -> None:
    """Slow the loading of ``slow`` into ``database`` (new sessions), or stop (None)."""
    name = sql.Identifier(database)
    statement = (
        sql.SQL("ALTER DATABASE {} RESET slipway_test.slow").format(name)
        if seconds is None
        else sql.SQL("ALTER DATABASE {} SET slipway_test.slow = {}").format(
            name, sql.Literal(str(seconds))
        )
    )
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        await conn.execute(statement)


async def loading_slow(database: str) -> str | None:
    """The ``application_name`` of a restore's backend that is loading ``slow`` into
    ``database`` (midway: its DROPs done, its COPY running), if there is one."""
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s"
                " AND application_name LIKE 'slipway-restore-%%'"
                " AND query LIKE 'COPY public.slow %%'",
                (database,),
            )
        ).fetchone()
    return None if row is None else str(row[0])


async def backends_of(tag: str) -> int:
    """Server backends connected as ``tag`` (a restore's ``application_name``)."""
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (tag,)
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def processes_with(text: str) -> list[int]:
    """Processes whose command line has ``text`` (a restore's tag is in pg_restore's). A
    zombie's is empty: ``group_members`` finds one not waited for."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list[int]:
    """Processes in the process group ``pgid``, zombies too."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so after the last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found
