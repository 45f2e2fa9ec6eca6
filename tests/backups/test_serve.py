"""`slipway serve control` with SLIPWAY_BACKUP_*: routes live, a capture verified, the metric."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.backups.conftest import s3_client
from tests.conftest import free_port
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, TEST_PREFIX
from tests.logs.conftest import Moto


@pytest.fixture
def served(tmp_path: Path, moto_server: Moto) -> Iterator[str]:
    bucket = "served-backups"
    with contextlib.suppress(Exception):
        s3_client(moto_server.url).create_bucket(Bucket=bucket)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env.update(
        SLIPWAY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/state.db",
        SLIPWAY_CONTROL_PORT=str(port),
        SLIPWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        SLIPWAY_ADDON_POSTGRES_DSN=ADMIN_DSN,
        SLIPWAY_ADDON_PREFIX=TEST_PREFIX,
        SLIPWAY_BACKUP_BUCKET=bucket,
        SLIPWAY_BACKUP_KEY="served-secret",
        SLIPWAY_BACKUP_S3_ENDPOINT=moto_server.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONPATH=os.getcwd(),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "control", "serve", "control"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_serve_control_captures_verifies_and_exports_the_metric(served: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, served + path, json=body, headers=headers) as r:
                return r.status, await r.json()

        async def ready() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(served + "/readyz") as r:
                    return r.status == 200
            return False

        deadline = time.monotonic() + 30
        while not await ready():
            assert time.monotonic() < deadline, "serve control did not become ready in 30 s"
            await asyncio.sleep(0.1)
        assert (await call("POST", "/apps", {"name": "served"}))[0] == 201
        status, addon = await call("POST", "/apps/served/addons", {"plan": "postgres:mini"})
        assert status == 201, addon
        try:
            started = time.monotonic()
            status, backup = await call("POST", "/apps/served/pg-backups", {"wait": True})
            assert status == 201, backup
            assert backup["status"] == "succeeded", backup
            assert time.monotonic() - started < 60
            async with http.get(served + "/metrics") as r:
                text = await r.text()
            labels = f'{{addon="{addon["name"]}",app="served"}}'
            assert f"slipway_backup_last_success_timestamp_seconds{labels}" in text
            assert "slipway_backup_task_crashes_total 0.0" in text
        finally:
            await call("DELETE", f"/apps/served/addons/{addon['name']}")
