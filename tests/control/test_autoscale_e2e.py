"""Autoscaling set through the control plane under ``slipway up``: a formation's autoscale
reaches the agent, a burst through the router scales web up, the app comes back to one after
the delay, and ``GET /apps/{app}/autoscale`` shows the decisions with their reasons."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from control.cli import main
from control.up import Up
from tests.agent.conftest import HERE as AGENT_TESTS
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings

HOST = "shop.localhost"
#: Bound on real processes coming up or going away on a shared CPU.
SETTLE = 20.0


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    settings = up_settings(tmp_path)
    # Five samples a second: the test's one-second panic window sees a burst at once.
    settings = dataclasses.replace(
        settings, agent=dataclasses.replace(settings.agent, autoscale_interval=0.2)
    )
    up = Up(settings, app_sink=ListSink(), router_sink=ListSink())
    await up.start()
    try:
        yield up
        assert not up.failed.is_set()
    finally:
        await up.stop()


async def test_a_burst_scales_a_control_plane_app_and_the_api_shows_why(
    up: Up, tmp_path: Path
) -> None:
    code = tmp_path / "shop"
    code.mkdir()
    shutil.copy(AGENT_TESTS / "app.py", code / "app.py")  # answers /slow=SECONDS
    assert up.control is not None
    base = f"http://127.0.0.1:{up.control.port}"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def call(method: str, path: str, body: object = None) -> tuple[int, Any]:
            async with http.request(method, base + path, json=body, headers=auth) as resp:
                return resp.status, await resp.json()

        async def through_router(path: str) -> int:
            url = f"http://127.0.0.1:{up.router.port}{path}"
            async with http.get(url, headers={"Host": HOST}) as resp:
                await resp.read()
                return resp.status

        async def web_up(count: int) -> bool:
            status, dynos = await call("GET", "/apps/shop/dynos")
            assert status == 200
            return sum(1 for d in dynos if d["type"] == "web" and d["state"] == "up") == count

        assert (await call("POST", "/apps", {"name": "shop"}))[0] == 201
        procfile = {"web": "exec python3 app.py"}
        status, _ = await call(
            "POST", "/apps/shop/releases", {"artifact": str(code), "procfile": procfile}
        )
        assert status == 201
        autoscale = {"target": 2, "stable_window": 3, "panic_window": 1, "scale_down_delay": 1}
        status, web = await call(
            "PATCH",
            "/apps/shop/formation/web",
            {"min_scale": 1, "max_scale": 3, "autoscale": autoscale},
        )
        assert status == 200, web
        await until(web_up, 1)

        burst = [asyncio.create_task(through_router("/slow=4")) for _ in range(10)]
        await until(web_up, 3)
        assert await asyncio.gather(*burst) == [200] * 10
        await until(web_up, 1)

        status, view = await call("GET", "/apps/shop/autoscale")
        assert status == 200
        assert (view["enabled"], view["running"], view["desired"]) == (True, True, 1)
        reasons = [(d["from"], d["to"], d["reason"]) for d in reversed(view["decisions"])]
        # Panic, or load while the stable window still holds less than its 3 s of samples
        # (the autoscale was set a moment ago): then the two averages are alike.
        assert reasons[0][2] in ("panic", "load")
        assert max(to for _, to, _ in reasons) == 3
        assert [r for r in reasons if r[2] == "idle"] == [(3, 2, "idle"), (2, 1, "idle")]

        # `slipway ps` against this control plane: the agent's last decision, the step down.
        env = {"SLIPWAY_API_URL": base, "SLIPWAY_TOKEN": ADMIN_TOKEN, "SLIPWAY_APP": "shop",
               "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
        shown = await asyncio.to_thread(
            CliRunner(env=env).invoke, main, ["ps"], catch_exceptions=False
        )
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert lines[1].startswith("autoscale: 2 in flight per process, 1-3 processes, wants 1")
        assert lines[2].startswith("last decision: 2 -> 1 (idle) ")


async def until(check: Callable[[int], Awaitable[bool]], count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE
    while not await check(count):
        assert loop.time() < deadline, f"not {count} web dynos up within {SETTLE:g} s"
        await asyncio.sleep(0.1)
