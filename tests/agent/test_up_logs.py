"""``slipway up`` keeps every line in its logs service: app output and router lines, one stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from control.up import Up
from logs.settings import LogsSettings
from tests.agent.conftest import ListSink, local_up_settings, write_app
from tests.helpers import eventually

TOKEN = "slw_test_admin_token_0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def console() -> ListSink:
    return ListSink()


@pytest.fixture
async def up(tmp_path: Path, console: ListSink) -> AsyncIterator[Up]:
    """`slipway up` with its logs service, serving one app, hello.test."""
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "hello"))
    logs = LogsSettings(
        http_port=0, forward_port=0, admin_token=TOKEN, spool_dir=tmp_path / "spool"
    )
    running = Up(local_up_settings(apps, logs=logs), app_sink=console, router_sink=console)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def with_router_line(http: aiohttp.ClientSession, up: Up) -> str:
    """hello's stream once the router's line is in it (written as the response ends)."""
    assert up.logs is not None
    url = f"http://127.0.0.1:{up.logs.http_port}/apps/hello/logs?format=text&lines=50"

    async def read() -> str | None:
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 200
            text = await resp.text()
        return text if "slipway[router]:" in text else None

    return await eventually(read, what="the router's line in hello's stream")


async def test_app_and_router_lines_reach_the_logs_service_and_the_console(
    up: Up, console: ListSink, tmp_path: Path
) -> None:
    assert up.logs is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{up.router.port}/", headers={"Host": "hello.test"}
        ) as resp:
            assert resp.status == 200
            await resp.read()  # leaving early would be a client gone: 499, H27
        text = await with_router_line(http, up)
        async with http.get(f"http://127.0.0.1:{up.logs.http_port}/apps/hello/logs") as resp:
            assert resp.status == 401  # no token, no logs
    assert " app[web.1]: " in text, text
    assert "slipway[router]: at=info method=GET" in text
    assert "wake=" in text
    # The console still shows the same lines.
    assert any("method=GET" in line for line in console.router_lines)
    assert any(app == "hello" for app, _, _ in console.lines)
    assert any((tmp_path / "spool").iterdir())  # spooled for the archive


async def test_a_token_in_a_request_path_never_reaches_the_apps_log_stream(
    up: Up, console: ListSink, tmp_path: Path
) -> None:
    """The router's line in the app's stream (what `slipway logs` shows) masks the token."""
    secret = "SECRETxyz123"
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{up.router.port}/x?access_token={secret}&page=2"
        async with http.get(url, headers={"Host": "hello.test"}) as resp:
            await resp.read()
        text = await with_router_line(http, up)
    [line] = [line for line in text.splitlines() if "slipway[router]:" in line]
    assert 'path="/x?access_token=***&page=2"' in line, line
    assert secret not in text
    assert not [line for line in console.router_lines if secret in line]
    assert any("page=2" in line for line in console.router_lines)
    for spooled in (tmp_path / "spool").rglob("*"):
        if spooled.is_file():
            assert secret.encode() not in spooled.read_bytes()
