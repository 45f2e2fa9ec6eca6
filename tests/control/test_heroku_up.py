"""Maintenance mode and ``slipway run`` under ``slipway up``: the real router, agent and runtime.

The CLI sets maintenance on through the API; the flag travels in the app's
definition to the agent, in its route table to the router, which answers H80
(a maintenance page, logged and counted) without waking or reaching the app.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from control.cli import main
from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.helpers import eventually

Cli = Callable[..., Result]


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[tuple[Up, ListSink]]:
    sink = ListSink()
    running = Up(up_settings(tmp_path), app_sink=sink, router_sink=sink)
    await running.start()
    try:
        yield running, sink
    finally:
        await running.stop()


def cli_of(up: Up, tmp_path: Path) -> Cli:
    assert up.control is not None
    runner = CliRunner(
        env={
            "SLIPWAY_API_URL": f"http://127.0.0.1:{up.control.port}",
            "SLIPWAY_TOKEN": ADMIN_TOKEN,
            "SLIPWAY_APP": None,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )

    async def cli(*args: str, code: int = 0) -> Result:
        result = await asyncio.to_thread(runner.invoke, main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return cli


async def deploy_web_app(cli: Cli, name: str, directory: Path) -> None:
    directory.mkdir()
    (directory / "index.html").write_text("the app itself\n")
    # -S: no site-packages scan, a faster cold start on a busy machine.
    (directory / "Procfile").write_text(f"web: {sys.executable} -S -m http.server $PORT\n")
    await cli("apps:create", name)
    await cli("deploy", str(directory), "-a", name)


async def get(up: Up, host: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{up.router.port}/"
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers={"Host": host}) as reply,
    ):
        return reply.status, reply.headers.get("Slipway-Error", ""), await reply.text()


class TestMaintenanceThroughTheRouter:
    async def test_on_answers_h80_without_reaching_the_app_and_off_serves_again(
        self, up: tuple[Up, ListSink], tmp_path: Path
    ) -> None:
        running, sink = up
        cli = cli_of(running, tmp_path)
        await deploy_web_app(cli, "shop", tmp_path / "shop")
        assert (await get(running, "shop.localhost"))[::2] == (200, "the app itself\n")

        shown = (await cli("ps", "-a", "shop")).output.splitlines()
        assert shown[0] == "=== web (1, sleeps after 5m)"
        assert re.fullmatch(
            r"web\.1:  up  v2  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\)", shown[1]
        )
        assert len(shown) == 2

        await cli("maintenance:on", "-a", "shop")
        await eventually(lambda: running.router.routes.table.apps["shop"].maintenance)
        served_before = [t for _, p, t in sink.lines if p.startswith("web")]
        status, code, page = await get(running, "shop.localhost")
        assert (status, code) == (503, "H80")
        assert "Maintenance mode" in page
        assert any(
            "code=H80" in line and 'desc="Maintenance mode"' in line for line in sink.router_lines
        )
        errors = running.registry.get_sample_value(
            "slipway_router_errors_total", {"app": "shop", "code": "H80"}
        )
        assert errors == 1
        # The request never reached the app: it logged nothing more (http.server logs each one).
        assert [t for _, p, t in sink.lines if p.startswith("web")] == served_before

        await cli("maintenance:off", "-a", "shop")
        await eventually(lambda: not running.router.routes.table.apps["shop"].maintenance)
        assert (await get(running, "shop.localhost"))[::2] == (200, "the app itself\n")

    async def test_a_sleeping_app_in_maintenance_is_not_woken(
        self, up: tuple[Up, ListSink], tmp_path: Path
    ) -> None:
        running, _ = up
        cli = cli_of(running, tmp_path)
        await deploy_web_app(cli, "sleepy", tmp_path / "sleepy")
        await cli("maintenance:on", "-a", "sleepy")
        await eventually(lambda: running.router.routes.table.apps["sleepy"].maintenance)
        status, code, _ = await get(running, "sleepy.localhost")
        assert (status, code) == (503, "H80")
        assert running.router.routes.table.apps["sleepy"].endpoints == ()
        assert running.agent.status("sleepy")["processes"]["web"]["desired"] == 0


class TestRunUnderUp:
    async def test_output_streams_with_the_release_env_and_the_exit_code(
        self, up: tuple[Up, ListSink], tmp_path: Path
    ) -> None:
        running, _ = up
        cli = cli_of(running, tmp_path)
        await deploy_web_app(cli, "runner", tmp_path / "runner")
        await cli("config:set", "GREETING=hi", "-a", "runner")
        result = await cli(
            "run", "-a", "runner", "sh", "-c", "'echo $GREETING; cat index.html; exit 7'", code=7
        )
        assert result.stdout == "hi\nthe app itself\n"
        dyno = re.search(r"^up, (run\.\d{4})$", result.stderr, re.M)
        assert dyno, result.stderr
        # Heroku's DYNO for a one-off: the name it was announced under.
        named = await cli("run", "-a", "runner", "echo", "$DYNO")
        assert named.stdout == named.stderr.split("up, ")[1]

    async def test_detached_output_joins_the_apps_log_stream(
        self, up: tuple[Up, ListSink], tmp_path: Path
    ) -> None:
        running, sink = up
        cli = cli_of(running, tmp_path)
        await deploy_web_app(cli, "detached", tmp_path / "detached")
        out = (await cli("run", "-d", "-a", "detached", "echo", "from-the-background")).output
        match = re.search(r"up, (run\.\d{4})", out)
        assert match, out
        dyno = match.group(1)
        await eventually(lambda: ("detached", dyno, "Process exited with status 0") in sink.lines)
        assert ("detached", dyno, "from-the-background") in sink.lines
