"""Apps defined while the agent runs (the control plane's way in), over its HTTP API.

Real app processes through the real router: a definition PUT makes an app
routable and asleep; the first request wakes it; a new release restarts it
onto the new env; forget stops it and its host.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.agent_target import AgentClient as ControlAgentClient
from control.errors import TargetUnavailable
from router.feed import AgentClient as FeedClient
from router.routes import Routes
from tests.agent.conftest import (
    HERE,
    Running,
    StartUp,
    get,
    local_up_settings,
    quiet_up,
    write_app,
)
from tests.helpers import eventually

HOST = "shop.test"


def definition(release: int = 1, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hosts": [HOST],
        "release": release,
        "env": {"GREETING": f"v{release}"},
        "processes": {"web": {"command": f"{sys.executable} -S {HERE / 'app.py'}"}},
        "formation": {"web": 1},
        "policy": {"idle_after": 60},
    }
    body.update(overrides)
    return body


async def put(http: aiohttp.ClientSession, s: Running, body: object, app: str = "shop") -> Any:
    async with http.put(f"{s.api}/v1/apps/{app}", json=body) as resp:
        return resp.status, await resp.json()


async def test_a_defined_app_is_routed_asleep_and_wakes_on_its_first_request(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        status, shown = await put(http, s, definition())
        assert status == 200
        assert shown["state"] == "asleep"
        assert shown["processes"]["web"] == {
            "release": 1, "wanted": 1, "desired": 0, "instances": [], "usage": {}
        }  # fmt: skip
        await eventually(lambda: "shop" in s.up.router.routes.table.apps)
        status, body, _ = await get(http, s.url, HOST)
        assert status == 200
        assert body.strip().endswith("greeting=v1")
        async with http.get(f"{s.api}/v1/apps/shop") as resp:
            shown = await resp.json()
    assert shown["state"] == "awake"
    [instance] = shown["processes"]["web"]["instances"]
    assert instance["ready"] is True
    assert instance["name"] == "web.1"


async def test_a_new_release_restarts_a_running_app_onto_its_new_env(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        await put(http, s, definition(1))
        _, first, _ = await get(http, s.url, HOST)
        status, _ = await put(http, s, definition(2))
        assert status == 200
        # Requests during the restart are held, not failed: every answer is a 200.
        bodies = []
        for _ in range(200):
            status, body, _ = await get(http, s.url, HOST)
            assert status == 200
            bodies.append(body)
            if body.strip().endswith("greeting=v2"):
                break
    assert first.strip().endswith("greeting=v1")
    assert bodies[-1].strip().endswith("greeting=v2")
    assert first.split(" pid ")[1].split()[0] != bodies[-1].split(" pid ")[1].split()[0]
    assert s.state("shop") == "awake"


async def test_a_spec_that_says_so_is_taken_at_the_next_start_not_by_a_restart(
    slipway: StartUp, tmp_path: Path
) -> None:
    """``restart_on_change: false`` (a dedicated add-on's new caps, set live by the control
    plane): the running process stays; the agent's next start of it takes the new spec."""
    s = await slipway(write_app(tmp_path, "hello"))
    command = f"{sys.executable} -S {HERE / 'app.py'}"
    kept = {"web": {"command": command, "restart_on_change": False}}
    async with aiohttp.ClientSession() as http:
        await put(http, s, definition(1, processes=kept))
        _, first, _ = await get(http, s.url, HOST)
        status, _ = await put(http, s, definition(2, processes=kept))
        assert status == 200
        _, same, _ = await get(http, s.url, HOST)
        assert same == first  # same pid, still the old env: nothing restarted
        spec = s.up.agent.runtime._groups[("shop", "web")].spec  # type: ignore[attr-defined]
        assert (spec.release, spec.restart_on_change) == (2, False)
        async with http.post(f"{s.api}/v1/apps/shop/restart", json={"process": "web"}) as resp:
            assert resp.status == 202
        _, after, _ = await get(http, s.url, HOST)
    assert first.strip().endswith("greeting=v1")
    assert after.strip().endswith("greeting=v2")  # the next start took the new spec
    assert first.split(" pid ")[1] != after.split(" pid ")[1]
    async with aiohttp.ClientSession() as http:
        status, answer = await put(
            http, s, definition(3, processes={"web": {"command": command, "restart_on_change": 1}})
        )
    assert (status, "restart_on_change must be true or false" in answer["error"]) == (422, True)


async def test_redefining_an_asleep_app_starts_nothing(slipway: StartUp, tmp_path: Path) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        await put(http, s, definition(1))
        await put(http, s, definition(2, formation={"web": 2}))
    assert s.state("shop") == "asleep"
    assert s.up.agent.machines["shop"].desired == {"web": 0}
    assert s.up.agent.status("shop")["processes"]["web"]["instances"] == []


async def test_restart_replaces_the_process_and_forget_stops_it_and_its_host(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        await put(http, s, definition())
        _, before, _ = await get(http, s.url, HOST)
        async with http.post(f"{s.api}/v1/apps/shop/restart", json={"process": "web"}) as resp:
            assert resp.status == 202
        status, after, _ = await get(http, s.url, HOST)
        assert status == 200
        assert before.split(" pid ")[1] != after.split(" pid ")[1]
        async with http.delete(f"{s.api}/v1/apps/shop") as resp:
            assert resp.status == 204
        await eventually(lambda: "shop" not in s.up.router.routes.table.apps)
        status, _, _ = await get(http, s.url, HOST)
        assert status == 404
        async with http.delete(f"{s.api}/v1/apps/shop") as resp:
            assert resp.status == 404
        async with http.post(f"{s.api}/v1/apps/shop/restart") as resp:
            assert resp.status == 404
    assert "shop" not in s.up.agent.machines
    assert [t for t in s.up.agent._tasks.names() if "shop" in t] == []


async def test_a_defined_app_sleeps_when_idle(slipway: StartUp, tmp_path: Path) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        await put(http, s, definition(policy={"idle_after": 0.3}))
        status, _, _ = await get(http, s.url, HOST)
        assert status == 200
        await eventually(lambda: s.state("shop") == "asleep")
        await eventually(lambda: s.up.agent.status("shop")["processes"]["web"]["instances"] == [])


async def test_bad_definitions_are_refused_with_the_reason_and_change_nothing(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    async with aiohttp.ClientSession() as http:
        cases = [
            (definition(hosts=["hello.test"]), "host 'hello.test' belongs to app 'hello'"),
            (definition(colour="blue"), "unknown keys ['colour']"),
            (definition(processes={}), "no processes"),
            (definition(policy={"idle_after": "5m"}), "policy.idle_after has the wrong type"),
            (definition(policy={"min_scale": 3, "max_scale": 2}), "min_scale (3) is above"),
            (definition(formation={"worker": 1}), "formation names 'worker'"),
            (["not", "an", "object"], "expected an object"),
        ]
        for body, reason in cases:
            status, answer = await put(http, s, body)
            assert status == 422, body
            assert reason in answer["error"], answer
        status, answer = await put(http, s, definition(), app="Not_A_Name")
        assert status == 422
        async with http.put(f"{s.api}/v1/apps/shop", data=b"{") as resp:
            assert resp.status == 400
    assert set(s.up.agent.machines) == {"hello"}


async def test_with_a_token_the_api_takes_only_requests_that_carry_it(tmp_path: Path) -> None:
    """Defining an app runs a command: the API refuses anyone without the agent's token."""
    token = "slw_agent_token_for_tests_0123456789"
    up = quiet_up(local_up_settings(None, agent={"token": token}))
    await up.start()
    api = f"http://127.0.0.1:{up.api_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{api}/v1/apps/shop", json=definition()) as resp:
                assert resp.status == 401
                assert "SLIPWAY_AGENT_TOKEN" in (await resp.json())["error"]
            bad = {"Authorization": f"Bearer {token}x"}
            async with http.get(f"{api}/v1/routes", headers=bad) as resp:
                assert resp.status == 401
            async with http.get(f"{api}/healthz") as resp:
                assert resp.status == 200  # probes need no token
        assert "shop" not in up.agent.machines
        # The control plane's client and a router's feed carry it.
        control = ControlAgentClient(api, token=token, timeout=5)
        try:
            await control.define("shop", definition())
            assert (await control.status("shop") or {})["state"] == "asleep"
        finally:
            await control.close()
        routes = Routes()
        feed = FeedClient(api, routes=routes, token=token, report_interval=0.05)
        await feed.start()
        try:
            await asyncio.wait_for(feed.synced.wait(), 10)
            assert "shop" in routes.table.apps
        finally:
            await feed.stop()
        refused = ControlAgentClient(api, token="wrong", timeout=5)
        try:
            with pytest.raises(TargetUnavailable, match="refused PUT /v1/apps/other: 401"):
                await refused.define("other", definition())
        finally:
            await refused.close()
    finally:
        await up.stop()
