"""``slipway up`` with one real app, for the request charts' and the live logs' tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.dashboard_live.apps import APP, PROCFILE

HOST = "hello.localhost"


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession) -> None:
        assert up.control is not None
        assert up.logs is not None
        self.up = up
        self.session = session
        self.base = f"http://127.0.0.1:{up.control.port}"
        self.logs = f"http://127.0.0.1:{up.logs.http_port}"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def call(
        self, method: str, path: str, body: object = None, token: str = ADMIN_TOKEN
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()

    async def get(self, path: str, host: str = HOST) -> int:
        """A request through the router; its status (a dropped connection's H13 is a 503)."""
        async with self.session.get(self.router + path, headers={"Host": host}) as response:
            await response.read()
            return response.status

    async def deploy(self, code: Path, app: str = "hello") -> None:
        status, body = await self.call("POST", "/apps", {"name": app})
        assert status == 201, body
        status, body = await self.call(
            "POST", f"/apps/{app}/releases", {"artifact": str(code), "procfile": PROCFILE}
        )
        assert status == 201, body


async def start_world(state: Path) -> Up:
    settings = dataclasses.replace(up_settings(state), rollup_file=state / "rollup.json")
    sink = ListSink()  # quiet: the tests read the logs service, not the console
    up = Up(settings, app_sink=sink, router_sink=sink)
    await up.start()
    return up


@pytest.fixture
def code(tmp_path: Path) -> Path:
    directory = tmp_path / "hello"
    directory.mkdir()
    (directory / "app.py").write_text(APP)
    return directory


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    state = tmp_path / "state"
    state.mkdir()
    up = await start_world(state)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()
