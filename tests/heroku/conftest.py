"""Heroku-style apps deployed as a Heroku user would: ``slipway up``, its CLI, a git repository.

The apps under ``apps/`` are written as Heroku's samples are and are deployed
unchanged. Their dependencies come from PyPI and the npm registry; the
installers' download caches and the fetched Node versions are kept across
runs in ``SLIPWAY_TEST_BUILD_CACHE`` (default: a directory in the system's
temporary directory), linked into each run's fresh build root, so a warm run
downloads nothing. A fresh machine (CI) pays the downloads once: see
docs/builds.md for the cold and warm times measured.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner, Result

from control.cli import main
from control.settings import AddonServers, BuildServerSettings
from control.up import Up
from tests.agent.conftest import ListSink
from tests.builds.apps import commit
from tests.conftest import free_port
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, TEST_PREFIX, up_settings

APPS = Path(__file__).parent / "apps"
#: Downloads kept between runs: pip's and npm's caches, and Node versions fetched.
CACHE = Path(
    os.environ.get("SLIPWAY_TEST_BUILD_CACHE")
    or Path(tempfile.gettempdir()) / "slipway-test-build-cache"
)
#: A cold build downloads Django or Express and a Node; CI's fresh machine does it once.
BUILD_TIMEOUT = 600.0


def source_files(app: str) -> dict[str, str | bytes]:
    """The app's files as its repository holds them."""
    root = APPS / app
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@dataclass
class Platform:
    up: Up
    root: Path
    runner: CliRunner
    http: aiohttp.ClientSession

    @property
    def router(self) -> str:
        return f"http://127.0.0.1:{self.up.router.port}"

    @property
    def api(self) -> str:
        assert self.up.control is not None
        return f"http://127.0.0.1:{self.up.control.port}"

    async def cli(self, *args: str) -> Result:
        return await asyncio.to_thread(self.runner.invoke, main, list(args), catch_exceptions=False)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self.api + path,
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as resp:
            return resp.status, await resp.json()

    async def get(self, app: str, path: str = "/") -> tuple[int, str]:
        """Through the router, as the app's visitors reach it."""
        async with self.http.get(self.router + path, headers={"Host": f"{app}.localhost"}) as resp:
            return resp.status, await resp.text()

    def share_caches(self, app: str) -> None:
        """The app's download caches are the run-spanning ones (its installed sets are not)."""
        cache = self.root / "cache" / app
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("pip", "npm"):
            (CACHE / name).mkdir(parents=True, exist_ok=True)
            (cache / name).symlink_to(CACHE / name, target_is_directory=True)

    async def deploy(self, app: str, source: str, tmp_path: Path) -> Result:
        """``builds:create --git`` of ``apps/<source>``'s files, committed as they are."""
        files = source_files(source)
        assert files, f"no app in {APPS / source}"
        repo = tmp_path / f"{app}-repo"
        sha = await asyncio.to_thread(commit, repo, files)
        return await self.cli("builds:create", "--git", str(repo), "--ref", sha, "-a", app)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    logs_port = free_port()
    root = tmp_path / "builds"
    (root / "cache").mkdir(parents=True)
    (CACHE / "_node").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "_node").symlink_to(CACHE / "_node", target_is_directory=True)
    settings = up_settings(
        tmp_path,
        logs_port=logs_port,
        addons=AddonServers(postgres_admin_dsn=ADMIN_DSN),
        builds=BuildServerSettings(
            root=str(root), logs_url=f"http://127.0.0.1:{logs_port}", timeout=BUILD_TIMEOUT
        ),
        release_timeout=120,
    )
    sink = ListSink()
    up = Up(settings, app_sink=sink, router_sink=sink, addon_prefix=TEST_PREFIX)
    await up.start()
    runner = CliRunner(
        env={
            "SLIPWAY_API_URL": f"http://127.0.0.1:{up.control.port if up.control else 0}",
            "SLIPWAY_TOKEN": ADMIN_TOKEN,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            yield Platform(up, root, runner, http)
    finally:
        try:
            # Add-ons must not outlive the test on the shared servers.
            assert up.control is not None
            control = up.control.control
            async with control.store.tx(write=False) as tx:
                leftovers = await tx.all_addons()
            for addon in leftovers:
                await control.provisioners[addon.service].destroy(addon.resource)
        finally:
            await up.stop()
