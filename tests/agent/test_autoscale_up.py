"""Autoscaling end to end under ``slipway up``: a burst through the router takes web from 1 to
N real processes, and back to 1 after the (short, test-set) delay, with every request a 200."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.definition import definition_json
from agent.settings import LocalSettings
from control.agent_target import AgentClient
from control.up import Up, UpSettings
from tests.agent.conftest import local_up_settings, quiet_up, write_app
from tests.helpers import eventually

# Short windows so the whole up-and-down takes seconds: 1 s of panic window is five samples.
AUTOSCALE = """
[apps.burst.autoscale.web]
target = 2
stable_window = "3s"
panic_window = "1s"
scale_down_delay = "1s"
"""


def autoscaling(apps: Path) -> UpSettings:
    """The apps file under ``slipway up``, the autoscaler looking five times a second."""
    return local_up_settings(
        apps, agent={"autoscale_interval": 0.2}, local=LocalSettings(stop_grace=2.0)
    )


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    apps = tmp_path / "apps.toml"
    apps.write_text(
        write_app(tmp_path, "burst", min_scale=1, max_scale=4, idle_after="5m") + AUTOSCALE
    )
    up = quiet_up(autoscaling(apps))
    await up.start()
    try:
        yield up
    finally:
        await up.stop()


def ready(up: Up) -> int:
    status = up.agent.machines["burst"].statuses.get("web")
    return len(status.ready) if status else 0


async def test_a_burst_scales_web_up_and_it_comes_back_to_one_with_no_request_lost(
    up: Up, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.autoscaler")
    url = f"http://127.0.0.1:{up.router.port}"
    headers = {"Host": "burst.test"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await eventually(lambda: ready(up) == 1, what="min_scale's one web process ready")

        async def call(path: str) -> tuple[int, str]:
            async with http.get(url + path, headers=headers) as resp:
                return resp.status, await resp.text()

        # A whole stable window (3 s) of quiet samples first: with fewer, the stable average
        # is as quick as the panic one and the burst could be met as "load" instead.
        await asyncio.sleep(3.2)
        burst = [asyncio.create_task(call("/slow=6")) for _ in range(12)]
        # 12 in flight at 2 each: six wanted, four allowed (max_scale), while the burst lasts:
        # 6 s, as three processes booting on a loaded machine can take more than the 3.5 s
        # a 4 s burst left them.
        await eventually(
            lambda: ready(up) == 4, 5.5, what="four ready web processes during the burst"
        )
        assert up.agent.machines["burst"].desired["web"] == 4
        # The new processes serve: quick requests now spread over more than web.1.
        quick = await asyncio.gather(*(call("/slow=0.3") for _ in range(8)))
        results = await asyncio.gather(*burst)
        assert [status for status, _ in results + quick] == [200] * 20
        dynos = {text.split()[2] for _, text in quick}
        assert len(dynos) > 1, dynos

        # Quiet: the panic ends a stable window after its last surge, then one step a delay.
        await eventually(
            lambda: up.agent.machines["burst"].desired["web"] == 1, 15, what="back to 1"
        )
        await eventually(lambda: ready(up) == 1, what="the extra processes stopped")

        async with http.get(f"http://127.0.0.1:{up.api_port}/v1/apps/burst/autoscale") as resp:
            assert resp.status == 200
            view = await resp.json()
        async with http.get(f"http://127.0.0.1:{up.api_port}/v1/apps/nope/autoscale") as resp:
            assert resp.status == 404
    assert view["enabled"]
    assert view["settings"]["target"] == 2
    assert (view["min"], view["max"], view["desired"]) == (1, 4, 1)
    oldest_first = list(reversed(view["decisions"]))
    ups = [d for d in oldest_first if d["to"] > d["from"]]
    downs = [d for d in oldest_first if d["to"] < d["from"]]
    assert ups[0]["reason"] == "panic"
    assert ups[-1]["to"] == 4
    assert [(d["from"], d["to"], d["reason"]) for d in downs] == [
        (4, 3, "idle"),
        (3, 2, "idle"),
        (2, 1, "idle"),
    ]
    assert all(b["at"] - a["at"] >= 0.9 for a, b in itertools.pairwise(downs))
    lines = [r for r in caplog.records if r.getMessage() == "autoscale"]
    assert any(getattr(r, "reason", None) == "panic" and r.__dict__["from"] == 1 for r in lines)
    registry = up.registry
    panics = registry.get_sample_value(
        "slipway_autoscale_decisions_total", {"app": "burst", "process": "web", "reason": "panic"}
    )
    assert panics is not None
    assert panics >= 1
    desired = registry.get_sample_value(
        "slipway_autoscale_desired_replicas", {"app": "burst", "process": "web"}
    )
    assert desired == 1


async def test_a_redefinition_keeps_the_replicas_the_load_needed_within_its_bounds(
    tmp_path: Path,
) -> None:
    apps = tmp_path / "apps.toml"
    slow_down = AUTOSCALE.replace('scale_down_delay = "1s"', 'scale_down_delay = "10m"')
    apps.write_text(write_app(tmp_path, "burst", min_scale=1, max_scale=4) + slow_down)
    up = quiet_up(autoscaling(apps))
    await up.start()
    try:
        url = f"http://127.0.0.1:{up.router.port}"
        api = f"http://127.0.0.1:{up.api_port}/v1/apps/burst"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await eventually(lambda: ready(up) == 1, what="one web process ready")

            async def call() -> int:
                async with http.get(url + "/slow=2", headers={"Host": "burst.test"}) as resp:
                    await resp.read()
                    return resp.status

            burst = [asyncio.create_task(call()) for _ in range(12)]
            await eventually(lambda: up.agent.machines["burst"].desired["web"] == 4, what="four")
            assert await asyncio.gather(*burst) == [200] * 12

            definition = definition_json(up.agent.machines["burst"].config)
            definition["policy"]["max_scale"] = 3
            async with http.put(api, json=definition) as resp:
                assert resp.status == 200, await resp.text()
            # Not back to the formation's one: what the load needed, within the new max.
            assert up.agent.machines["burst"].desired["web"] == 3
            definition["autoscale"] = {"web": {"target": 2, "stable_window": 3, "panic_window": 5}}
            async with http.put(api, json=definition) as resp:
                assert resp.status == 422
                assert "at most the stable_window" in (await resp.json())["error"]
            assert up.agent.machines["burst"].config.policy.max_scale == 3  # unchanged
            definition["autoscale"] = {}
            async with http.put(api, json=definition) as resp:
                assert resp.status == 200
            # Autoscaling off: the formation's replicas again.
            assert up.agent.machines["burst"].desired["web"] == 1
            await asyncio.sleep(0.5)  # a few autoscaler rounds: none decides for it now
            assert up.agent.machines["burst"].desired["web"] == 1
            async with http.get(api + "/autoscale") as resp:
                view = await resp.json()
            assert (view["enabled"], view["panicking"]) == (False, False)
            assert view["decisions"][0]["to"] == 4  # what it did while on stays readable
            gauge = up.registry.get_sample_value(
                "slipway_autoscale_desired_replicas", {"app": "burst", "process": "web"}
            )
            assert gauge is None
    finally:
        await up.stop()


async def test_scaling_down_under_load_loses_no_request(up: Up) -> None:
    url = f"http://127.0.0.1:{up.router.port}"
    statuses: list[int] = []
    level = 6
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await eventually(lambda: ready(up) == 1, what="one web process ready")

        async def client(index: int) -> None:
            while index < level:  # closed loop: one request in flight while active
                async with http.get(url + "/slow=0.3", headers={"Host": "burst.test"}) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        clients = [asyncio.create_task(client(i)) for i in range(6)]
        await eventually(lambda: up.agent.machines["burst"].desired["web"] == 3, what="three")
        await eventually(lambda: ready(up) == 3, what="three ready")
        level = 3  # half the load: two processes' worth, while requests keep coming
        await eventually(lambda: up.agent.machines["burst"].desired["web"] == 2, 15, what="two")
        await eventually(lambda: ready(up) == 2, what="the third stopped")
        await asyncio.sleep(1.0)  # requests keep flowing to the two left
        level = 0
        await asyncio.gather(*clients)
    assert len(statuses) > 20
    assert set(statuses) == {200}, statuses


async def test_the_control_planes_client_reads_the_autoscaling_over_http(up: Up) -> None:
    client = AgentClient(f"http://127.0.0.1:{up.api_port}", timeout=5)
    try:
        view = await client.autoscale("burst")
        assert view is not None
        assert (view["enabled"], view["settings"]["panic_window"]) == (True, 1.0)
        assert await client.autoscale("ghost") is None
    finally:
        await client.close()


async def test_min_scale_zero_still_sleeps_when_idle_and_wakes_at_the_formation(
    tmp_path: Path,
) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "burst", max_scale=3, idle_after="1s") + AUTOSCALE)
    up = quiet_up(autoscaling(apps))
    await up.start()
    url = f"http://127.0.0.1:{up.router.port}"
    machine = up.agent.machines["burst"]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def call(path: str) -> int:
                async with http.get(url + path, headers={"Host": "burst.test"}) as resp:
                    await resp.read()
                    return resp.status

            assert str(machine.phase) == "asleep"
            burst = [asyncio.create_task(call("/slow=2")) for _ in range(8)]  # wakes it
            await eventually(lambda: machine.desired["web"] == 3, what="three while busy")
            assert await asyncio.gather(*burst) == [200] * 8
            # Idle for 1 s: the idle policy puts it to sleep, whatever the autoscaler had.
            await eventually(lambda: str(machine.phase) == "asleep", 15, what="asleep when idle")
            assert machine.desired["web"] == 0
            assert await call("/") == 200  # a request wakes it, at the formation's one
            assert machine.desired["web"] == 1
    finally:
        await up.stop()
