"""Dyno sizes and samples end to end through ``slipway up``: the formation's size reaches the
process, its memory reaches the dynos API and ``slipway ps``, R14 lines reach the logs service.

The app holds HOLD_MB megabytes (a config var) and serves HTTP; the monitor samples
every 50 ms instead of Heroku's 20 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from agent.dynosize import MB
from agent.dynowatch import DynoSettings
from control.cli import main
from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.helpers import eventually

APP = textwrap.dedent(
    """
    import http.server, os

    held = b"x" * (int(os.environ.get("HOLD_MB", "0")) * 1024 * 1024)

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
    """
)
HOST = "hog.localhost"


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession) -> None:
        assert up.control is not None
        assert up.logs is not None
        self.up = up
        self.session = session
        self.base = f"http://127.0.0.1:{up.control.port}"
        self.logs = f"http://127.0.0.1:{up.logs.http_port}"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def call(self, method: str, path: str, body: object = None) -> Any:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, (response.status, await response.text())
            return await response.json()

    async def wake(self) -> None:
        async with self.session.get(self.router + "/", headers={"Host": HOST}) as response:
            assert response.status == 200


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = dataclasses.replace(up_settings(tmp_path), dynos=DynoSettings(interval=0.05))
    sink = ListSink()
    up = Up(settings, app_sink=sink, router_sink=sink)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


async def deploy(world: World, tmp_path: Path, hold_mb: int) -> None:
    code = tmp_path / "hog"
    code.mkdir()
    (code / "app.py").write_text(APP)
    await world.call("POST", "/apps", {"name": "hog"})
    await world.call("PATCH", "/apps/hog/config-vars", {"HOLD_MB": str(hold_mb)})
    await world.call(
        "POST", "/apps/hog/releases",
        {"artifact": str(code), "procfile": {"web": "exec python3 app.py"}},
    )  # fmt: skip


async def test_the_size_and_memory_reach_the_dynos_api_and_slipway_ps(
    world: World, tmp_path: Path
) -> None:
    await deploy(world, tmp_path, hold_mb=30)
    await world.call("PATCH", "/apps/hog/formation/web", {"size": "standard-2x"})
    await world.wake()

    async def sampled() -> dict[str, Any] | None:
        dynos = await world.call("GET", "/apps/hog/dynos")
        found = [d for d in dynos if d["memory"] and d["memory"]["rss"] > 30 * MB]
        return found[0] if found else None

    dyno: dict[str, Any] | None = await eventually(sampled, timeout=20)
    assert dyno is not None
    assert (dyno["name"], dyno["size"]) == ("web.1", "standard-2x")
    assert dyno["memory"]["quota"] == 1024 * MB
    assert dyno["cpu"]["seconds"] >= 0
    cli = CliRunner(env={"SLIPWAY_API_URL": world.base, "SLIPWAY_TOKEN": ADMIN_TOKEN})
    # The CLI is synchronous: off the loop that serves the API it calls.
    result = await asyncio.to_thread(cli.invoke, main, ["ps", "-a", "hog"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()[:2]
    assert header == "=== web (1, standard-2x, sleeps after 5m)"
    assert re.fullmatch(
        r"web\.1: +up +v\d+ +\S+ \S+ \(\d+s ago\) +mem=\d+MB/1024MB \(\d+%\) load=\d+\.\d\d", line
    ), line


async def test_an_r14_reaches_the_apps_log_stream_in_the_logs_service(
    world: World, tmp_path: Path
) -> None:
    await deploy(world, tmp_path, hold_mb=80)
    await world.call("PATCH", "/apps/hog/formation/web", {"size": "64MB"})
    await world.wake()
    url = world.logs + "/apps/hog/logs?format=text&lines=200&source=dyno"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def logged() -> str | None:
        async with world.session.get(url, headers=headers) as response:
            assert response.status == 200
            text = await response.text()
        return text if "Error R14 (Memory quota exceeded)" in text else None

    text: str | None = await eventually(logged, timeout=20)
    assert text is not None
    assert "slipway[web.1]: Error R14 (Memory quota exceeded)" in text
    assert "slipway[web.1]: Process running mem=" in text
