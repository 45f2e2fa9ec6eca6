"""Real servers for the control plane's tests: PostgreSQL and Redis on loopback.

Every database and role a test makes is named ``slipway_ctl_t_*`` (other
helpers share the server) and dropped when the test ends.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg import sql

from agent.settings import AgentSettings, LocalSettings
from control import exporter_targets
from control.addons import Provisioner
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.api.app import build_app
from control.service import Control
from control.settings import BuildServerSettings, ControlSettings
from control.store.db import Store
from control.up import UpSettings
from logs.settings import LogsSettings
from router.settings import RouterSettings
from tests.conftest import free_port
from tests.control.targets import RecordingTarget

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_PREFIX = "slipway_ctl_t_"


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test; its SQLAlchemy URL."""
    name = f"{TEST_PREFIX}{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[str]:
    """One PostgreSQL database for the whole run, emptied before each test that uses it.

    CREATE and DROP DATABASE each force a checkpoint, which on a server shared
    by several test runs can take tens of seconds; emptying the schema does not.
    """
    name = f"{TEST_PREFIX}{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def pg_url(pg_scratch: str) -> str:
    """The scratch database, empty: the state store's URL on PostgreSQL."""
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + pg_scratch
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_scratch}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store's URL: every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/state.db"
    url: str = request.getfixturevalue("pg_url")
    return url


ADMIN_TOKEN = "slw_test-admin-token-0123456789abcdef0123456789"


@dataclass
class Api:
    """A running control API on loopback, with an admin session."""

    base: str
    session: aiohttp.ClientSession
    control: Control
    target: RecordingTarget
    targets_dir: Path

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = ADMIN_TOKEN,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=sent
        ) as response:
            body = await response.json()
            return response.status, body, response.headers


def shared_provisioners() -> dict[str, Provisioner]:
    """Add-on provisioners on the session's PostgreSQL and Redis, with the tests' prefix."""
    return {
        "postgres": PostgresAddons(
            admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=5432, prefix=TEST_PREFIX
        ),
        "redis": RedisAddons(
            admin_url=REDIS_URL, public_host="127.0.0.1", public_port=6379, prefix=TEST_PREFIX
        ),
    }


@contextlib.asynccontextmanager
async def running_api(db: str, tmp_path: Path, **options: Any) -> AsyncIterator[Api]:
    """``options``: other Control arguments (app_domain, reserved_domains, limits, ...)."""
    store = Store.open(db)
    target = RecordingTarget()
    targets_dir = tmp_path / "exporters"
    control = Control(
        **{
            "store": store,
            "target": target,
            "provisioners": shared_provisioners(),
            "targets_writer": lambda addons: exporter_targets.write(targets_dir, addons),
            **options,
        }
    )
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    app = build_app(control, registry=CollectorRegistry(), ready=lambda: None)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield Api(f"http://127.0.0.1:{port}", session, control, target, targets_dir)
    finally:
        await session.close()
        # Add-ons left by a failed test must not leak onto the shared servers.
        async with store.tx() as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:
            await control.provisioners[addon.service].destroy(addon.resource)
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path) as running:
        yield running


def up_settings(state: Path, *, logs_port: int = 0, **control: Any) -> UpSettings:
    """``slipway up`` on free ports with no apps file, its control plane in ``state``.

    ``control`` overrides ControlSettings fields (add-on servers, builds, review apps).
    """
    return UpSettings(
        apps_file=None,
        router=RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
        agent=AgentSettings(host="127.0.0.1", port=0, tick=0.01),
        local=LocalSettings(stop_grace=2.0),
        logs=LogsSettings(http_port=logs_port, forward_port=0, spool_dir=state / "logs"),
        control=ControlSettings(
            **{
                "db_url": f"sqlite+aiosqlite:///{state}/slipway.db",
                "port": 0,
                "bootstrap_admin_token": ADMIN_TOKEN,
                "release_timeout": 20,
                "app_domain": "localhost",
                **control,
            }
        ),
    )


def builder_up_settings(state: Path) -> UpSettings:
    """``up_settings`` with a local builder whose output goes to the logs service, as
    ``slipway up`` runs by default."""
    logs_port = free_port()
    builds = BuildServerSettings(
        root=str(state / "builds"), logs_url=f"http://127.0.0.1:{logs_port}"
    )
    return up_settings(state, logs_port=logs_port, builds=builds)
