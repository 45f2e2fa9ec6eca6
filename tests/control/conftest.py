"""Real servers for the control plane's tests: PostgreSQL and Redis on loopback.

Every database and role a test makes is named ``slipway_ctl_t_*`` (other
helpers share the server) and dropped when the test ends.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg import sql

from control import exporter_targets
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.api.app import build_app
from control.service import Control
from control.store.db import Store
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


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The state store's URL: every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/state.db"
    else:
        async with scratch_database() as url:
            yield url


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


@contextlib.asynccontextmanager
async def running_api(db: str, tmp_path: Path) -> AsyncIterator[Api]:
    store = Store.open(db)
    target = RecordingTarget()
    targets_dir = tmp_path / "exporters"
    control = Control(
        store=store,
        target=target,
        provisioners={
            "postgres": PostgresAddons(
                admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=5432, prefix=TEST_PREFIX
            ),
            "redis": RedisAddons(
                admin_url=REDIS_URL, public_host="127.0.0.1", public_port=6379, prefix=TEST_PREFIX
            ),
        },
        targets_writer=lambda addons: exporter_targets.write(targets_dir, addons),
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
